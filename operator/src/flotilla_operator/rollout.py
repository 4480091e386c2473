"""The canary step machine (pure): what one look at the world does to a release.

Every change of what the pods run is a new revision. The stable revision keeps running in the
Deployment named after the service; a candidate runs beside it in its own Deployment
(``<name>-canary``), takes the ingress traffic in steps, is judged at each one and is either
promoted (the stable Deployment takes its template, then the candidate goes) or rolled back
(its weight returns to 0 at once and it goes). ``plan`` is the whole policy: the caller observes,
calls it, applies the plan and stores ``Plan.state`` in ``status.rollout``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from flotilla_operator.analysis import AnalysisPolicy, Outcome, Verdict

CANARY, ROLLING_UPDATE = "Canary", "RollingUpdate"
STABLE, PROGRESSING, PROMOTING, ROLLED_BACK = "Stable", "Progressing", "Promoting", "RolledBack"
ACTIVE_PHASES = (PROGRESSING, PROMOTING)
PROMOTE, ABORT = "promote", "abort"
RESTORING = "RestoringPrevious"
# How often a release in progress is looked at again.
TICK_SECONDS = 2.0
# Why a release is rolled back: the analysis' verdicts, the candidate's health, a person.
ROLLBACK_REASONS = (
    "ErrorRatio",
    "Latency",
    "CheckFailed",
    "CrashLoop",
    "ProgressDeadlineExceeded",
    "Aborted",
)


@dataclass(frozen=True)
class RolloutPolicy:
    """``spec.rollout``: the strategy, the steps and how long each is held and judged."""

    strategy: str = CANARY
    steps: tuple[int, ...] = (10, 25, 50)
    step_seconds: float = 30
    progress_deadline_seconds: float = 300
    max_restarts: int = 2
    keep_previous_seconds: float = 600
    analysis: AnalysisPolicy = field(default_factory=AnalysisPolicy)

    @property
    def canary(self) -> bool:
        """Whether releases go through the canary steps."""
        return self.strategy == CANARY

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> RolloutPolicy:
        """The policy of ``spec.rollout`` (unset fields take the defaults above)."""
        rollout = spec.get("rollout") or {}
        defaults = cls()
        return cls(
            strategy=rollout.get("strategy", CANARY),
            steps=tuple(int(step) for step in rollout.get("steps") or defaults.steps),
            step_seconds=float(rollout.get("stepSeconds", defaults.step_seconds)),
            progress_deadline_seconds=float(
                rollout.get("progressDeadlineSeconds", defaults.progress_deadline_seconds)
            ),
            max_restarts=int(rollout.get("maxRestarts", defaults.max_restarts)),
            keep_previous_seconds=float(rollout.get("keepPreviousSeconds", defaults.keep_previous_seconds)),
            analysis=AnalysisPolicy.from_spec(rollout.get("analysis") or {}),
        )


def _timestamp(value: float | None, *, precise: bool = False) -> str | None:
    form = "%Y-%m-%dT%H:%M:%S.%fZ" if precise else "%Y-%m-%dT%H:%M:%SZ"
    return None if value is None else datetime.fromtimestamp(value, UTC).strftime(form)


def _seconds(value: Any) -> float | None:
    if not value:
        return None
    text = str(value).removesuffix("Z")
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class RolloutState:
    """Where a release stands: what ``status.rollout`` holds."""

    phase: str = STABLE
    stable_revision: str = ""
    candidate_revision: str = ""
    step: int = 0
    weight: int = 0
    started_at: float | None = None
    step_started_at: float | None = None
    reason: str = ""
    message: str = ""
    rolled_back_revision: str = ""
    # A release just ended: the candidate has no weight and no pods asked for; its objects go
    # once its pods are gone (the route is the last to go: no request reaches a dying pod).
    draining: bool = False
    # The revision the stable ran before (its ReplicaSet kept, scaled to 0), and until when a
    # return to it is direct, every pod at once, with no canary.
    previous_revision: str = ""
    previous_until: float | None = None
    # When the last release ended (rolled back or promoted), to the microsecond: the moment the
    # candidate's weight went to 0 or the stable took it.
    ended_at: float | None = None

    def to_status(self, policy: RolloutPolicy) -> dict[str, Any]:
        """As ``status.rollout`` (camelCase, RFC 3339 times, empty fields left out)."""
        body: dict[str, Any] = {
            "phase": self.phase,
            "strategy": policy.strategy,
            "stableRevision": self.stable_revision,
            "candidateRevision": self.candidate_revision,
            "weight": self.weight,
            "step": f"{self.step + 1}/{len(policy.steps)}" if self.phase in ACTIVE_PHASES else "",
            "startedAt": _timestamp(self.started_at),
            "stepStartedAt": _timestamp(self.step_started_at),
            "reason": self.reason,
            "message": self.message,
            "rolledBackRevision": self.rolled_back_revision,
            "draining": self.draining,
            "previousRevision": self.previous_revision,
            "previousUntil": _timestamp(self.previous_until),
            "endedAt": _timestamp(self.ended_at, precise=True),
        }
        return {
            key: value
            for key, value in body.items()
            if value is not None and value != "" and value is not False
        }

    @classmethod
    def from_status(cls, status: dict[str, Any] | None) -> RolloutState | None:
        """The state a previous reconcile stored, or None (never released by this operator)."""
        if not status or "phase" not in status:
            return None
        step = str(status.get("step") or "1/1").split("/", 1)[0]
        return cls(
            phase=str(status["phase"]),
            stable_revision=str(status.get("stableRevision", "")),
            candidate_revision=str(status.get("candidateRevision", "")),
            step=max(0, int(step) - 1) if step.isdigit() else 0,
            weight=int(status.get("weight", 0)),
            started_at=_seconds(status.get("startedAt")),
            step_started_at=_seconds(status.get("stepStartedAt")),
            reason=str(status.get("reason", "")),
            message=str(status.get("message", "")),
            rolled_back_revision=str(status.get("rolledBackRevision", "")),
            draining=bool(status.get("draining", False)),
            previous_revision=str(status.get("previousRevision", "")),
            previous_until=_seconds(status.get("previousUntil")),
            ended_at=_seconds(status.get("endedAt")),
        )


@dataclass(frozen=True)
class Candidate:
    """The candidate Deployment as observed: its revision, pods ready and wanted, restarts."""

    revision: str
    ready: int
    wanted: int
    restarts: int = 0
    crash_looping: bool = False
    pods: int | None = None  # pods still running (``status.replicas``); None: as many as wanted

    @property
    def gone(self) -> bool:
        """Whether no pod of it runs any more."""
        return self.wanted == 0 and not (self.wanted if self.pods is None else self.pods)


@dataclass(frozen=True)
class Observation:
    """What the caller saw: revisions, the Deployments' health, the analysis and any command."""

    desired_revision: str
    stable_revision: str | None
    stable_ready: bool
    stable_rolled_out: bool
    now: float
    candidate: Candidate | None = None
    verdict: Verdict | None = None
    command: str | None = None


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post about the Microservice."""

    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class Plan:
    """What to make of the world: which template the stable Deployment runs, the candidate, the weight."""

    state: RolloutState
    stable_takes_desired: bool
    # The candidate's size as a share of the stable's: None, no candidate; 0, drained (no pods).
    candidate_size_weight: int | None
    events: tuple[Event, ...] = ()
    result: str | None = None  # "started", "promoted" or "rolled_back", for the metrics
    remove_release: bool = False  # delete the candidate's Deployment and the weighted route
    fast: bool = False  # the stable starts every new pod at once (a return to the warm revision)

    @property
    def weight(self) -> int:
        """The candidate's share of the ingress traffic, in percent."""
        return self.state.weight


