"""The canary step machine and the analysis verdicts: pure functions, checked without a cluster."""

from __future__ import annotations

from dataclasses import replace

import pytest

from flotilla_operator.analysis import (
    AnalysisPolicy,
    Check,
    Outcome,
    Sample,
    Traffic,
    Verdict,
    judge,
    readiness_only,
    traffic_queries,
    window_seconds,
)
from flotilla_operator.rollout import (
    ABORT,
    PROGRESSING,
    PROMOTE,
    PROMOTING,
    RESTORING,
    ROLLED_BACK,
    STABLE,
    Candidate,
    Observation,
    RolloutPolicy,
    RolloutState,
    candidate_replicas,
    plan,
    wants_analysis,
)

POLICY = RolloutPolicy(steps=(10, 25, 50), step_seconds=30, progress_deadline_seconds=300)
PASS = Verdict(Outcome.SUCCESS, "WithinBounds", "fine")
WAIT = Verdict(Outcome.PENDING, "Analysing", "so far so good")
FAIL = Verdict(Outcome.FAILURE, "ErrorRatio", "20% 5xx")


def seen(now: float, desired: str = "new", stable: str | None = "old", **fields: object) -> Observation:
    base: dict[str, object] = {"stable_ready": True, "stable_rolled_out": True}
    return Observation(desired_revision=desired, stable_revision=stable, now=now, **{**base, **fields})  # type: ignore[arg-type]


def ready(revision: str = "new", pods: int = 1, restarts: int = 0) -> Candidate:
    return Candidate(revision=revision, ready=pods, wanted=pods, restarts=restarts)


def started(now: float = 0) -> RolloutState:
    return plan(RolloutState(STABLE, "old"), seen(now), POLICY).state


def at_step(step: int, now: float = 0) -> RolloutState:
    return RolloutState(
        PROGRESSING, "old", "new", step=step, weight=POLICY.steps[step], started_at=now, step_started_at=now
    )


def test_a_new_revision_starts_a_canary_with_no_traffic_until_its_pods_are_ready() -> None:
    result = plan(RolloutState(STABLE, "old"), seen(0), POLICY)
    assert result.state.phase == PROGRESSING
    assert (result.state.stable_revision, result.state.candidate_revision) == ("old", "new")
    assert result.weight == 0
    assert result.candidate_size_weight == 10
    assert not result.stable_takes_desired
    assert result.result == "started"
    assert [event.reason for event in result.events] == ["RolloutStarted"]
    waiting = plan(result.state, seen(5, candidate=Candidate("new", ready=0, wanted=1)), POLICY)
    assert waiting.weight == 0 and waiting.state.step_started_at is None


def test_a_ready_candidate_takes_the_first_step_then_each_passed_step_the_next() -> None:
    first = plan(started(), seen(4, candidate=ready()), POLICY)
    assert (first.weight, first.state.step_started_at) == (10, 4)
    assert wants_analysis(first.state, "new")
    holding = plan(first.state, seen(20, candidate=ready(), verdict=WAIT), POLICY)
    assert holding.weight == 10
    second = plan(first.state, seen(34, candidate=ready(), verdict=PASS), POLICY)
    assert (second.weight, second.state.step, second.candidate_size_weight) == (25, 1, 25)
    third = plan(second.state, seen(64, candidate=ready(pods=2), verdict=PASS), POLICY)
    assert third.weight == 50


def test_passing_the_last_step_promotes_then_the_stable_takes_the_template_and_the_candidate_goes() -> None:
    promoting = plan(at_step(2), seen(30, candidate=ready(), verdict=PASS), POLICY)
    assert promoting.state.phase == PROMOTING
    assert promoting.stable_takes_desired and promoting.candidate_size_weight == 50
    rolling = plan(promoting.state, seen(32, stable="new", stable_rolled_out=False), POLICY)
    assert rolling.state.phase == PROMOTING and rolling.candidate_size_weight == 50
    done = plan(promoting.state, seen(40, stable="new"), POLICY)
    assert done.state.phase == STABLE and done.state.stable_revision == "new"
    assert (done.candidate_size_weight, done.weight, done.state.draining) == (0, 0, True)
    assert done.result == "promoted" and [e.reason for e in done.events] == ["Promoted"]
    terminating = plan(done.state, seen(42, stable="new", candidate=Candidate("new", 0, 0, pods=1)), POLICY)
    assert terminating.candidate_size_weight == 0 and not terminating.remove_release
    gone = plan(done.state, seen(44, stable="new", candidate=Candidate("new", 0, 0, pods=0)), POLICY)
    assert gone.remove_release and gone.candidate_size_weight is None and not gone.state.draining
    assert gone.stable_takes_desired


