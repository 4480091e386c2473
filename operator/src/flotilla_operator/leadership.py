"""One reconciling replica: the kubernetes client's leader election on a coordination.k8s.io Lease.

Around the client's election this adds what a production operator needs of it:

- every Lease request has a timeout (the client's have none: a partitioned leader would hang in
  one forever), and a refused or timed-out request is a failed attempt, not a dead thread;
- a fence: ``Election.check()`` refuses writes once the last renewal is older than
  ``LeaseTiming.fence_seconds``, which ends before any other replica may take the Lease;
- ``release()``, which hands the Lease back on a clean shutdown so a standby takes over at once.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock
from urllib3.exceptions import HTTPError as TransportError

from flotilla_operator.metrics import LEADER_ACQUISITIONS, set_leading

log = logging.getLogger("flotilla.operator")
# The client logs every attempt of a standby ("yet to finish lease_duration") at INFO.
logging.getLogger("leaderelection").setLevel(logging.WARNING)


class NotLeading(RuntimeError):
    """A write was refused: this replica does not hold the Lease (or cannot prove it still does)."""


@dataclass(frozen=True)
class LeaseTiming:
    """The election's periods, all derived from the Lease's duration."""

    lease_seconds: float

    @property
    def retry_seconds(self) -> float:
        """How often a standby tries, and a leader renews."""
        return max(1.0, self.lease_seconds / 5)

    @property
    def renew_deadline_seconds(self) -> float:
        """How long a leader keeps failing to renew before it steps down."""
        return self.lease_seconds * 2 / 3

    @property
    def request_seconds(self) -> float:
        """The timeout of one Lease request."""
        return self.retry_seconds

    @property
    def fence_seconds(self) -> float:
        """Writes stop this long after the start of the last successful renewal.

        A standby takes the Lease ``lease_seconds`` after it saw the last renewal, which came
        after that renewal's request started: the fence closes a retry period and a third of
        the renew deadline earlier.
        """
        return self.renew_deadline_seconds + self.retry_seconds


class _TimedLeaseLock(LeaseLock):
    """The client's ``LeaseLock`` with timeouts, transport errors as failures, and a release."""

    def __init__(
        self, api_client: client.ApiClient, name: str, namespace: str, identity: str, timeout: float
    ) -> None:
        super().__init__(name, namespace, identity)  # type: ignore[no-untyped-call]
        self.api_instance = client.CoordinationV1Api(api_client)
        self.timeout = timeout
        self.renewed_at = 0.0  # time.monotonic() at the start of the last successful write
        self.released = threading.Event()

    def get(self, name: str, namespace: str) -> tuple[bool, Any]:
        try:
            lease = self.api_instance.read_namespaced_lease(name, namespace, _request_timeout=self.timeout)
        except ApiException as exc:
            return False, exc
        except (TransportError, OSError) as exc:
            # No JSON body: the client counts it as a failed attempt and tries again.
            return False, ApiException(status=0, reason=f"unreachable: {exc}")
        self.lease_reference = lease
        return True, self.get_lock_object(lease)  # type: ignore[no-untyped-call]

    def create(self, name: str, namespace: str, election_record: Any) -> bool:
        if self.released.is_set():
            return False
        started = time.monotonic()
        body = client.V1Lease(
            metadata=client.V1ObjectMeta(name=name),
            spec=self.get_lease_spec(election_record),  # type: ignore[no-untyped-call]
        )
        try:
            self.lease_reference = self.api_instance.create_namespaced_lease(
                namespace, body, _request_timeout=self.timeout
            )
        except (ApiException, TransportError, OSError) as exc:
            log.info("creating the Lease failed", extra={"error": str(exc)[:200]})
            return False
        self.renewed_at = started
        return True

    def update(self, name: str, namespace: str, updated_record: Any) -> bool:
        if self.released.is_set() or self.lease_reference is None:
            return False
        started = time.monotonic()
        self.lease_reference.spec = self.get_lease_spec(updated_record, self.lease_reference.spec)  # type: ignore[no-untyped-call]
        try:
            # A replace: the Lease's resourceVersion makes a concurrent candidate's write fail (409).
            self.lease_reference = self.api_instance.replace_namespaced_lease(
                name=name, namespace=namespace, body=self.lease_reference, _request_timeout=self.timeout
            )
        except (ApiException, TransportError, OSError) as exc:
            log.info("writing the Lease failed", extra={"error": str(exc)[:200]})
            return False
        self.renewed_at = started
        return True


