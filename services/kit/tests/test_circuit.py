"""The circuit breaker: calls never wait for each other, and an open circuit answers at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from flotilla_kit.circuit import CircuitBreaker, CircuitOpenError
from flotilla_kit.http_client import ServiceClient

SLOW_SECONDS = 0.4


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def fail() -> None:
    raise ConnectionError("refused")


def opened(clock: Clock, changes: list[tuple[str, str]] | None = None) -> CircuitBreaker:
    heard = [] if changes is None else changes
    breaker = CircuitBreaker(2, 5.0, on_change=lambda *change: heard.append(change), clock=clock)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            breaker.call(fail)
    assert breaker.current_state == "open"
    return breaker


def test_the_circuit_opens_after_the_threshold_and_refuses_without_calling() -> None:
    changes: list[tuple[str, str]] = []
    breaker = opened(Clock(), changes)
    calls: list[int] = []
    with pytest.raises(CircuitOpenError):
        breaker.call(calls.append, 1)
    assert calls == []
    assert changes == [("closed", "open")]


def test_after_the_reset_time_one_trial_goes_through_and_the_others_are_refused_at_once() -> None:
    clock = Clock()
    changes: list[tuple[str, str]] = []
    breaker = opened(clock, changes)
    clock.now += 5.0
    release = threading.Event()
    trial = threading.Thread(target=breaker.call, args=(release.wait, 10))
    trial.start()
    deadline = time.monotonic() + 5
    while breaker.current_state != "half-open" and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    with pytest.raises(CircuitOpenError, match="trial"):
        breaker.call(lambda: None)
    assert time.monotonic() - started < 0.1
    release.set()
    trial.join(5)
    assert breaker.current_state == "closed"
    assert changes == [("closed", "open"), ("open", "half-open"), ("half-open", "closed")]


def test_a_failed_trial_opens_the_circuit_for_another_reset_time() -> None:
    clock = Clock()
    breaker = opened(clock)
    clock.now += 5.0
    with pytest.raises(ConnectionError):
        breaker.call(fail)
    assert breaker.current_state == "open"
    clock.now += 4.9
    with pytest.raises(CircuitOpenError):
        breaker.call(lambda: None)
    clock.now += 0.1
    breaker.call(lambda: None)
    assert breaker.current_state == "closed"


class SlowHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        time.sleep(SLOW_SECONDS)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        """No access log: the test reads timings, not requests."""


@pytest.fixture
def slow_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_concurrent_calls_to_one_target_do_not_wait_for_each_other(slow_url: str) -> None:
    client = ServiceClient("slow", slow_url)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(pool.map(lambda _: client.request("GET", "/").status_code, range(4)))
    assert statuses == [200] * 4
    assert time.monotonic() - started < 2 * SLOW_SECONDS  # one after another would take 4 times
