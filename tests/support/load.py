"""Order traffic for fault tests: threads placing orders, every answer recorded for later checks."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import requests

from tests.support.platform import Platform

# Answers a replay waits out: another request still owns the key, or a dependency is still down.
NOT_YET = {409, 503}


@dataclass(frozen=True)
class Outcome:
    """One order request and its answer; ``status`` 0 when no answer came at all."""

    key: str
    token: str
    status: int
    problem: str | None  # the problem type's last segment, e.g. "upstream-unavailable"
    order_id: str | None  # the order's id, or the failed order a problem names
    retry_after: str | None
    started: float  # time.monotonic()
    ended: float
    error: str | None = None

    @property
    def seconds(self) -> float:
        """How long the answer took."""
        return self.ended - self.started


def place(platform: Platform, token: str, items: list[dict[str, int]], key: str, timeout: float) -> Outcome:
    """POST one order and record what came back."""
    started = time.monotonic()
    try:
        response = platform.order(token, items, key=key, timeout=timeout)
    except requests.RequestException as exc:
        return Outcome(key, token, 0, None, None, None, started, time.monotonic(), repr(exc))
    ended = time.monotonic()
    body: dict[str, Any] = {}
    if response.headers.get("Content-Type", "").startswith(("application/json", "application/problem+json")):
        body = response.json()
    problem = None
    if response.headers.get("Content-Type") == "application/problem+json":
        problem = str(body.get("type", "")).rsplit("/", 1)[-1]
    order_id = body.get("id") if response.status_code == 201 else body.get("order_id")
    return Outcome(
        key,
        token,
        response.status_code,
        problem,
        None if order_id is None else str(order_id),
        response.headers.get("Retry-After"),
        started,
        ended,
    )


class Load:
    """``threads`` threads placing orders back to back, each with an Idempotency-Key of its own.

    Use as a context manager (or ``start``/``stop``); ``outcomes`` holds every answer so far.
    """

    def __init__(
        self,
        platform: Platform,
        tokens: list[str],
        items: list[dict[str, int]],
        threads: int = 4,
        timeout: float = 30,
    ) -> None:
        self.platform = platform
        self.tokens = tokens
        self.items = items
        self.timeout = timeout
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._outcomes: list[Outcome] = []
        self._threads = [
            threading.Thread(target=self._run, args=(tokens[n % len(tokens)],), daemon=True)
            for n in range(threads)
        ]

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(
        self, _type: type[BaseException] | None, _error: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> Load:
        """Start every thread."""
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> list[Outcome]:
        """Let each thread finish its order in flight, then return every outcome."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        return self.outcomes

    @property
    def outcomes(self) -> list[Outcome]:
        """Every answer so far, in the order they came."""
        with self._lock:
            return list(self._outcomes)

    def _run(self, token: str) -> None:
        while not self._stopping.is_set():
            outcome = place(self.platform, token, self.items, f"load-{uuid.uuid4().hex}", self.timeout)
            with self._lock:
                self._outcomes.append(outcome)

    def _wait(self, done: Callable[[list[Outcome]], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done(self.outcomes):
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} within {timeout:g}s; the last answers: {self.summary(20)}")
            time.sleep(0.05)

    def wait_for_successes(self, count: int, timeout: float = 60) -> None:
        """Wait until ``count`` orders have been placed (the traffic is flowing)."""
        self._wait(
            lambda outcomes: sum(o.status == 201 for o in outcomes) >= count,
            timeout,
            f"no {count} orders placed",
        )

    def wait_for_recovery(self, since: float, streak: int = 20, timeout: float = 60) -> float:
        """Wait until the last ``streak`` answers to orders started after ``since`` are all 201.

        Returns when the first order of that unbroken run of successes started.
        """

        def recent(outcomes: list[Outcome]) -> list[Outcome]:
            return [o for o in outcomes if o.started >= since][-streak:]

        self._wait(
            lambda outcomes: (
                len(recent(outcomes)) == streak and all(o.status == 201 for o in recent(outcomes))
            ),
            timeout,
            f"no {streak} orders in a row placed",
        )
        after = [o for o in self.outcomes if o.started >= since]
        failed = [o.started for o in after if o.status != 201]
        return min((o.started for o in after if not failed or o.started > max(failed)), default=since)

    def summary(self, last: int | None = None) -> str:
        """Status and problem of the answers (the last ``last`` of them), for failure messages."""
        outcomes = self.outcomes[-last:] if last else self.outcomes
        return ", ".join(f"{o.status} {o.problem or o.error or ''}".strip() for o in outcomes)

    def replay(self, outcome: Outcome, patience: float = 30) -> Outcome:
        """Replay ``outcome``'s key until it has a final answer (or ``patience`` runs out)."""
        deadline = time.monotonic() + patience
        while True:
            replayed = place(self.platform, outcome.token, self.items, outcome.key, self.timeout)
            if replayed.status not in NOT_YET or time.monotonic() > deadline:
                return replayed
            time.sleep(0.25)

    def replay_all(self, outcomes: list[Outcome], patience: float = 30, threads: int = 4) -> list[Outcome]:
        """Replay every key, ``threads`` at a time; the answers in the order of ``outcomes``."""
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(lambda o: self.replay(o, patience), outcomes))