def candidate_replicas(stable_replicas: int, weight: int) -> int:
    """The candidate's pods: its share of the stable's (at least one), as the HPA scales the stable."""
    return 0 if weight == 0 else max(1, math.ceil(stable_replicas * weight / 100))


def step_over(state: RolloutState, policy: RolloutPolicy, now: float) -> bool:
    """Whether the current step has been held for ``step_seconds``."""
    return state.step_started_at is not None and now - state.step_started_at >= policy.step_seconds


def wants_analysis(state: RolloutState | None, desired_revision: str) -> bool:
    """Whether the metrics must be read before ``plan``: a step of this candidate is running."""
    return (
        state is not None
        and state.phase == PROGRESSING
        and state.candidate_revision == desired_revision
        and state.step_started_at is not None
    )


def _stable(revision: str, reason: str, message: str, *, draining: bool = False) -> RolloutState:
    return RolloutState(
        phase=STABLE, stable_revision=revision, reason=reason, message=message, draining=draining
    )


def _rollback(state: RolloutState, reason: str, message: str, now: float) -> Plan:
    rolled_back = RolloutState(
        phase=ROLLED_BACK,
        stable_revision=state.stable_revision,
        reason=reason,
        message=f"Revision {state.candidate_revision} was rolled back: {message}",
        rolled_back_revision=state.candidate_revision,
        started_at=state.started_at,
        draining=True,
        previous_revision=state.previous_revision,
        previous_until=state.previous_until,
        ended_at=now,
    )
    event = Event("Warning", "RolledBack", rolled_back.message)
    return Plan(rolled_back, False, 0, (event,), "rolled_back")


