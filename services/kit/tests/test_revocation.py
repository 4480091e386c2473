"""The revocation list: refreshed on time, stale only within its bound, never blocking a refresh."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from flotilla_kit.problems import Problem
from flotilla_kit.revocation import RevocationList


class Issuer:
    """A fetch function whose answer, failure and call count the test controls."""

    def __init__(self) -> None:
        self.revoked: dict[str, float] = {}
        self.down = False
        self.calls = 0

    def __call__(self) -> dict[str, Any]:
        self.calls += 1
        if self.down:
            raise Problem(503, "upstream-unavailable", "The users service is unavailable.")
        return {"revoked": [{"sub": sub, "revoked_at": at} for sub, at in self.revoked.items()]}


class Clock:
    """Monotonic time the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def revocations(issuer: Issuer, clock: Clock) -> RevocationList:
    return RevocationList(issuer, refresh_seconds=5, max_staleness_seconds=60, clock=clock)


def test_a_token_issued_before_its_subjects_revocation_is_revoked(
    revocations: RevocationList, issuer: Issuer
) -> None:
    issuer.revoked = {"gone": 500.0}
    assert revocations.is_revoked({"sub": "gone", "iat": 400})
    assert revocations.is_revoked({"sub": "gone", "iat": 500})
    assert not revocations.is_revoked({"sub": "gone", "iat": 501})  # issued after: a new grant
    assert not revocations.is_revoked({"sub": "someone-else", "iat": 400})


def test_a_revocation_is_seen_within_the_refresh_interval(
    revocations: RevocationList, issuer: Issuer, clock: Clock
) -> None:
    claims = {"sub": "gone", "iat": 400}
    assert not revocations.is_revoked(claims)
    issuer.revoked = {"gone": 500.0}
    clock.now += 4.9
    assert not revocations.is_revoked(claims)  # the cached list: no fetch per request
    assert issuer.calls == 1
    clock.now += 0.1
    assert revocations.is_revoked(claims)
    assert issuer.calls == 2


def test_an_unreachable_issuer_keeps_the_last_list_until_the_bound_then_refuses(
    revocations: RevocationList, issuer: Issuer, clock: Clock
) -> None:
    issuer.revoked = {"gone": 500.0}
    assert revocations.is_revoked({"sub": "gone", "iat": 400})
    issuer.down = True
    clock.now += 64  # within refresh (5) + staleness (60)
    assert not revocations.is_revoked({"sub": "kept", "iat": 400})
    assert revocations.is_revoked({"sub": "gone", "iat": 400})
    calls = issuer.calls
    clock.now += 0.5
    revocations.is_revoked({"sub": "kept", "iat": 400})
    assert issuer.calls == calls  # at most one attempt a second while it is down
    clock.now += 0.6
    with pytest.raises(Problem) as refused:
        revocations.is_revoked({"sub": "kept", "iat": 400})
    assert refused.value.status == 503
    issuer.down = False
    clock.now += 1
    assert not revocations.is_revoked({"sub": "kept", "iat": 400})


def test_no_list_at_all_is_a_503_not_an_open_door(revocations: RevocationList, issuer: Issuer) -> None:
    issuer.down = True
    with pytest.raises(Problem) as refused:
        revocations.ensure_loaded()
    assert refused.value.status == 503


def test_a_malformed_list_keeps_the_last_good_one(
    revocations: RevocationList, issuer: Issuer, clock: Clock
) -> None:
    issuer.revoked = {"gone": 500.0}
    revocations.ensure_loaded()
    revocations.fetch = lambda: {"revoked": [{"sub": "x"}]}  # no revoked_at
    clock.now += 5
    assert revocations.is_revoked({"sub": "gone", "iat": 400})


def test_a_due_refresh_runs_in_one_thread_while_the_others_use_the_current_list(
    issuer: Issuer, clock: Clock
) -> None:
    entered, release = threading.Event(), threading.Event()

    def slow_fetch() -> dict[str, Any]:
        if issuer.calls:  # the first fetch (the initial load) is immediate
            entered.set()
            release.wait(5)
        return issuer()

    revocations = RevocationList(slow_fetch, refresh_seconds=5, clock=clock)
    revocations.ensure_loaded()
    clock.now += 5
    refresher = threading.Thread(target=revocations.ensure_loaded)
    refresher.start()
    assert entered.wait(5)
    revocations.ensure_loaded()  # returns at once with the current list: not queued behind
    assert issuer.calls == 1
    release.set()
    refresher.join(5)
    assert issuer.calls == 2