def test_a_failed_check_rolls_back_at_once_and_the_same_spec_stays_on_the_stable() -> None:
    result = plan(at_step(0), seen(10, candidate=ready(), verdict=FAIL), POLICY)
    assert result.state.phase == ROLLED_BACK
    assert (result.weight, result.candidate_size_weight, result.state.draining) == (0, 0, True)
    assert result.state.reason == "ErrorRatio" and result.state.rolled_back_revision == "new"
    assert result.result == "rolled_back" and result.events[0].type == "Warning"
    assert not result.stable_takes_desired
    drained = plan(result.state, seen(12), POLICY)
    assert drained.remove_release and not drained.stable_takes_desired
    again = plan(drained.state, seen(500), POLICY)
    assert again.state == drained.state and not again.stable_takes_desired and again.result is None
    newer = plan(drained.state, seen(600, desired="newer"), POLICY)
    assert newer.state.phase == PROGRESSING and newer.state.candidate_revision == "newer"


@pytest.mark.parametrize("candidate", [ready(restarts=2), Candidate("new", 0, 1, crash_looping=True)])
def test_a_crash_looping_candidate_is_rolled_back(candidate: Candidate) -> None:
    result = plan(started(), seen(8, candidate=candidate), POLICY)
    assert (result.state.phase, result.state.reason) == (ROLLED_BACK, "CrashLoop")


def test_a_candidate_never_ready_is_rolled_back_by_the_progress_deadline_without_traffic() -> None:
    state = started()
    assert plan(state, seen(299, candidate=Candidate("new", 0, 1)), POLICY).weight == 0
    result = plan(state, seen(301, candidate=Candidate("new", 0, 1)), POLICY)
    assert (result.state.phase, result.state.reason) == (ROLLED_BACK, "ProgressDeadlineExceeded")
    assert "0/1 pods ready" in result.state.message


def test_abort_and_promote_by_hand() -> None:
    aborted = plan(at_step(1), seen(5, candidate=ready(), command=ABORT), POLICY)
    assert (aborted.state.phase, aborted.state.reason, aborted.weight) == (ROLLED_BACK, "Aborted", 0)
    promoted = plan(at_step(0), seen(5, candidate=ready(), command=PROMOTE), POLICY)
    assert promoted.state.phase == PROMOTING and promoted.stable_takes_desired


def test_the_first_release_a_rolling_update_strategy_and_an_unserving_stable_go_direct() -> None:
    first = plan(None, seen(0, stable=None), POLICY)
    assert first.state.phase == STABLE and first.stable_takes_desired and first.state.reason == "FirstRelease"
    rolling = plan(RolloutState(STABLE, "old"), seen(0), RolloutPolicy(strategy="RollingUpdate"))
    assert rolling.stable_takes_desired and rolling.state.reason == "RollingUpdate"
    broken = plan(RolloutState(STABLE, "old"), seen(0, stable_ready=False), POLICY)
    assert broken.stable_takes_desired and broken.state.reason == "StableUnavailable"


def test_returning_to_the_stable_revision_mid_canary_ends_it() -> None:
    result = plan(at_step(1), seen(5, desired="old"), POLICY)
    assert result.state.phase == STABLE and result.candidate_size_weight == 0 and result.state.draining
    assert [e.reason for e in result.events] == ["RolloutSuperseded"]


def test_a_newer_spec_mid_canary_restarts_the_canary_for_it() -> None:
    result = plan(at_step(2), seen(5, desired="newer", candidate=ready()), POLICY)
    assert result.state.candidate_revision == "newer" and result.weight == 0 and result.state.step == 0
    assert [e.reason for e in result.events] == ["RolloutSuperseded", "RolloutStarted"]


def test_the_state_survives_the_status_round_trip() -> None:
    state = at_step(1, now=1_790_000_000)
    assert RolloutState.from_status(state.to_status(POLICY)) == state
    draining = RolloutState(ROLLED_BACK, "old", rolled_back_revision="new", reason="Aborted", draining=True)
    assert RolloutState.from_status(draining.to_status(POLICY)) == draining
    assert RolloutState.from_status({}) is None


@pytest.mark.parametrize(
    ("stable", "weight", "pods"), [(2, 10, 1), (10, 25, 3), (4, 50, 2), (1, 50, 1), (4, 0, 0)]
)
def test_the_candidate_is_sized_in_proportion_to_the_stable(stable: int, weight: int, pods: int) -> None:
    assert candidate_replicas(stable, weight) == pods


# --- analysis ---------------------------------------------------------------------------------

GOOD = Traffic(requests=200, errors=0, p99_seconds=0.05)


def test_a_candidate_failing_a_fifth_of_its_requests_fails_at_once() -> None:
    verdict = judge(Sample(Traffic(100, 20, 0.05), GOOD), AnalysisPolicy(), step_over=False)
    assert (verdict.outcome, verdict.reason) == (Outcome.FAILURE, "ErrorRatio")
    assert "20.0%" in verdict.message


def test_errors_are_judged_against_the_stables_own() -> None:
    noisy_stable = Traffic(1000, 40, 0.05)
    assert (
        judge(Sample(Traffic(100, 6, 0.05), noisy_stable), AnalysisPolicy(), step_over=True).outcome
        == Outcome.SUCCESS
    )


def test_a_slow_candidate_fails_on_p99() -> None:
    verdict = judge(Sample(Traffic(100, 0, 0.5), GOOD), AnalysisPolicy(), step_over=False)
    assert (verdict.outcome, verdict.reason) == (Outcome.FAILURE, "Latency")