def plan(previous: RolloutState | None, seen: Observation, policy: RolloutPolicy) -> Plan:
    """The next step of a release, from the state stored and what was just observed."""
    state = previous or RolloutState()
    desired = seen.desired_revision
    continuing = state.phase in ACTIVE_PHASES and state.candidate_revision == desired
    if state.draining:
        decided = _drain(state, seen)
    elif state.phase == STABLE and state.stable_revision == desired != seen.stable_revision:
        # Already decided: a direct release (the first, a rolling update, a warm return) that the
        # stable Deployment has not taken yet (its migration Job runs first, say).
        decided = _restoring(state, seen) if state.reason == RESTORING else Plan(state, True, None)
    elif not continuing and _warm(state, seen) and policy.canary:
        decided = _restore(state, seen, policy)
    elif not continuing and (not policy.canary or seen.stable_revision is None or not seen.stable_ready):
        decided = _direct(state, seen, policy)
    elif desired == seen.stable_revision:
        decided = _settled(state, seen, policy)
    elif state.phase == ROLLED_BACK and state.rolled_back_revision == desired:
        decided = Plan(state, False, None)  # stays on the stable revision until the spec changes again
    elif not continuing:
        decided = _start(state, seen, policy)
    elif state.phase == PROMOTING:
        decided = Plan(state, True, state.weight or policy.steps[-1])
    else:
        decided = _progress(state, seen, policy)
    return decided


def _direct(state: RolloutState, seen: Observation, policy: RolloutPolicy) -> Plan:
    """No canary: the first release, a stable that serves nothing, or a plain rolling update."""
    if not policy.canary:
        reason, message = "RollingUpdate", "spec.rollout.strategy is RollingUpdate: the Deployment rolls."
    elif seen.stable_revision is None:
        reason, message = "FirstRelease", "Nothing to compare with: the first revision is released directly."
    else:
        reason, message = "StableUnavailable", "The stable revision serves nothing: released directly."
    if state.phase not in ACTIVE_PHASES:
        return Plan(_stable(seen.desired_revision, reason, message), True, None)
    event = Event("Normal", "RolloutSuperseded", f"Canary of {state.candidate_revision} ended: {message}")
    return Plan(_stable(seen.desired_revision, reason, message, draining=True), True, 0, (event,))