class Election:
    """Campaign for the Lease in a thread; ``leading`` is set while this replica holds it."""

    def __init__(
        self, api_client: client.ApiClient, name: str, namespace: str, identity: str, lease_seconds: int
    ) -> None:
        self.identity = identity
        self.timing = LeaseTiming(lease_seconds)
        self.leading = threading.Event()
        self.lost = threading.Event()  # held the Lease, then failed to renew it
        self._lock = _TimedLeaseLock(api_client, name, namespace, identity, self.timing.request_seconds)
        self._election = leaderelection.LeaderElection(  # type: ignore[no-untyped-call]
            electionconfig.Config(  # type: ignore[no-untyped-call]
                self._lock,
                lease_duration=lease_seconds,
                renew_deadline=self.timing.renew_deadline_seconds,
                retry_period=self.timing.retry_seconds,
                onstarted_leading=self._started,
                onstopped_leading=self._stopped,
            )
        )

    @property
    def lease(self) -> str:
        """``namespace/name`` of the Lease."""
        return f"{self._lock.namespace}/{self._lock.name}"

    def start(self) -> None:
        """Campaign, then renew, in a daemon thread."""
        threading.Thread(target=self._campaign, name="leader-election", daemon=True).start()

    def _campaign(self) -> None:
        try:
            self._election.run()  # type: ignore[no-untyped-call]  # returns only once a held Lease could not be renewed
        except Exception:
            log.exception("the leader election failed")
        self._stopped()

    def _started(self) -> None:
        set_leading(True)
        LEADER_ACQUISITIONS.inc()
        self.leading.set()
        log.info("leading", extra={"identity": self.identity, "lease": self.lease})

    def _stopped(self) -> None:
        if self.leading.is_set():
            self.leading.clear()
            set_leading(False)  # no Microservice's series outlives the lead: a standby has none
            self.lost.set()
            log.warning("lost the Lease", extra={"identity": self.identity, "lease": self.lease})

    def check(self) -> None:
        """Raise ``NotLeading`` unless this replica holds the Lease and renewed it recently enough."""
        if not self.leading.is_set():
            raise NotLeading(f"{self.identity} does not hold the Lease {self.lease}")
        age = time.monotonic() - self._lock.renewed_at
        if age > self.timing.fence_seconds:
            raise NotLeading(f"the Lease {self.lease} was last renewed {age:.1f} s ago: writes are fenced")

    def release(self) -> None:
        """Stop renewing and hand the Lease back (an empty holder), if this replica holds it."""
        self._lock.released.set()
        if not self.leading.is_set():
            return
        self.leading.clear()
        set_leading(False)
        api, timeout = self._lock.api_instance, self._lock.timeout
        try:
            lease = api.read_namespaced_lease(self._lock.name, self._lock.namespace, _request_timeout=timeout)
            if lease.spec is None or lease.spec.holder_identity != self.identity:
                return
            lease.spec.holder_identity = None
            lease.spec.lease_duration_seconds = 1
            lease.spec.renew_time = datetime.now(UTC)
            api.replace_namespaced_lease(
                self._lock.name, self._lock.namespace, lease, _request_timeout=timeout
            )
        except (ApiException, TransportError, OSError) as exc:
            log.warning(
                "releasing the Lease failed: a standby takes it once expired", extra={"error": str(exc)}
            )
            return
        log.info("released the Lease", extra={"lease": self.lease})
