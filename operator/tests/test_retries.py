"""Failed reconciles wait in one queue, each due again after its own pause."""

from __future__ import annotations

import threading
import time

from flotilla_operator.retries import LONGEST_SECONDS, Retries, backoff

KEY = ("shop", "orders")


def test_a_failure_is_due_after_its_pause_and_then_taken_once() -> None:
    retries = Retries()
    retries.failed(KEY, 0.2)
    assert retries.take_due(wait=0) == []  # not due yet
    started = time.monotonic()
    assert retries.take_due(wait=2) == [KEY]
    assert 0.15 <= time.monotonic() - started < 1.5
    assert retries.take_due(wait=0) == []  # taken: not handed out twice
    assert retries.failures(KEY) == 1  # until it succeeds, the next failure backs off further


def test_one_entry_per_microservice_and_a_success_drops_it() -> None:
    retries = Retries()
    retries.failed(KEY, 30)
    retries.failed(KEY, 0)  # the later failure moves its due time
    assert len(retries) == 1
    assert retries.failures(KEY) == 2
    assert retries.take_due(wait=0) == [KEY]
    retries.failed(KEY, 30)
    retries.succeeded(KEY)
    assert (len(retries), retries.failures(KEY), retries.due_in(KEY)) == (0, 0, None)


def test_a_failure_added_while_waiting_wakes_the_taker() -> None:
    retries = Retries()
    taken: list[list[tuple[str, str]]] = []
    taker = threading.Thread(target=lambda: taken.append(retries.take_due(wait=5)))
    started = time.monotonic()
    taker.start()
    time.sleep(0.1)
    retries.failed(KEY, 0)
    taker.join(timeout=5)
    assert taken == [[KEY]]
    assert time.monotonic() - started < 2


def test_pauses_double_to_a_minute_at_most() -> None:
    assert [backoff(5, failures) for failures in range(1, 7)] == [5, 10, 20, 40, 60, 60]
    retries = Retries()
    retries.failed(KEY, 3600)
    assert (retries.due_in(KEY) or 0) <= LONGEST_SECONDS