def _keeping(state: RolloutState, previous: str, now: float, policy: RolloutPolicy) -> RolloutState:
    """``state`` remembering ``previous`` as the warm revision for ``keep_previous_seconds``."""
    if policy.keep_previous_seconds <= 0 or not previous or previous == state.stable_revision:
        return replace(state, previous_revision="", previous_until=None)
    return replace(state, previous_revision=previous, previous_until=now + policy.keep_previous_seconds)


def _warm(state: RolloutState, seen: Observation) -> bool:
    """Whether the spec returns to the previous stable revision while it is kept warm."""
    return (
        bool(state.previous_revision)
        and state.previous_revision == seen.desired_revision
        and seen.stable_revision not in (None, seen.desired_revision)
        and state.previous_until is not None
        and seen.now < state.previous_until
    )


def _restore(state: RolloutState, seen: Observation, policy: RolloutPolicy) -> Plan:
    """Back to the warm revision: directly, every pod at once (its ReplicaSet is the stable's own)."""
    desired, leaving = seen.desired_revision, seen.stable_revision or ""
    message = f"Returning to the warm revision {desired}: every pod at once, no canary steps."
    draining = state.phase in ACTIVE_PHASES
    restoring = _keeping(_stable(desired, RESTORING, message, draining=draining), leaving, seen.now, policy)
    return Plan(
        restoring, True, 0 if draining else None, (Event("Normal", "RollingBack", message),), fast=True
    )


def _restoring(state: RolloutState, seen: Observation) -> Plan:
    """A return to the warm revision: every pod at once until they all serve."""
    if not seen.stable_rolled_out:
        return Plan(state, True, None, fast=True)
    message = f"Revision {state.stable_revision}, the warm one, serves all traffic again."
    restored = replace(state, reason="Restored", message=message)
    return Plan(restored, True, None, (Event("Normal", "Restored", message),))


def _settled(state: RolloutState, seen: Observation, policy: RolloutPolicy) -> Plan:
    """The spec asks for the stable revision: a promotion finishing, or a candidate given up."""
    desired = seen.desired_revision
    if state.phase == PROMOTING and state.candidate_revision == desired:
        if not seen.stable_rolled_out:
            return Plan(state, True, state.weight)
        message = f"Revision {desired} was promoted: it serves all traffic."
        promoted = _stable(desired, "Promoted", message, draining=True)
        promoted = replace(_keeping(promoted, state.stable_revision, seen.now, policy), ended_at=seen.now)
        return Plan(promoted, True, 0, (Event("Normal", "Promoted", message),), "promoted")
    if state.phase == STABLE and state.stable_revision == desired:
        return _restoring(state, seen) if state.reason == RESTORING else Plan(state, True, None)
    message = f"Revision {desired} serves all traffic."
    if state.phase not in ACTIVE_PHASES:
        return Plan(_stable(desired, "Stable", message), True, None)
    event = Event(
        "Normal",
        "RolloutSuperseded",
        f"Canary of {state.candidate_revision} ended: the spec returned to the stable revision.",
    )
    return Plan(_stable(desired, "Stable", message, draining=True), True, 0, (event,))


def _drain(state: RolloutState, seen: Observation) -> Plan:
    """After a release: no weight, no pods; then its objects go (the next look after the pods)."""
    keeps_stable, fast = state.phase != STABLE, state.reason == RESTORING
    if seen.candidate is not None and not seen.candidate.gone:
        return Plan(state, not keeps_stable, 0, fast=fast)
    return Plan(replace(state, draining=False), not keeps_stable, None, remove_release=True, fast=fast)


