"""The process around kopf: wait for the Lease, watch the watches, relaunch when either fails.

A replica that lost the Lease, or whose watch streams stalled, relaunches itself (``execve`` of
the same command): nothing of the old run survives (no kopf task, no handler thread, no cache),
the new run lists everything afresh, and the pod is not restarted. What must outlive the run
(the Lease identity, the counters, the restarts that did not help) is carried in one variable.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import sys
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, NoReturn

from prometheus_client import REGISTRY

from flotilla_operator.leadership import Election
from flotilla_operator.metrics import LEADER_ACQUISITIONS, WATCH_RESTARTS, WATCH_STALLS
from flotilla_operator.watchhealth import WatchHealth

log = logging.getLogger("flotilla.operator")
CARRIED_VARIABLE = "FLOTILLA_OPERATOR_CARRIED"
MAX_UNHELPFUL_RESTARTS = 3  # then /healthz fails, and the kubelet restarts the container
CHECK_SECONDS = 1.0


@dataclass
class Carried:
    """What one run hands to the next."""

    identity: str
    unhelpful_restarts: int = 0  # restarts after which no watch stream delivered anything
    acquisitions: float = 0
    watch_restarts: float = 0
    stalls: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(cls) -> Carried:
        """The previous run's, else a new identity: the pod's name and a random part."""
        raw = os.environ.get(CARRIED_VARIABLE)
        if raw:
            return cls(**json.loads(raw))
        return cls(identity=f"{socket.gethostname()}_{secrets.token_hex(4)}")

    def restore_metrics(self) -> None:
        """Counters continue from the previous run's."""
        LEADER_ACQUISITIONS.inc(self.acquisitions)
        WATCH_RESTARTS.inc(self.watch_restarts)
        for kind, count in self.stalls.items():
            WATCH_STALLS.labels(kind).inc(count)

    def capture_metrics(self) -> None:
        """Take this run's counters along."""
        self.acquisitions = _sample("flotilla_operator_leader_acquisitions_total")
        self.watch_restarts = _sample("flotilla_operator_watch_restarts_total")
        self.stalls = {
            sample.labels["kind"]: sample.value
            for metric in REGISTRY.collect()
            if metric.name == "flotilla_operator_watch_stalls"
            for sample in metric.samples
            if sample.name.endswith("_total")
        }


def _sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def relaunch(carried: Carried, reason: str) -> NoReturn:
    """Replace this process with a fresh run of the operator."""
    log.warning("relaunching the operator", extra={"reason": reason})
    carried.capture_metrics()
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    environment = {**os.environ, CARRIED_VARIABLE: json.dumps(asdict(carried))}
    os.execve(sys.executable, [sys.executable, "-m", "flotilla_operator", "run"], environment)


class Supervisor:
    """Checks the Lease and the watch streams every second while kopf runs."""

    def __init__(self, carried: Carried, watches: WatchHealth, election: Election | None) -> None:
        self.carried = carried
        self.watches = watches
        self.election = election
        self.failure: str | None = None  # why /healthz fails

    @property
    def role(self) -> str:
        """``reconciling`` (kopf runs here) or ``standby``."""
        standby = self.election is not None and not self.election.leading.is_set()
        return "standby" if standby else "reconciling"

    def report(self) -> tuple[bool, dict[str, Any]]:
        """The body of ``/healthz`` and whether it is healthy."""
        lease = "not used" if self.election is None else ("held" if self.role == "reconciling" else "waiting")
        checks = {"lease": lease, "watches": self.failure or "ok"}
        return self.failure is None, {"role": self.role, "identity": self.carried.identity, "checks": checks}

    def start(self) -> None:
        """Check in a daemon thread from now on."""
        threading.Thread(target=self._check_forever, name="supervisor", daemon=True).start()

    def _check_forever(self) -> None:
        stop = threading.Event()
        while not stop.wait(CHECK_SECONDS):
            self.check()

    def check(self) -> None:
        """Relaunch on a lost Lease or a stalled watch; fail ``/healthz`` when restarts do not help."""
        if self.election is not None and self.election.lost.is_set():
            relaunch(self.carried, "this replica lost the Lease")
        if self.watches.streamed.is_set() and self.carried.unhelpful_restarts:
            log.info("the watch streams deliver again", extra={"restarts": self.carried.unhelpful_restarts})
            self.carried.unhelpful_restarts = 0
        if self.failure is not None:
            return
        stalled = self.watches.stalled()
        if not stalled:
            return
        for kind in stalled:
            WATCH_STALLS.labels(kind).inc()
        silent = ", ".join(f"{kind} ({seconds:.0f}s)" for kind, seconds in sorted(stalled.items()))
        if self.carried.unhelpful_restarts >= MAX_UNHELPFUL_RESTARTS:
            self.failure = f"watch streams still silent after {MAX_UNHELPFUL_RESTARTS} restarts: {silent}"
            log.error("the watch streams cannot be recovered", extra={"failure": self.failure})
            return
        self.carried.unhelpful_restarts += 1
        WATCH_RESTARTS.inc()
        relaunch(self.carried, f"watch streams owe changes and deliver nothing: {silent}")
