"""One look at a release: observe the tracks, read the analysis, ask ``rollout.plan`` what to do.

The I/O half of the canary: ``rollout.py`` decides, ``render``/``routing`` write the objects.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from flotilla_operator.analysis import Outcome, Verdict, judge, readiness_only, window_seconds
from flotilla_operator.kube import Kube
from flotilla_operator.prometheus import Prometheus, PrometheusUnavailable
from flotilla_operator.render import (
    CANARY_TRACK,
    REVISION_LABEL,
    TRACK_LABEL,
    Manifest,
    RenderContext,
    revision,
    selector_labels,
    track_name,
)
from flotilla_operator.rollout import (
    ACTIVE_PHASES,
    PROGRESSING,
    RESTORING,
    STABLE,
    Candidate,
    Observation,
    Plan,
    RolloutPolicy,
    RolloutState,
    candidate_replicas,
    plan,
    step_over,
    wants_analysis,
)
from flotilla_operator.routing import TRAEFIK_CONTROLLER

log = logging.getLogger("flotilla.operator")
# `kubectl annotate ms NAME flotilla.dev/rollout=promote` (or abort): acted on once, then removed.
COMMAND_ANNOTATION = "flotilla.dev/rollout"
COMMANDS = ("promote", "abort")
# A container waiting for this reason is crash-looping.
CRASH_REASONS = ("CrashLoopBackOff", "CreateContainerConfigError", "ErrImagePull", "ImagePullBackOff")
# The kinds a release adds; removed when it ends.
RELEASE_KINDS = ("IngressRoute", "TraefikService")


@dataclass(frozen=True)
class Release:
    """The plan for this reconcile and the render context that carries it out."""

    plan: Plan
    policy: RolloutPolicy
    context: RenderContext
    analysis: str  # "Prometheus", "ReadinessOnly" or why Prometheus could not be read


def _revision_of(deployment: Manifest | None) -> str | None:
    if deployment is None:
        return None
    labels = ((deployment.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
    value = labels.get(REVISION_LABEL)
    return str(value) if value else None


def rolled_out(deployment: Manifest, revision_wanted: str) -> bool:
    """Whether every pod of a Deployment runs ``revision_wanted``, ready, and no old pod is left."""
    status = deployment.get("status") or {}
    wanted = (deployment.get("spec") or {}).get("replicas", 1)
    return (
        _revision_of(deployment) == revision_wanted
        and status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 0)
        and (status.get("updatedReplicas") or 0) >= wanted
        and (status.get("readyReplicas") or 0) >= wanted
        and (status.get("replicas") or 0) <= wanted
    )


def candidate_of(kube: Kube, namespace: str, name: str) -> Candidate | None:
    """The candidate Deployment and its pods' restarts, or None when there is none."""
    live = kube.get("Deployment", namespace, track_name(name, CANARY_TRACK))
    if live is None:
        return None
    status = live.get("status") or {}
    pods = kube.pods(namespace, {**selector_labels(name), TRACK_LABEL: CANARY_TRACK})
    restarts, crash_looping = 0, False
    for pod in pods:
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            restarts = max(restarts, int(container.get("restartCount") or 0))
            waiting = (container.get("state") or {}).get("waiting") or {}
            crash_looping = crash_looping or waiting.get("reason") in CRASH_REASONS
    return Candidate(
        revision=_revision_of(live) or "",
        ready=int(status.get("readyReplicas") or 0),
        wanted=int((live.get("spec") or {}).get("replicas") or 0),
        restarts=restarts,
        crash_looping=crash_looping,
        pods=int(status.get("replicas") or 0),
    )


def analyse(
    prometheus: Prometheus | None, ms: Manifest, state: RolloutState, policy: RolloutPolicy, now: float
) -> tuple[Verdict, str]:
    """The verdict on the current step, and how it was reached."""
    over = step_over(state, policy, now)
    if prometheus is None:
        return readiness_only(over), "ReadinessOnly"
    metadata = ms["metadata"]
    window = window_seconds(now - (state.step_started_at or now))
    try:
        sample = prometheus.sample(
            metadata["namespace"],
            metadata["name"],
            (state.candidate_revision, state.stable_revision),
            window,
            policy.analysis.checks,
        )
    except PrometheusUnavailable as exc:
        log.warning("canary analysis could not read Prometheus", extra={"error": str(exc)})
        return judge_unavailable(str(exc)), "PrometheusUnavailable"
    return judge(sample, policy.analysis, step_over=over), "Prometheus"