def _start(state: RolloutState, seen: Observation, policy: RolloutPolicy) -> Plan:
    stable, desired = seen.stable_revision or "", seen.desired_revision
    steps = ", ".join(f"{step}%" for step in policy.steps)
    message = f"Canary of revision {desired} against {stable}: steps {steps}, {policy.step_seconds:g} s each."
    events = []
    if state.phase == PROGRESSING:
        events.append(
            Event("Normal", "RolloutSuperseded", f"Canary of {state.candidate_revision} ended: a newer spec.")
        )
    events.append(Event("Normal", "RolloutStarted", message))
    started = RolloutState(
        phase=PROGRESSING,
        stable_revision=stable,
        candidate_revision=desired,
        started_at=seen.now,
        reason="CandidateStarting",
        message="Waiting for the candidate's pods to be ready.",
        previous_revision=state.previous_revision,
        previous_until=state.previous_until,
    )
    return Plan(started, False, policy.steps[0], tuple(events), "started")


def _progress(state: RolloutState, seen: Observation, policy: RolloutPolicy) -> Plan:
    """A step of the candidate: end it early (by hand, a crash loop, the deadline), begin or judge it."""
    ended = _ended_early(state, seen, policy)
    if ended is not None:
        return ended
    if state.step_started_at is None:
        return _begin_step(state, seen, policy)
    verdict, size = seen.verdict, policy.steps[state.step]
    if verdict is None or verdict.outcome == Outcome.PENDING:
        held = state if verdict is None else replace(state, reason=verdict.reason, message=verdict.message)
        return Plan(held, False, size)
    if verdict.outcome == Outcome.FAILURE:
        return _rollback(state, verdict.reason, verdict.message, seen.now)
    if state.step + 1 >= len(policy.steps):
        return _promote(state, policy, f"every step passed ({verdict.message})")
    return _begin_step(replace(state, step=state.step + 1), seen, policy, ready=True)


def _ended_early(state: RolloutState, seen: Observation, policy: RolloutPolicy) -> Plan | None:
    """Abort or promote by hand, a crash-looping candidate, the progress deadline; else None."""
    candidate = seen.candidate
    if seen.command == ABORT:
        return _rollback(state, "Aborted", "aborted by hand (the flotilla.dev/rollout annotation).", seen.now)
    if candidate is not None and (candidate.crash_looping or candidate.restarts >= policy.max_restarts):
        return _rollback(
            state, "CrashLoop", f"its pods restarted {candidate.restarts} times (crash loop).", seen.now
        )
    if seen.command == PROMOTE:
        return _promote(state, policy, "promoted by hand (the flotilla.dev/rollout annotation)")
    if state.started_at is None or seen.now - state.started_at <= policy.progress_deadline_seconds:
        return None
    ready = "" if candidate is None else f" ({candidate.ready}/{candidate.wanted} pods ready)"
    return _rollback(
        state,
        "ProgressDeadlineExceeded",
        f"it did not pass its steps within {policy.progress_deadline_seconds:g} s{ready}.",
        seen.now,
    )


def _begin_step(
    state: RolloutState, seen: Observation, policy: RolloutPolicy, *, ready: bool = False
) -> Plan:
    """Give the candidate its step's weight once all its pods are ready (none before)."""
    weight, candidate = policy.steps[state.step], seen.candidate
    serving = candidate is not None and candidate.revision == seen.desired_revision
    if not ready and not (serving and candidate is not None and candidate.ready >= candidate.wanted):
        return Plan(state, False, weight)
    begun = replace(
        state,
        weight=weight,
        step_started_at=seen.now,
        reason="Analysing",
        message=f"Step {state.step + 1}/{len(policy.steps)}: {weight}% of the traffic.",
    )
    return Plan(begun, False, weight)


def _promote(state: RolloutState, policy: RolloutPolicy, why: str) -> Plan:
    message = f"Promoting revision {state.candidate_revision}: {why}."
    weight = state.weight or policy.steps[state.step]
    promoting = replace(state, phase=PROMOTING, weight=weight, reason="Promoting", message=message)
    return Plan(promoting, True, weight, (Event("Normal", "Promoting", message),))
