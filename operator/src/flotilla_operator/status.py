"""Status as Kubernetes API conventions want it: conditions computed from what was observed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flotilla_operator.render import scheme
from flotilla_operator.rollout import ACTIVE_PHASES, ROLLED_BACK

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
# kstatus' name for a failure that needs a person (Helm 4's --wait stops on it): Degraded's twin.
STALLED = "Stalled"
DEPENDENCIES_READY = "DependenciesReady"
MONITORING = "MonitoringConfigured"
MIGRATED = "Migrated"


@dataclass(frozen=True)
class Condition:
    """One condition before it is stamped with times and generations."""

    type: str
    status: bool
    reason: str
    message: str


def _conditions(deployment: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    if not deployment:
        return {}
    return {c["type"]: c for c in (deployment.get("status") or {}).get("conditions") or []}


def rollout_conditions(deployment: dict[str, Any] | None, desired: int | None) -> list[Condition]:
    """Ready, Progressing and Degraded, read from the Deployment."""
    if deployment is None:
        return [
            Condition(READY, False, "DeploymentMissing", "The Deployment does not exist yet."),
            Condition(PROGRESSING, True, "Creating", "Creating the Deployment."),
            Condition(DEGRADED, False, "AsExpected", "Nothing has failed."),
        ]
    status = deployment.get("status") or {}
    generation_seen = status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 0)
    wanted = desired if desired is not None else (deployment.get("spec") or {}).get("replicas", 1)
    ready = status.get("readyReplicas", 0) or 0
    updated = status.get("updatedReplicas", 0) or 0
    total = status.get("replicas", 0) or 0
    rolled_out = generation_seen and updated >= wanted and total <= wanted and ready >= wanted
    deployment_conditions = _conditions(deployment)
    available = deployment_conditions.get("Available", {}).get("status") == "True"
    progress = deployment_conditions.get("Progressing", {})
    failure = deployment_conditions.get("ReplicaFailure", {})
    stalled = progress.get("reason") == "ProgressDeadlineExceeded"
    conditions = [
        Condition(READY, True, "Available", f"{ready}/{wanted} replicas ready.")
        if available and rolled_out
        else Condition(
            READY, False, "RollingOut" if available else "Unavailable", f"{ready}/{wanted} replicas ready."
        ),
        Condition(PROGRESSING, False, "RolloutComplete", "The newest version serves every replica.")
        if rolled_out
        else Condition(
            PROGRESSING, True, "RollingOut", f"{updated}/{wanted} replicas updated, {ready} ready."
        ),
    ]
    if stalled or failure.get("status") == "True":
        message = progress.get("message") if stalled else failure.get("message")
        reason = "ProgressDeadlineExceeded" if stalled else "ReplicaFailure"
        conditions.append(Condition(DEGRADED, True, reason, message or reason))
    else:
        conditions.append(Condition(DEGRADED, False, "AsExpected", "Nothing has failed."))
    return conditions


def job_finished(job: dict[str, Any]) -> str | None:
    """``Complete`` or ``Failed`` once a Job is over (its pods gone), else None."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return str(condition["type"])
    return None


def migration_condition(job: dict[str, Any]) -> Condition:
    """Migrated, read from the migration Job of the current revision."""
    name = job["metadata"]["name"]
    finished = job_finished(job)
    if finished == "Complete":
        return Condition(MIGRATED, True, "Succeeded", f"The migration Job {name} succeeded.")
    if finished == "Failed":
        failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
        detail = failed.get("message") or failed.get("reason") or "it failed"
        return Condition(
            MIGRATED,
            False,
            "Failed",
            f"The migration Job {name} failed: {detail} (delete it to run it again).",
        )
    return Condition(MIGRATED, False, "Running", f"The migration Job {name} is running.")


def with_migration(conditions: list[Condition], migrated: Condition) -> list[Condition]:
    """Degraded=True when the migration failed, Progressing while it runs; Ready stays the Deployment's."""
    if migrated.reason == "Failed":
        return [
            Condition(DEGRADED, True, "MigrationFailed", migrated.message) if c.type == DEGRADED else c
            for c in conditions
        ]
    if migrated.reason == "Running":
        return [
            Condition(PROGRESSING, True, "Migrating", migrated.message) if c.type == PROGRESSING else c
            for c in conditions
        ]
    return conditions


def tls_mismatches(caller: dict[str, Any], dependencies: dict[str, dict[str, Any] | None]) -> list[str]:
    """One sentence per dependency that serves HTTP where ``caller`` calls over HTTPS, or the reverse."""
    calls = scheme(caller["spec"])
    serves = {name: scheme(ms.get("spec") or {}) for name, ms in dependencies.items() if ms is not None}
    return [
        f"{caller['metadata']['name']} calls {name} over {calls.upper()} but {name} serves "
        f"{served.upper()}: set spec.tls on both or neither."
        for name, served in sorted(serves.items())
        if served != calls
    ]


