"""Reconciles that failed, each due again after its own delay.

kopf retries what its on.create/on.update handlers raise, but it keeps that state in annotations
it patches onto every Microservice, and it deep-copies each body to compare it with the last one
handled. The operator reconciles from kopf's event handlers instead, which kopf never retries:
this queue does. One entry per Microservice: a later failure moves its due time, a success drops
it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

Key = tuple[str, str]  # (namespace, name)
LONGEST_SECONDS = 60.0


class Retries:
    """Microservices to reconcile again, by due time (monotonic seconds)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._due: dict[Key, float] = {}
        self._failures: dict[Key, int] = {}
        self._changed = threading.Condition()

    def __len__(self) -> int:
        with self._changed:
            return len(self._due)

    def failures(self, key: Key) -> int:
        """Failures of ``key`` in a row so far."""
        with self._changed:
            return self._failures.get(key, 0)

    def failed(self, key: Key, delay: float) -> None:
        """``key`` failed once more: due again in ``delay`` seconds (at most a minute)."""
        with self._changed:
            self._failures[key] = self._failures.get(key, 0) + 1
            self._due[key] = self._clock() + min(max(delay, 0.0), LONGEST_SECONDS)
            self._changed.notify_all()

    def succeeded(self, key: Key) -> None:
        """``key`` reconciled (or is gone): nothing to retry."""
        with self._changed:
            self._due.pop(key, None)
            self._failures.pop(key, None)

    def due_in(self, key: Key) -> float | None:
        """Seconds until ``key`` is tried again, or None when it is not waiting."""
        with self._changed:
            due = self._due.get(key)
            return None if due is None else due - self._clock()

    def take_due(self, wait: float) -> list[Key]:
        """The keys now due (removed from the queue), waiting at most ``wait`` s for the first."""
        with self._changed:
            deadline = self._clock() + wait
            while True:
                now = self._clock()
                due = sorted(key for key, at in self._due.items() if at <= now)
                if due:
                    for key in due:
                        del self._due[key]  # its failure count stays until it succeeds
                    return due
                soonest = min(self._due.values(), default=deadline)
                pause = min(soonest, deadline) - now
                if pause <= 0:
                    return []
                self._changed.wait(pause)


def backoff(base: float, failures: int) -> float:
    """``base`` doubled for each failure after the first, at most a minute."""
    return float(min(base * 2 ** max(failures - 1, 0), LONGEST_SECONDS))
