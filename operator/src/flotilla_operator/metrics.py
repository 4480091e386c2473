"""Prometheus metrics of the operator."""

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from flotilla_operator.rollout import ROLLBACK_REASONS, Plan

RECONCILES = Counter(
    "flotilla_operator_reconciles_total", "Reconciliations of Microservices, by result.", ["result"]
)
RECONCILE_ERRORS = Counter(
    "flotilla_operator_reconcile_errors_total", "Reconciliations that failed, by error kind.", ["error"]
)
API_REQUESTS = Counter(
    "flotilla_operator_api_requests_total",
    "Requests sent to the API server by the operator's client (not kopf's watches), by verb and resource.",
    ["verb", "resource"],
)
RECONCILES_WAITING = Gauge(
    "flotilla_operator_reconcile_retries",
    "Microservices whose last reconcile failed, waiting for their next try.",
)
RECONCILE_DURATION = Histogram(
    "flotilla_operator_reconcile_duration_seconds",
    "Time one reconciliation takes.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
MANAGED_RESOURCES = Gauge(
    "flotilla_operator_managed_resources", "Children the operator manages, by kind.", ["kind"]
)
DRIFT_CORRECTIONS = Counter(
    "flotilla_operator_drift_corrections_total",
    "Children restored after being deleted by hand, by kind.",
    ["kind"],
)
ROLLOUTS = Counter(
    "flotilla_operator_rollouts_total",
    "Releases by result (started, promoted, rolled_back) and, for rollbacks, the reason.",
    ["result", "reason"],
)
ROLLBACK_SECONDS = Histogram(
    "flotilla_operator_rollback_seconds",
    "How long a rolled-back release ran: from its start to the rollback (its traffic back on stable).",
    buckets=(5, 10, 20, 30, 60, 120, 300, 600, 1800),
)
LEADER = Gauge(
    "flotilla_operator_leader", "1 while this replica holds the Lease and reconciles, 0 on a standby."
)
LEADER_ACQUISITIONS = Counter(
    "flotilla_operator_leader_acquisitions_total", "Times this replica took the Lease."
)
WATCH_STALLS = Counter(
    "flotilla_operator_watch_stalls_total",
    "Watch streams found silent while they owed a change the API server had made, by kind.",
    ["kind"],
)
WATCH_RESTARTS = Counter(
    "flotilla_operator_watch_restarts_total", "Restarts of every watch (a relaunch) after a stall."
)
# Present at 0 before the first release: a counter's first rise is an increase (alerts, panels).
for _result in ("started", "promoted"):
    ROLLOUTS.labels(_result, "")
for _reason in ROLLBACK_REASONS:
    ROLLOUTS.labels("rolled_back", _reason)


def count_release(plan: Plan) -> None:
    """Count a release that started, was promoted or was rolled back in this reconcile."""
    if plan.result is None:
        return
    reason = plan.state.reason if plan.result == "rolled_back" else ""
    ROLLOUTS.labels(plan.result, reason).inc()
    if plan.result == "rolled_back" and plan.state.started_at is not None:
        ROLLBACK_SECONDS.observe(max(0.0, time.time() - plan.state.started_at))


@dataclass(frozen=True)
class _Series:
    uid: str
    scrape_targets: int
    ready: bool
    phase: str
    updated: int  # the store's update counter when it was set (``MicroserviceSeries.prune``)


class MicroserviceSeries(Collector):
    """One set of gauges per Microservice, exported by the leader only.

    Set where a reconcile computes the status and removed on delete: no request of its own. A
    standby, and a replica that lost the Lease, export none, so none outlives its Microservice
    (FlotillaServiceDown reads ``..._scrape_targets`` as "this Microservice should have pods").
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._series: dict[tuple[str, str], _Series] = {}
        # uids of deleted Microservices: a reconcile still running on one sets nothing.
        self._gone: dict[str, int] = {}
        self._updates = 0
        self._exporting = False

    def export(self, leading: bool) -> None:
        """Export while ``leading``; a lead taken or lost starts from nothing."""
        with self._guard:
            if leading != self._exporting:
                self._series.clear()
                self._gone.clear()
            self._exporting = leading

    def set(
        self, namespace: str, name: str, uid: str, *, scrape_targets: int, ready: bool, phase: str
    ) -> None:
        """What the reconcile of ``namespace/name`` found (ignored unless leading)."""
        with self._guard:
            if not self._exporting or uid in self._gone:
                return
            self._updates += 1
            self._series[(namespace, name)] = _Series(uid, scrape_targets, ready, phase, self._updates)

    def remove(self, namespace: str, name: str, uid: str | None = None) -> None:
        """``namespace/name`` is gone (with ``uid``: that one, and no late reconcile brings it back)."""
        with self._guard:
            if not self._exporting:
                return
            self._updates += 1
            found = self._series.get((namespace, name))
            if found is not None and uid in (None, found.uid):
                del self._series[(namespace, name)]
            if uid:
                self._gone[uid] = self._updates

    def mark(self) -> int:
        """Where the updates are now: take it before listing the Microservices, pass it to ``prune``."""
        with self._guard:
            return self._updates

    def prune(self, listed: Iterable[tuple[str, str]], mark: int) -> None:
        """Drop the series of Microservices a listing begun at ``mark`` did not show (a DELETED missed)."""
        present = set(listed)
        with self._guard:
            for key in [k for k, s in self._series.items() if k not in present and s.updated <= mark]:
                del self._series[key]
            self._gone = {uid: at for uid, at in self._gone.items() if at > mark}

    def describe(self) -> list[GaugeMetricFamily]:
        """The families, empty: the registry learns their names without collecting."""
        return list(self._families())

    def collect(self) -> list[GaugeMetricFamily]:
        """Every series, while leading."""
        with self._guard:
            series = list(self._series.items()) if self._exporting else []
        targets, ready, phase = self._families()
        for (namespace, name), found in series:
            targets.add_metric([namespace, name], found.scrape_targets)
            ready.add_metric([namespace, name], 1 if found.ready else 0)
            phase.add_metric([namespace, name, found.phase], 1)
        return [targets, ready, phase]

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        labels = ["namespace", "name"]
        return (
            GaugeMetricFamily(
                "flotilla_operator_microservice_scrape_targets",
                "Pods the Microservice's ServiceMonitor should find (its desired replicas, the "
                "candidate's included; 0 without a ServiceMonitor).",
                labels=labels,
            ),
            GaugeMetricFamily(
                "flotilla_operator_microservice_ready",
                "1 while the Microservice's Ready condition is True, else 0.",
                labels=labels,
            ),
            GaugeMetricFamily(
                "flotilla_operator_microservice_rollout_phase",
                "1 for the Microservice's release phase (Stable, Progressing, Promoting, RolledBack).",
                labels=[*labels, "phase"],
            ),
        )


MICROSERVICES = MicroserviceSeries()
REGISTRY.register(MICROSERVICES)


def set_leading(leading: bool) -> None:
    """Mark this replica leading (it reconciles, exports the Microservices' series) or standing by."""
    LEADER.set(1 if leading else 0)
    MICROSERVICES.export(leading)