def judge_unavailable(why: str) -> Verdict:
    """No metrics, no promotion: the step waits (its progress deadline still runs)."""
    return Verdict(Outcome.PENDING, "PrometheusUnavailable", why)


def decide(
    kube: Kube,
    prometheus: Prometheus | None,
    ms: Manifest,
    context: RenderContext,
    now: float,
    desired: str | None = None,
) -> Release:
    """Observe, analyse and plan one reconcile of the release; the context renders the plan.

    ``desired`` is ``revision(ms, context)`` when the caller knows it already.
    """
    metadata, spec = ms["metadata"], ms["spec"]
    namespace, name = metadata["namespace"], metadata["name"]
    policy = RolloutPolicy.from_spec(spec)
    desired = desired or revision(ms, context)
    previous = RolloutState.from_status((ms.get("status") or {}).get("rollout"))
    analysis = "Prometheus" if prometheus is not None else "ReadinessOnly"
    settled = previous is not None and previous.phase == STABLE and not previous.draining
    if (
        settled
        and previous is not None
        and previous.stable_revision == desired
        and previous.reason != RESTORING
    ):
        return Release(Plan(previous, True, None), policy, context, analysis)  # nothing to release
    stable = kube.get("Deployment", namespace, name)
    watching = previous is not None and (previous.phase in ACTIVE_PHASES or previous.draining)
    candidate = candidate_of(kube, namespace, name) if watching else None
    verdict = None
    if previous is not None and wants_analysis(previous, desired) and candidate is not None:
        verdict, analysis = analyse(prometheus, ms, previous, policy, now)
    command = (metadata.get("annotations") or {}).get(COMMAND_ANNOTATION)
    stable_status = (stable or {}).get("status") or {}
    seen = Observation(
        desired_revision=desired,
        stable_revision=_revision_of(stable),
        stable_ready=(stable_status.get("readyReplicas") or 0) > 0,
        stable_rolled_out=stable is not None and rolled_out(stable, desired),
        now=now,
        candidate=candidate,
        verdict=verdict,
        command=command if command in COMMANDS and previous and previous.phase == PROGRESSING else None,
    )
    decided = plan(previous, seen, policy)
    if command is not None:
        kube.remove_annotation(namespace, name, COMMAND_ANNOTATION)
    context = replace(context, fast_rollout=decided.fast)
    if decided.candidate_size_weight is None:
        return Release(decided, policy, context, analysis)
    stable_replicas = int(((stable or {}).get("spec") or {}).get("replicas") or spec.get("replicas") or 1)
    ingress_class = (spec.get("ingress") or {}).get("className") or None
    release_context = replace(
        context,
        candidate_replicas=candidate_replicas(stable_replicas, decided.candidate_size_weight),
        candidate_weight=decided.weight,
        weighted_ingress=bool(spec.get("ingress"))
        and kube.ingress_controller(ingress_class) == TRAEFIK_CONTROLLER
        and context.traefik_routes_crd,
    )
    return Release(decided, policy, release_context, analysis)


def remove_release(kube: Kube, ms: Manifest, traefik_routes: bool) -> None:
    """Delete what a release added, the route first (the Ingress takes its requests back).

    Then the track Services, then the candidate's Deployment (its pods are gone by then).
    """
    namespace, name = ms["metadata"]["namespace"], ms["metadata"]["name"]
    if traefik_routes:
        for kind in RELEASE_KINDS:
            kube.delete(kind, namespace, name)
    for track in ("stable", CANARY_TRACK):
        kube.delete("Service", namespace, track_name(name, track))
    kube.delete("Deployment", namespace, track_name(name, CANARY_TRACK))


def release_status(release: Release) -> dict[str, Any]:
    """``status.rollout``, with how the analysis is done."""
    return {**release.plan.state.to_status(release.policy), "analysis": release.analysis}
