"""Prometheus metrics of the operator."""

import time

from prometheus_client import Counter, Gauge, Histogram

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