def dependencies_condition(
    caller: dict[str, Any], dependencies: dict[str, dict[str, Any] | None]
) -> Condition:
    """DependenciesReady: every ``dependsOn`` Microservice exists, speaks ``caller``'s scheme and is Ready."""
    if not dependencies:
        return Condition(DEPENDENCIES_READY, True, "NoDependencies", "This service depends on nothing.")
    mismatches = tls_mismatches(caller, dependencies)
    missing = sorted(name for name, ms in dependencies.items() if ms is None)
    waiting = sorted(name for name, ms in dependencies.items() if ms is not None and not is_ready(ms))
    if mismatches:  # first: unlike the others, it never resolves by waiting
        return Condition(DEPENDENCIES_READY, False, "TLSMismatch", " ".join(mismatches))
    if missing:
        return Condition(DEPENDENCIES_READY, False, "DependencyMissing", f"Not found: {', '.join(missing)}.")
    if waiting:
        return Condition(DEPENDENCIES_READY, False, "DependencyNotReady", f"Not ready: {', '.join(waiting)}.")
    return Condition(DEPENDENCIES_READY, True, "AllReady", f"Ready: {', '.join(sorted(dependencies))}.")


def is_ready(ms: dict[str, Any]) -> bool:
    """Whether a Microservice reports Ready=True for its current generation."""
    status = ms.get("status") or {}
    if status.get("observedGeneration") != ms["metadata"].get("generation"):
        return False
    return any(c["type"] == READY and c["status"] == "True" for c in status.get("conditions") or [])


def stamp(
    conditions: list[Condition],
    previous: list[dict[str, Any]] | None,
    generation: int,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """API-convention conditions; lastTransitionTime moves only when the status flips."""
    now = now or datetime.now(UTC)
    before = {c["type"]: c for c in previous or []}
    stamped = []
    for condition in conditions:
        status = "True" if condition.status else "False"
        earlier = before.get(condition.type)
        changed = earlier is None or earlier.get("status") != status
        stamped.append(
            {
                "type": condition.type,
                "status": status,
                "reason": condition.reason,
                "message": condition.message,
                "lastTransitionTime": now.strftime("%Y-%m-%dT%H:%M:%SZ")
                if changed
                else earlier["lastTransitionTime"],  # type: ignore[index]
                "observedGeneration": generation,
            }
        )
    return stamped


def transitions(before: list[dict[str, Any]] | None, after: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conditions whose status changed (each worth one Event)."""
    previous = {c["type"]: c.get("status") for c in before or []}
    return [c for c in after if previous.get(c["type"]) != c["status"]]


def with_stalled(conditions: list[Condition]) -> list[Condition]:
    """The conditions plus Stalled: what Degraded says, under the name status-aware tools read.

    kstatus takes Stalled=True for Failed, so Helm 4's ``--wait`` ends on it.
    """
    degraded = next((c for c in conditions if c.type == DEGRADED), None)
    if degraded is None:
        return conditions
    return [*conditions, Condition(STALLED, degraded.status, degraded.reason, degraded.message)]


RELEASED = "Released"
ANALYSIS = "CanaryAnalysis"
ANALYSIS_MESSAGES = {
    "Prometheus": "Each canary step is judged on the kit's metrics in Prometheus, candidate against stable.",
    "ReadinessOnly": "No Prometheus (FLOTILLA_PROMETHEUS_URL is unset): canary steps are judged on "
    "readiness and restarts only.",
    "PrometheusUnavailable": "Prometheus could not be read: canary steps wait (the progress deadline runs).",
}


def with_release(
    conditions: list[Condition], phase: str, reason: str, message: str, analysis: str | None
) -> list[Condition]:
    """The workload's conditions as a release changes them, plus Released and CanaryAnalysis.

    A canary in progress is Progressing (whatever the stable Deployment says); a rolled-back
    release is Degraded until the spec changes again (``helm upgrade --wait`` fails on it).
    """
    done = phase not in ACTIVE_PHASES and phase != ROLLED_BACK
    replaced = {}
    if phase in ACTIVE_PHASES:
        replaced[PROGRESSING] = Condition(PROGRESSING, True, "Canary", message)
    if phase == ROLLED_BACK:
        replaced[DEGRADED] = Condition(DEGRADED, True, "RolledBack", message)
    changed = [replaced.get(c.type, c) if not (c.type == DEGRADED and c.status) else c for c in conditions]
    changed.append(Condition(RELEASED, done, reason or phase, message))
    if analysis is not None:
        changed.append(Condition(ANALYSIS, analysis == "Prometheus", analysis, ANALYSIS_MESSAGES[analysis]))
    return changed