def test_a_good_candidate_passes_only_when_the_step_is_over() -> None:
    assert judge(Sample(GOOD, GOOD), AnalysisPolicy(), step_over=False).outcome == Outcome.PENDING
    assert judge(Sample(GOOD, GOOD), AnalysisPolicy(), step_over=True).outcome == Outcome.SUCCESS


def test_no_traffic_is_no_promotion_unless_allowed() -> None:
    idle = Sample(Traffic(3, 0, None), GOOD)
    assert judge(idle, AnalysisPolicy(), step_over=True).reason == "InsufficientTraffic"
    allowed = AnalysisPolicy(promote_without_traffic=True)
    assert judge(idle, allowed, step_over=True).outcome == Outcome.SUCCESS


def test_user_checks_hold_the_candidate_to_their_bounds() -> None:
    policy = AnalysisPolicy(checks=(Check("queue", "q", maximum=10),))
    assert judge(Sample(GOOD, GOOD, {"queue": None}), policy, step_over=True).reason == "CheckNoData"
    failed = judge(Sample(GOOD, GOOD, {"queue": 11}), policy, step_over=False)
    assert (failed.outcome, failed.reason) == (Outcome.FAILURE, "CheckFailed")
    assert judge(Sample(GOOD, GOOD, {"queue": 3}), policy, step_over=True).outcome == Outcome.SUCCESS


def test_queries_select_one_revision_and_leave_out_probes() -> None:
    queries = traffic_queries("shop", "orders", "abc123", window_seconds(3))
    assert 'flotilla_dev_revision="abc123"' in queries["requests"]
    assert 'route!~"/livez|/readyz|/metrics"' in queries["errors"] and 'status=~"5.."' in queries["errors"]
    assert "[15s]" in queries["p99"]


def test_without_prometheus_readiness_alone_decides() -> None:
    assert readiness_only(False).outcome == Outcome.PENDING
    assert readiness_only(True).outcome == Outcome.SUCCESS


def promoted_from_old(now: float = 40) -> RolloutState:
    promoting = plan(at_step(2), seen(30, candidate=ready(), verdict=PASS), POLICY).state
    done = plan(promoting, seen(now, stable="new"), POLICY).state
    return plan(done, seen(now + 2, stable="new"), POLICY).state  # drained


def test_a_promotion_keeps_the_previous_revision_warm_for_a_while() -> None:
    state = promoted_from_old()
    assert (state.previous_revision, state.previous_until) == ("old", 40 + POLICY.keep_previous_seconds)
    none_kept = replace(POLICY, keep_previous_seconds=0)
    promoting = plan(at_step(2), seen(30, candidate=ready(), verdict=PASS), none_kept).state
    assert plan(promoting, seen(40, stable="new"), none_kept).state.previous_revision == ""


def test_returning_to_the_warm_revision_is_direct_with_every_pod_at_once() -> None:
    warm = promoted_from_old()
    back = plan(warm, seen(100, desired="old", stable="new"), POLICY)
    assert back.stable_takes_desired and back.fast and back.candidate_size_weight is None
    assert (back.state.phase, back.state.reason, back.state.stable_revision) == (STABLE, RESTORING, "old")
    assert back.state.previous_revision == "new", "the revision left is the warm one now"
    assert [e.reason for e in back.events] == ["RollingBack"]
    rolling = plan(back.state, seen(104, desired="old", stable="old", stable_rolled_out=False), POLICY)
    assert rolling.fast and rolling.state.reason == RESTORING
    done = plan(back.state, seen(110, desired="old", stable="old"), POLICY)
    assert (
        not done.fast and done.state.reason == "Restored" and [e.reason for e in done.events] == ["Restored"]
    )


def test_after_the_warm_window_the_old_revision_is_a_canary_again() -> None:
    warm = promoted_from_old()
    late = plan(warm, seen(40 + POLICY.keep_previous_seconds + 1, desired="old", stable="new"), POLICY)
    assert late.state.phase == PROGRESSING and not late.fast


def test_a_canary_or_a_rollback_in_between_keeps_the_warm_revision() -> None:
    warm = promoted_from_old()
    started = plan(warm, seen(60, desired="other", stable="new"), POLICY).state
    rolled_back = plan(
        replace(started, step_started_at=60),
        seen(62, desired="other", stable="new", candidate=ready("other"), verdict=FAIL),
        POLICY,
    ).state
    assert (started.previous_revision, rolled_back.previous_revision) == ("old", "old")


def test_a_warm_return_held_by_its_migration_stays_a_return() -> None:
    back = plan(promoted_from_old(), seen(100, desired="old", stable="new"), POLICY).state
    held = plan(back, seen(103, desired="old", stable="new", stable_rolled_out=False), POLICY)
    assert held.state == back and held.fast and held.stable_takes_desired and held.result is None


def test_a_first_release_held_by_its_migration_is_not_a_canary() -> None:
    first = plan(None, seen(0, stable=None), POLICY).state
    held = plan(first, seen(3, stable="older"), POLICY)
    assert held.state == first and held.stable_takes_desired and held.candidate_size_weight is None
