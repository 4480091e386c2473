"""Whether kopf's watch streams still deliver: changes the API server made, owed until they arrive.

The evidence: every object the operator writes comes back with a new resourceVersion, and so
does every Microservice a resync lists. The watch stream of that kind owes that version. A
stream delivers in resourceVersion order, so one watermark per kind settles every debt below it.
A kind that owes a version and delivers nothing for ``grace`` seconds is stalled.

kopf delivers an event to a handler only once that object's previous handler is done; while
handlers wait for a worker thread (``BacklogExecutor.queued``) silence proves nothing, and the
clock does not run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


def version_of(body: dict[str, Any]) -> int | None:
    """An object's resourceVersion as a number (etcd's revision), or None when it is not one."""
    try:
        return int((body.get("metadata") or {}).get("resourceVersion") or "")
    except ValueError:
        return None


class BacklogExecutor(ThreadPoolExecutor):
    """kopf's executor for sync handlers, counting the calls still waiting for a thread."""

    def __init__(self, max_workers: int) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix="handler")
        self._count_lock = threading.Lock()
        self._waiting = 0

    @property
    def queued(self) -> int:
        """Handler calls submitted and not started yet."""
        return self._waiting

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._count_lock:
            self._waiting += 1

        def started(*inner: Any, **named: Any) -> Any:
            with self._count_lock:
                self._waiting -= 1
            return fn(*inner, **named)

        return super().submit(started, *args, **kwargs)


class WatchHealth:
    """Versions owed and delivered, per kind; ``stalled()`` names the kinds silent for too long."""

    def __init__(
        self,
        kinds: Iterable[str],
        grace_seconds: float,
        busy: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kinds = frozenset(kinds)
        self.grace_seconds = grace_seconds
        self._busy = busy
        self._clock = clock
        self._lock = threading.Lock()
        self._delivered: dict[str, int] = {}
        self._owed: dict[str, tuple[int, float]] = {}  # kind: (highest version owed, silent since)
        self.streamed = threading.Event()  # a watch stream delivered a change (not a listing)

    def owe(self, kind: str, body: dict[str, Any]) -> None:
        """The API server made ``body`` (its version) and the watch of ``kind`` must deliver it."""
        version = version_of(body)
        if kind not in self.kinds or version is None:
            return
        with self._lock:
            if version <= self._delivered.get(kind, 0):
                return
            owed = self._owed.get(kind)
            self._owed[kind] = (max(version, owed[0]), owed[1]) if owed else (version, self._clock())

    def owe_all(self, kind: str, bodies: Iterable[dict[str, Any]]) -> None:
        """A listing: the stream of ``kind`` owes the newest of ``bodies``."""
        newest = max((v for v in map(version_of, bodies) if v is not None), default=None)
        if newest is not None:
            self.owe(kind, {"metadata": {"resourceVersion": str(newest)}})

    def delivered(self, kind: str, body: dict[str, Any], *, streamed: bool) -> None:
        """The watch delivered ``body``: from a watch stream, or (``streamed=False``) from its listing."""
        version = version_of(body)
        if version is None:
            return
        with self._lock:
            if version > self._delivered.get(kind, 0):
                self._delivered[kind] = version
            owed = self._owed.get(kind)
            if owed is not None:
                # Paid, or at least moving: what remains is owed from now on.
                self._owed[kind] = (owed[0], self._clock())
                if version >= owed[0]:
                    del self._owed[kind]
        if streamed:
            self.streamed.set()

    def stalled(self) -> dict[str, float]:
        """Kinds owing a version, silent for longer than the grace: for how long."""
        now = self._clock()
        with self._lock:
            if self._busy():
                # Handlers wait for threads, and deliveries wait behind them: restart the clocks.
                self._owed = {kind: (version, now) for kind, (version, _) in self._owed.items()}
                return {}
            silent = {kind: now - since for kind, (_, since) in self._owed.items()}
            return {kind: seconds for kind, seconds in silent.items() if seconds > self.grace_seconds}
