"""A circuit breaker that never holds its lock during a call, so calls never queue behind each other.

pybreaker, used before, holds its lock for the whole call: every call of a worker to one target
ran one at a time, and behind a slow call even an open circuit could not answer at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"

P = ParamSpec("P")
T = TypeVar("T")


class CircuitOpenError(Exception):
    """The circuit is open (or its one trial call is under way): the call was not made."""


class CircuitBreaker:
    """Opens after ``failure_threshold`` failed calls in a row and refuses calls at once.

    ``reset_seconds`` after opening it is half-open: one trial call goes through (the others are
    still refused); its success closes the circuit, its failure opens it again. Any exception a
    call raises counts as a failure. ``on_change(old, new)`` hears every change of state.
    """

    def __init__(
        self,
        failure_threshold: int,
        reset_seconds: float,
        on_change: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self._on_change = on_change
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_under_way = False

    @property
    def current_state(self) -> str:
        """``closed``, ``open`` or ``half-open``."""
        return self._state

    def call(self, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``func`` unless the circuit is open; raise ``CircuitOpenError`` at once if it is."""
        trial = self._admit()
        try:
            result = func(*args, **kwargs)
        except BaseException:
            self._record(trial, failed=True)
            raise
        self._record(trial, failed=False)
        return result

    def _admit(self) -> bool:
        """Whether the call may go ahead as the half-open circuit's trial; raise when refused."""
        with self._lock:
            if self._state == OPEN:
                if self._clock() - self._opened_at < self.reset_seconds:
                    raise CircuitOpenError("circuit open")
                self._change(HALF_OPEN)
            if self._state == HALF_OPEN:
                if self._trial_under_way:
                    raise CircuitOpenError("circuit half-open, its trial call under way")
                self._trial_under_way = True
                return True
            return False

    def _record(self, trial: bool, *, failed: bool) -> None:
        with self._lock:
            if trial:
                self._trial_under_way = False
            self._failures = self._failures + 1 if failed else 0
            if failed and (trial or (self._state == CLOSED and self._failures >= self.failure_threshold)):
                self._opened_at = self._clock()
                self._change(OPEN)
            elif trial:
                self._change(CLOSED)

    def _change(self, state: str) -> None:
        old, self._state = self._state, state
        if self._on_change is not None and old != state:
            self._on_change(old, state)
