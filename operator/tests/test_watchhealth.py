"""Watch health: versions owed by the operator's writes and listings, settled by deliveries."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from flotilla_operator.supervisor import MAX_UNHELPFUL_RESTARTS, Carried, Supervisor
from flotilla_operator.watchhealth import BacklogExecutor, WatchHealth

GRACE = 20.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def at(version: int) -> dict[str, Any]:
    return {"metadata": {"resourceVersion": str(version)}}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def health(clock: Clock) -> WatchHealth:
    return WatchHealth(["Deployment", "Microservice"], GRACE, clock=clock)


def test_a_write_not_delivered_within_the_grace_is_a_stall(health: WatchHealth, clock: Clock) -> None:
    health.owe("Deployment", at(50))
    clock.now += GRACE - 1
    assert health.stalled() == {}
    clock.now += 2
    assert health.stalled() == {"Deployment": pytest.approx(GRACE + 1)}


def test_a_delivered_version_at_or_above_the_debt_settles_it(health: WatchHealth, clock: Clock) -> None:
    health.owe("Deployment", at(50))
    health.owe("Deployment", at(60))
    health.delivered("Deployment", at(61), streamed=True)
    clock.now += GRACE * 3
    assert health.stalled() == {}
    assert health.streamed.is_set()


def test_a_stream_still_moving_below_the_debt_restarts_the_clock(health: WatchHealth, clock: Clock) -> None:
    health.owe("Deployment", at(60))
    clock.now += GRACE - 1
    health.delivered("Deployment", at(55), streamed=True)
    clock.now += GRACE - 1
    assert health.stalled() == {}
    clock.now += 2
    assert set(health.stalled()) == {"Deployment"}


def test_a_version_already_delivered_is_not_owed(health: WatchHealth, clock: Clock) -> None:
    """A server-side apply that changed nothing returns the version the watch already gave."""
    health.delivered("Deployment", at(70), streamed=False)
    health.owe("Deployment", at(70))
    clock.now += GRACE * 2
    assert health.stalled() == {}
    assert not health.streamed.is_set(), "a listing is no proof that a stream delivers"


def test_kinds_nobody_watches_and_odd_versions_are_ignored(health: WatchHealth, clock: Clock) -> None:
    health.owe("ServiceMonitor", at(10))
    health.owe("Deployment", {"metadata": {"resourceVersion": "not-a-number"}})
    clock.now += GRACE * 2
    assert health.stalled() == {}


def test_a_listing_owes_its_newest_version(health: WatchHealth, clock: Clock) -> None:
    health.owe_all("Microservice", [at(5), at(90), at(40)])
    health.delivered("Microservice", at(40), streamed=True)
    clock.now += GRACE + 1
    assert set(health.stalled()) == {"Microservice"}
    health.delivered("Microservice", at(90), streamed=True)
    assert health.stalled() == {}


def test_silence_while_handlers_wait_for_threads_is_no_stall(clock: Clock) -> None:
    busy = threading.Event()
    health = WatchHealth(["Deployment"], GRACE, busy=busy.is_set, clock=clock)
    health.owe("Deployment", at(10))
    clock.now += GRACE + 5
    busy.set()
    assert health.stalled() == {}
    busy.clear()
    clock.now += GRACE - 1
    assert health.stalled() == {}, "the clock restarted while busy"
    clock.now += 2
    assert set(health.stalled()) == {"Deployment"}


def test_the_backlog_executor_counts_calls_waiting_for_a_thread() -> None:
    executor = BacklogExecutor(1)
    release = threading.Event()
    try:
        first = executor.submit(release.wait, 10)
        second = executor.submit(lambda: "done")
        assert executor.queued == 1
        release.set()
        assert second.result(10) == "done" and first.result(10)
        assert executor.queued == 0
    finally:
        executor.shutdown(wait=True)


def test_healthz_fails_once_restarts_stop_helping(
    health: WatchHealth, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    relaunches: list[str] = []

    def relaunch(carried: Carried, reason: str) -> None:
        relaunches.append(reason)

    monkeypatch.setattr("flotilla_operator.supervisor.relaunch", relaunch)
    carried = Carried(identity="replica-a", unhelpful_restarts=MAX_UNHELPFUL_RESTARTS - 1)
    supervisor = Supervisor(carried, health, election=None)
    health.owe("Deployment", at(10))
    clock.now += GRACE + 1
    supervisor.check()
    assert len(relaunches) == 1 and "Deployment" in relaunches[0]
    assert supervisor.report()[0], "one more restart may still help"
    supervisor.check()
    healthy, body = supervisor.report()
    assert not healthy
    assert body["checks"]["watches"].startswith(f"watch streams still silent after {MAX_UNHELPFUL_RESTARTS}")
    assert len(relaunches) == 1


def test_a_stream_delivering_again_clears_the_restarts_that_did_not_help(
    health: WatchHealth, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("flotilla_operator.supervisor.relaunch", lambda *_: None)
    carried = Carried(identity="replica-a", unhelpful_restarts=2)
    supervisor = Supervisor(carried, health, election=None)
    health.delivered("Deployment", at(3), streamed=True)
    supervisor.check()
    assert carried.unhelpful_restarts == 0


def test_what_one_run_carries_to_the_next_round_trips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOTILLA_OPERATOR_CARRIED", raising=False)
    fresh = Carried.load()
    assert fresh.identity and fresh.unhelpful_restarts == 0
    assert Carried.load().identity != fresh.identity, "every new process campaigns as itself"
    monkeypatch.setenv(
        "FLOTILLA_OPERATOR_CARRIED",
        '{"identity": "pod_1", "unhelpful_restarts": 2, "acquisitions": 1, "watch_restarts": 2, '
        '"stalls": {"Deployment": 2}}',
    )
    carried = Carried.load()
    assert (carried.identity, carried.unhelpful_restarts, carried.stalls) == ("pod_1", 2, {"Deployment": 2})
