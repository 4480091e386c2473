"""One reconciliation: apply the rendered children, prune the rest, report status."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from kubernetes.dynamic.exceptions import DynamicApiError, NotFoundError, ResourceNotFoundError

from flotilla_operator import FIELD_MANAGER, KIND
from flotilla_operator.kitversions import KitVersions
from flotilla_operator.kube import CHILD_KINDS, OPTIONAL_KINDS, SERVICE_MONITOR_CRD, Kube
from flotilla_operator.metrics import (
    MANAGED_RESOURCES,
    MICROSERVICES,
    RECONCILE_DURATION,
    RECONCILES,
    count_release,
)
from flotilla_operator.prometheus import Prometheus
from flotilla_operator.release import Release, decide, release_status, remove_release
from flotilla_operator.render import (
    CANARY_TRACK,
    ROUTE_LABEL,
    TRACK_LABEL,
    ConfigMissing,
    RenderContext,
    config_references,
    external_url,
    render,
    revision,
    scheme,
    selector_labels,
    service_url,
)
from flotilla_operator.rollout import ACTIVE_PHASES
from flotilla_operator.routing import weighted_route
from flotilla_operator.status import (
    DEGRADED,
    MIGRATED,
    MONITORING,
    READY,
    Condition,
    dependencies_condition,
    job_finished,
    migration_condition,
    rollout_conditions,
    stamp,
    transitions,
    with_migration,
    with_release,
    with_stalled,
)

log = logging.getLogger("flotilla.operator")
HANDOVER_MANAGER = "flotilla-operator-handover"
EventPoster = Callable[[dict[str, Any], str, str, str], None]
"""post(microservice, type, reason, message): one Kubernetes Event."""


def child_key(child: dict[str, Any]) -> str:
    """How a child is known in an ``Applied`` record: its kind, and the track of a release's own."""
    labels = child["metadata"].get("labels") or {}
    track = labels.get(TRACK_LABEL) or labels.get(ROUTE_LABEL)
    return f"{child['kind']}/{track}" if track else str(child["kind"])


def _owned_by(child: dict[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in child["metadata"].get("ownerReferences") or [])


# Lists keyed by something other than what makes them unique to us: an entry someone adds by
# hand (a Service port under a new number, say) survives server-side apply, so these lists are
# compared after applying and overwritten when they drifted.
EXACT_LISTS = {"Service": (("spec", "ports"), ("name", "port"))}


def _entries(manifest: dict[str, Any], path: tuple[str, ...], keys: tuple[str, ...]) -> list[tuple[Any, ...]]:
    value: Any = manifest
    for key in path:
        value = (value or {}).get(key)
    return sorted(tuple(entry.get(key) for key in keys) for entry in value or [])


def apply_child(kube: Kube, manifest: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply one child, then undo hand-made additions SSA cannot see as drift."""
    exact = EXACT_LISTS.get(manifest["kind"])
    try:
        live = kube.apply(manifest)
    except DynamicApiError as exc:
        if exact is None or exc.status != 422:
            raise
        live = {}  # the hand-made entry makes ours invalid (a duplicate name): overwrite first
    if exact and _entries(live, *exact) != _entries(manifest, *exact):
        kube.replace_field(manifest, exact[0])
        live = kube.apply(manifest)
    return live


@dataclass
class Applied:
    """The children one reconcile applied, reused while nothing has disturbed them.

    Events on the children keep it honest: a Deployment's new status replaces the one kept; a
    change to any child's spec, or a child gone, marks it spent, and the next reconcile applies
    again. The kinds no watch follows are checked by each resync's listing (``Reconciler.audit``).
    """

    digest: str
    children: dict[str, dict[str, Any]]
    intact: bool = True
    rejected: tuple[Rejection, ...] = ()
    # What it was rendered from (``inputs_of``), and the kinds rendered: the same inputs render
    # the same children, so a resync of an undisturbed Microservice renders nothing.
    inputs: str = ""
    rendered: frozenset[str] = frozenset()
    # The revision the spec asks for (``render.revision``) and the inputs it came from: hashing
    # the pod template again on every resync was 40 % of an unchanged Microservice's reconcile.
    revision: tuple[str, str] = ("", "")

    def observe(self, kind: str, body: dict[str, Any], deleted: bool) -> None:
        """A watch event on one of the children."""
        key = child_key({**body, "kind": kind})
        known = self.children.get(key)
        if deleted or known is None:
            self.intact = False
        elif kind == "Deployment" and _same_spec(known, body):
            if not _older(body, known):  # a late event must not bring back an old status
                self.children[key] = body  # only its status moved on
        elif body["metadata"].get("resourceVersion") != known["metadata"].get("resourceVersion"):
            self.intact = False


# What an ``Applied`` record keeps of a child's metadata: who it is, its version, its track.
KEPT_METADATA = ("name", "namespace", "uid", "generation", "resourceVersion", "labels")


def slim(child: dict[str, Any]) -> dict[str, Any]:
    """What is kept of a live child in memory: its identity and version, replicas and status.

    Not its spec, nor its managed fields: kept whole, the four children of one Microservice
    held about 35 kB of Python objects (a Deployment's pod template 18 kB of it), the largest
    share of the operator's memory that grows with Microservices. A reconcile that must apply
    again renders; it never reads a kept spec.
    """
    metadata = child["metadata"]
    kept: dict[str, Any] = {
        "apiVersion": child.get("apiVersion"),
        "kind": child.get("kind"),
        "metadata": {key: metadata[key] for key in KEPT_METADATA if key in metadata},
    }
    spec = child.get("spec") or {}
    if "replicas" in spec:
        kept["spec"] = {"replicas": spec["replicas"]}
    if "status" in child:
        kept["status"] = child["status"]
    return kept


def _older(body: dict[str, Any], known: dict[str, Any]) -> bool:
    """Whether ``body`` is an older version than ``known`` (etcd revisions, when numeric)."""
    new, old = (str(item["metadata"].get("resourceVersion", "")) for item in (body, known))
    return new.isdigit() and old.isdigit() and int(new) < int(old)


def _same_spec(known: dict[str, Any], body: dict[str, Any]) -> bool:
    before, after = known["metadata"], body["metadata"]
    return all(before.get(key) == after.get(key) for key in ("generation", "labels"))


def digest_of(manifests: list[dict[str, Any]]) -> str:
    """A fingerprint of rendered children."""
    return hashlib.sha256(json.dumps(manifests, sort_keys=True).encode()).hexdigest()


def inputs_of(ms: dict[str, Any], context: RenderContext) -> str:
    """A fingerprint of everything ``render`` and ``weighted_route`` read.

    They read the Microservice's name, namespace, uid and spec, and the context; nothing else.
    Hashing these costs a tenth of rendering and hashing the children.
    """
    metadata = ms["metadata"]
    identity = [metadata["namespace"], metadata["name"], metadata["uid"]]
    # ``vars``, not ``asdict``: its recursive copy of the context was two thirds of the cost.
    read = [identity, ms["spec"], vars(context)]
    return hashlib.sha256(json.dumps(read, sort_keys=True, default=str).encode()).hexdigest()


def monitoring_condition(spec: dict[str, Any], crd_installed: bool) -> Condition:
    """Why there is, or is not, a ServiceMonitor."""
    if not spec.get("metrics", {}).get("enabled", True):
        return Condition(MONITORING, False, "Disabled", "spec.metrics.enabled is false.")
    if not crd_installed:
        return Condition(
            MONITORING,
            False,
            "ServiceMonitorCRDMissing",
            f"No ServiceMonitor was created: the {SERVICE_MONITOR_CRD} CRD is not installed.",
        )
    return Condition(MONITORING, True, "ServiceMonitorApplied", "Prometheus scrapes this service.")


def owns_replicas(deployment: dict[str, Any], manager: str = FIELD_MANAGER) -> bool:
    """Whether ``manager`` applied ``spec.replicas`` of a live Deployment (its managed fields say)."""
    for entry in deployment["metadata"].get("managedFields") or []:
        spec = (entry.get("fieldsV1") or {}).get("f:spec") or {}
        if entry.get("manager") == manager and entry.get("operation") == "Apply" and "f:replicas" in spec:
            return True
    return False


def hand_over_replicas(kube: Kube, manifest: dict[str, Any], replicas: int) -> None:
    """Give ``spec.replicas`` a second owner, so that our next apply without it leaves the value.

    The documented server-side apply hand-over to an autoscaler: without it, dropping the field
    from our apply would reset the Deployment to one replica.
    """
    metadata = manifest["metadata"]
    kube.apply(
        {
            "apiVersion": manifest["apiVersion"],
            "kind": manifest["kind"],
            "metadata": {"name": metadata["name"], "namespace": metadata["namespace"]},
            "spec": {"replicas": replicas},
        },
        field_manager=HANDOVER_MANAGER,
    )


def apply_deployment(kube: Kube, manifest: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """Apply the Deployment; with autoscaling, hand replicas over to the HPA first (never back to 1)."""
    autoscaling = spec.get("autoscaling")
    if not autoscaling:
        return apply_child(kube, manifest)
    metadata = manifest["metadata"]
    live = kube.get("Deployment", metadata["namespace"], metadata["name"])
    if live is None:
        first = autoscaling.get("minReplicas", 1)
        created = apply_child(kube, {**manifest, "spec": {**manifest["spec"], "replicas": first}})
        hand_over_replicas(kube, manifest, first)
        return created
    if owns_replicas(live):
        hand_over_replicas(kube, manifest, live["spec"].get("replicas", 1))
    return apply_child(kube, manifest)


# Applied before the rest: the NetworkPolicy, so that no pod ever runs unprotected; the Job,
# whose success lets the Deployment's new template out.
FIRST = ("NetworkPolicy", "Job")
# Client errors that are not the API refusing the object itself: a kind gone with its CRD (the
# caller forgets its discovery), a conflict, throttling. They propagate and are retried.
NOT_REJECTIONS = (404, 409, 429)


@dataclass(frozen=True)
class Rejection:
    """A child the API server refused (a 4xx answer), with its message."""

    kind: str
    error: DynamicApiError

    def __str__(self) -> str:
        try:
            message = json.loads(self.error.body or "")["message"]
        except (TypeError, ValueError, KeyError):
            message = self.error.reason
        return f"the API server rejected the {self.kind}: {message}"


def _rejection(kind: str, error: DynamicApiError) -> Rejection:
    """``error`` as a Rejection, or raised again when it is no verdict on the object."""
    if error.status is None or not 400 <= error.status < 500 or error.status in NOT_REJECTIONS:
        raise error
    return Rejection(kind, error)


def ensure_job(kube: Kube, manifest: dict[str, Any]) -> dict[str, Any]:
    """The migration Job of the current revision, created when absent and otherwise only read.

    A Job's template is immutable and the Job is done, running or failed: fields outside the
    revision (resources, scheduling) changing later need no new Job, and must not be re-applied.
    """
    metadata = manifest["metadata"]
    return kube.get("Job", metadata["namespace"], metadata["name"]) or apply_child(kube, manifest)


def apply_children(
    kube: Kube,
    desired: list[dict[str, Any]],
    spec: dict[str, Any],
    digest: str,
    *,
    hold: bool = False,
    hold_stable: bool = False,
) -> Applied:
    """Apply every child on its own, the NetworkPolicy and Job first; collect the API's rejections.

    The Deployments keep their live template (or wait to be created) while ``hold`` is set, the
    migration Job has not succeeded, or the NetworkPolicy or Job was rejected; the stable one
    also while ``hold_stable`` (a release in progress or rolled back: the tick looks again).
    """
    children: dict[str, dict[str, Any]] = {}
    rejected: list[Rejection] = []
    ordered = sorted(desired, key=lambda m: FIRST.index(m["kind"]) if m["kind"] in FIRST else len(FIRST))
    for manifest in ordered:
        kind, metadata, key = manifest["kind"], manifest["metadata"], child_key(manifest)
        unprotected = any(r.kind == "NetworkPolicy" for r in rejected)
        if kind == "Job" and unprotected:
            continue
        blocked = hold or unprotected or any(r.kind == "Job" for r in rejected)
        if kind == "Deployment" and (blocked or (key == "Deployment" and hold_stable)):
            live = kube.get(kind, metadata["namespace"], metadata["name"])
            if live is not None:
                children[key] = slim(live)
            hold = blocked
            continue
        try:
            if kind == "Job":
                live = ensure_job(kube, manifest)
            elif kind == "Deployment":
                live = apply_deployment(kube, manifest, spec)
            else:
                live = apply_child(kube, manifest)
        except DynamicApiError as exc:
            rejected.append(_rejection(kind, exc))
            continue
        children[key] = slim(live)
        # Before the new pods serve, the migration must have succeeded.
        hold = hold or (kind == "Job" and job_finished(live) != "Complete")
    # Held back or refused, the next reconcile (a Job event or the retry) must look again.
    return Applied(digest, children, intact=not hold and not rejected, rejected=tuple(rejected))


def prune_migrations(kube: Kube, namespace: str, name: str, uid: str, current: str) -> None:
    """Delete the migration Jobs of older revisions (their pods with them)."""
    for job in kube.children("Job", namespace, name):
        job_name = job["metadata"]["name"]
        if job_name != current and _owned_by(job, uid) and kube.delete("Job", namespace, job_name):
            log.info("removed an old migration Job", extra={"job": job_name, "microservice": name})


def prune_kinds(kube: Kube, ms: dict[str, Any], rendered: set[str], uninstalled: set[str]) -> None:
    """Delete the children of kinds the spec no longer asks for (none of kinds whose CRD is missing)."""
    namespace, name, uid = (ms["metadata"][key] for key in ("namespace", "name", "uid"))
    for kind in CHILD_KINDS:
        if kind in rendered or kind in uninstalled:
            continue
        for child in kube.children(kind, namespace, name):
            if _owned_by(child, uid) and kube.delete(kind, namespace, child["metadata"]["name"]):
                log.info("removed child", extra={"kind": kind, "microservice": f"{namespace}/{name}"})


def read_config(kube: Kube, namespace: str, spec: dict[str, Any]) -> tuple[str, ConfigMissing | None]:
    """The config hash, or '' and why there is none yet (required config is missing)."""
    try:
        return kube.config_hash(namespace, config_references(spec)), None
    except ConfigMissing as exc:
        return "", exc


def workload_conditions(
    spec: dict[str, Any], record: Applied, missing: ConfigMissing | None
) -> list[Condition]:
    """Ready, Progressing, Degraded and Migrated, from the children applied and what was refused."""
    applied = record.children
    conditions = rollout_conditions(
        applied.get("Deployment"), None if spec.get("autoscaling") else spec["replicas"]
    )
    if "Job" in applied:
        migrated = migration_condition(applied["Job"])
        conditions = [*with_migration(conditions, migrated), migrated]
    elif missing is not None and spec.get("migrate"):
        conditions.append(Condition(MIGRATED, False, "ConfigMissing", str(missing)))
    if record.rejected:
        rejected = Condition(DEGRADED, True, "ChildRejected", "; ".join(map(str, record.rejected)))
        conditions = [rejected if c.type == DEGRADED else c for c in conditions]
    return conditions


def children_applied(
    kube: Kube,
    ms: dict[str, Any],
    context: RenderContext,
    reusable: Applied | None,
    *,
    hold_stable: bool,
    missing: ConfigMissing | None,
    asked: str = "",
) -> Applied:
    """The children of ``ms`` applied, or ``reusable`` (intact) when it already stands for them.

    The same inputs (``asked``: ``inputs_of(ms, context)`` when the caller has it, and the
    holds) need no render; the same rendering needs no apply.
    """
    metadata, spec = ms["metadata"], ms["spec"]
    inputs = f"{asked or inputs_of(ms, context)}/{hold_stable:d}{missing is not None:d}"
    if reusable is not None and reusable.inputs == inputs:
        return reusable
    desired = [*render(ms, context), *weighted_route(ms, context)]
    rendered = {manifest["kind"] for manifest in desired}
    if missing is not None:
        desired = [manifest for manifest in desired if manifest["kind"] != "Job"]
    digest = digest_of([*desired, {"holdStable": hold_stable}])
    if reusable is not None and reusable.digest == digest:
        record = reusable
    else:
        try:
            record = apply_children(
                kube, desired, spec, digest, hold=missing is not None, hold_stable=hold_stable
            )
        except (ResourceNotFoundError, NotFoundError):
            kube.forget_crds()  # a CRD went away since it was last checked; the retry re-renders
            raise
        if "Job" in record.children:
            job = record.children["Job"]["metadata"]["name"]
            prune_migrations(kube, metadata["namespace"], metadata["name"], metadata["uid"], job)
    record.inputs, record.rendered = inputs, frozenset(rendered)
    return record


def reconcile(
    kube: Kube,
    ms: dict[str, Any],
    post: EventPoster,
    *,
    base: RenderContext | None = None,
    prune: bool = True,
    previous_apply: Applied | None = None,
    prometheus: Prometheus | None = None,
    kit_version: str | None = None,
) -> tuple[dict[str, Any], Applied]:
    """Bring the children of ``ms`` in line with its spec and write its status (when it changed).

    ``base`` brings what the operator knows beyond the resource (callers, namespaces). ``prune``
    looks for children of kinds the spec no longer asks for: needed when the spec changed, not
    when only a child's status did. ``previous_apply``, when still intact, current and of the
    same rendering, stands for applying again. ``prometheus`` judges canary steps (release.py).
    ``kit_version`` is what the pods last reported (kitversions.py); None keeps the status' own.
    """
    metadata, spec = ms["metadata"], ms["spec"]
    namespace, name = metadata["namespace"], metadata["name"]
    config_hash, missing = read_config(kube, namespace, spec)
    if not spec.get("migrate"):
        # Nothing to hold for: the pods wait for their Secret themselves (the kubelet says so,
        # CreateContainerConfigError), and roll once it exists and its hash joins the template.
        missing = None
    installed = {kind: kube.crd_installed(crd) for kind, crd in OPTIONAL_KINDS.items()}
    context = replace(
        base or RenderContext(),
        config_hash=config_hash,
        service_monitor_crd=installed["ServiceMonitor"],
        servers_transport_crd=installed["ServersTransport"],
        traefik_routes_crd=installed["TraefikService"] and installed["IngressRoute"],
    )
    asked = inputs_of(ms, context)
    known = previous_apply.revision if previous_apply is not None else ("", "")
    desired = known[1] if known[0] == asked else revision(ms, context)
    release = decide(kube, prometheus, ms, context, time.time(), desired)
    rendered_from = asked if release.context == context else ""  # else a release's candidate, weights
    context = release.context
    hold_stable = not release.plan.stable_takes_desired
    intact = previous_apply if previous_apply is not None and previous_apply.intact else None
    record = children_applied(
        kube, ms, context, intact, hold_stable=hold_stable, missing=missing, asked=rendered_from
    )
    record.revision = (asked, desired)
    rendered = set(record.rendered)
    applied = record.children
    if release.plan.remove_release:
        remove_release(kube, ms, context.traefik_routes_crd)
        record.intact = False  # what it removed is no longer ours to reuse
    if prune:
        prune_kinds(kube, ms, rendered, {kind for kind, present in installed.items() if not present})
    dependencies = {
        dependency: kube.microservice(namespace, dependency) for dependency in spec.get("dependsOn", [])
    }
    conditions = [
        *with_stalled(release_conditions(workload_conditions(spec, record, missing), release)),
        dependencies_condition(ms, dependencies),
        monitoring_condition(spec, installed["ServiceMonitor"]),
    ]
    previous = (ms.get("status") or {}).get("conditions")
    stamped = stamp(conditions, previous, metadata["generation"])
    status: dict[str, Any] = {
        **workload_status(ms, context, applied.get("Deployment")),
        "conditions": stamped,
        "rollout": release_status(release),
    }
    kit = kit_version or (ms.get("status") or {}).get("kitVersion")
    if kit:
        status["kitVersion"] = kit
    if status != ms.get("status"):
        kube.patch_status(namespace, name, status)
    MICROSERVICES.set(
        namespace,
        name,
        metadata["uid"],
        scrape_targets=scrape_targets(spec, record),
        ready=any(c["type"] == READY and c["status"] == "True" for c in stamped),
        phase=release.plan.state.phase,
    )
    post_transitions(ms, post, previous, stamped)
    for event in release.plan.events:
        post(ms, event.type, event.reason, event.message)
    count_release(release.plan)
    # Status is written; now the retry (kopf's, with its error mapping, and the resync).
    if missing is not None:
        raise missing
    if record.rejected:
        raise record.rejected[0].error
    return status, record


def scrape_targets(spec: dict[str, Any], record: Applied) -> int:
    """The pods the ServiceMonitor should find: desired replicas, the candidate's too; 0 without one.

    Under autoscaling the stable's desired count is its Deployment's (the HPA sets it through
    the scale subresource); until that Deployment exists, ``minReplicas``.
    """
    if "ServiceMonitor" not in record.rendered:  # metrics off, or no ServiceMonitor CRD
        return 0
    stable = ((record.children.get("Deployment") or {}).get("spec") or {}).get("replicas")
    autoscaling = spec.get("autoscaling")
    if not autoscaling:
        stable = spec["replicas"]
    elif stable is None:
        stable = autoscaling.get("minReplicas", 1)
    candidate = ((record.children.get(f"Deployment/{CANARY_TRACK}") or {}).get("spec") or {}).get("replicas")
    return int(stable) + int(candidate or 0)


def workload_status(
    ms: dict[str, Any], context: RenderContext, deployment: dict[str, Any] | None
) -> dict[str, Any]:
    """The status besides conditions and the release: replicas, the selector, the URLs."""
    metadata, spec = ms["metadata"], ms["spec"]
    wanted = None if spec.get("autoscaling") else spec["replicas"]
    deployment_status = (deployment or {}).get("status") or {}
    ready = deployment_status.get("readyReplicas", 0) or 0
    replicas = deployment_status.get("replicas", 0) or 0
    status: dict[str, Any] = {
        "observedGeneration": metadata["generation"],
        "replicas": replicas,
        "readyReplicas": ready,
        "replicasSummary": f"{ready}/{wanted if wanted is not None else replicas}",
        "selector": ",".join(f"{k}={v}" for k, v in selector_labels(metadata["name"]).items()),
        "url": service_url(metadata["name"], metadata["namespace"], context.cluster_domain, scheme(spec)),
    }
    public = external_url(spec)
    if public:
        status["externalURL"] = public
    return status


def release_conditions(conditions: list[Condition], release: Release) -> list[Condition]:
    """The workload's conditions with what the release says (status.py ``with_release``)."""
    state = release.plan.state
    analysis = release.analysis if release.policy.canary else None
    return with_release(conditions, state.phase, state.reason, state.message, analysis)


def post_transitions(
    ms: dict[str, Any],
    post: EventPoster,
    previous: list[dict[str, Any]] | None,
    stamped: list[dict[str, Any]],
) -> None:
    """One Event per condition change worth one."""
    for condition in transitions(previous, stamped):
        if worth_an_event(condition):
            kind = "Normal" if condition["status"] == "True" and condition["type"] != DEGRADED else "Warning"
            post(
                ms,
                kind,
                condition["reason"],
                f"{condition['type']}={condition['status']}: {condition['message']}",
            )


def worth_an_event(condition: dict[str, Any]) -> bool:
    """Ready flips, Degraded turning True, a migration finishing either way."""
    kind, status = str(condition["type"]), str(condition["status"])
    if kind == READY:
        return True
    if kind == DEGRADED:
        return status == "True"
    return kind == MIGRATED and str(condition["reason"]) in ("Succeeded", "Failed")


@dataclass
class Dependents:
    """Who depends on whom: the ``dependsOn`` of every Microservice watched, by namespace.

    Fed by the Microservice events and rebuilt from every resync's listing (an event missed in
    a watch gap is not missed for long); read by reconciles in kopf's handler threads and in the
    resync thread. A kopf index would reach only handlers (as an argument), and kopf changes it
    on its event loop without a lock; this map is safe across threads.
    """

    _guard: threading.Lock = field(default_factory=threading.Lock)
    _depends: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    # Which update touched each entry last (a counter): a rebuild keeps what events changed
    # after its listing began.
    _updates: int = 0
    _touched: dict[tuple[str, str], int] = field(default_factory=dict)

    def update(self, namespace: str, name: str, depends_on: list[str] | None) -> set[str]:
        """Record what ``name`` depends on (None: it is gone); return the services it joined or left."""
        after = frozenset(depends_on or ())
        with self._guard:
            self._updates += 1
            self._touched[(namespace, name)] = self._updates
            before = self._depends.pop((namespace, name), frozenset())
            if after:
                self._depends[(namespace, name)] = after
        return set(before ^ after)

    def mark(self) -> int:
        """Where the updates are now: take it before listing, pass it to ``rebuild``."""
        with self._guard:
            return self._updates

    def rebuild(self, listing: list[dict[str, Any]], mark: int) -> set[tuple[str, str]]:
        """Replace the map with ``listing`` in one step; return the (namespace, name) whose callers changed.

        Entries updated by events after ``mark`` are newer than the listing and are kept.
        """
        listed: dict[tuple[str, str], frozenset[str]] = {}
        for ms in listing:
            metadata = ms["metadata"]
            depends_on = frozenset((ms.get("spec") or {}).get("dependsOn") or ())
            if depends_on and not metadata.get("deletionTimestamp"):
                listed[(metadata["namespace"], metadata["name"])] = depends_on
        with self._guard:
            newer = {key: seen for key, seen in self._touched.items() if seen > mark}
            for key in newer:
                listed.pop(key, None)
                if key in self._depends:
                    listed[key] = self._depends[key]
            before, self._depends, self._touched = self._depends, listed, newer
        empty: frozenset[str] = frozenset()
        return {
            (key[0], callee)
            for key in before.keys() | listed.keys()
            for callee in before.get(key, empty) ^ listed.get(key, empty)
        }

    def callers(self, namespace: str, name: str) -> tuple[str, ...]:
        """The Microservices of ``namespace`` that list ``name`` in their ``dependsOn``."""
        with self._guard:
            return tuple(
                sorted(
                    caller
                    for (space, caller), deps in self._depends.items()
                    if space == namespace and name in deps
                )
            )


@dataclass
class Reconciler:
    """Runs reconciliations one at a time per Microservice; a request during a run reruns it."""

    kube: Kube
    post: EventPoster
    _guard: threading.Lock = field(default_factory=threading.Lock)
    _running: set[tuple[str, str]] = field(default_factory=set)
    _dirty: set[tuple[str, str]] = field(default_factory=set)
    _children: dict[tuple[str, str], int] = field(default_factory=dict)
    _children_total: int = 0  # the sum of ``_children``, kept as it changes
    _pruned_at: dict[tuple[str, str], int] = field(default_factory=dict)
    _applied: dict[tuple[str, str], Applied] = field(default_factory=dict)
    _disturbed: set[tuple[str, str]] = field(default_factory=set)
    dependents: Dependents = field(default_factory=Dependents)
    base: RenderContext = field(default_factory=RenderContext)
    prometheus: Prometheus | None = None
    kit_versions: KitVersions | None = None
    # Microservices with a release in progress: ``tick`` looks at them again.
    _releasing: set[tuple[str, str]] = field(default_factory=set)

    def tick(self) -> None:
        """Reconcile every release in progress (its steps run on time, not on events)."""
        with self._guard:
            due = sorted(self._releasing)
        for namespace, name in due:
            try:
                self.request(namespace, name)
            except Exception:
                log.exception("a release's tick failed", extra={"microservice": f"{namespace}/{name}"})

    def observe_child(
        self, namespace: str, owner: str, kind: str, body: dict[str, Any], deleted: bool
    ) -> None:
        """A watch event on a child of ``owner``: keeps its last apply honest."""
        with self._guard:
            if (namespace, owner) in self._running:
                self._disturbed.add((namespace, owner))  # the run in progress may miss it
            record = self._applied.get((namespace, owner))
            if record is not None:
                record.observe(kind, body, deleted)

    def audit(self, kind: str, listed: list[dict[str, Any]]) -> None:
        """Spend the records whose child of ``kind`` changed or is gone, from a listing of all.

        For the kinds not watched: the next reconcile of a spent record applies again. A child
        applied while the listing was under way looks changed: one apply more, no harm.
        """
        live: dict[tuple[str, str, str], tuple[Any, Any, Any]] = {}
        for child in listed:
            owner = owner_of(child)
            if owner is not None:
                key = child_key({**child, "kind": kind})
                live[(child["metadata"].get("namespace"), owner, key)] = _identity(child)
        with self._guard:
            for (namespace, owner), record in self._applied.items():
                for key, child in record.children.items():
                    if child.get("kind") != kind:
                        continue
                    if live.get((namespace, owner, key)) != _identity(child):
                        record.intact = False
                        if (namespace, owner) in self._running:
                            self._disturbed.add((namespace, owner))

    def request(self, namespace: str, name: str, ms: dict[str, Any] | None = None) -> None:
        """Reconcile ``namespace/name`` now, or right after the run in progress.

        ``ms`` is the Microservice as an event just delivered it (saves reading it); reruns read.
        """
        key = (namespace, name)
        with self._guard:
            if key in self._running:
                self._dirty.add(key)
                return
            self._running.add(key)
        try:
            while True:
                self._once(namespace, name, ms)
                ms = None
                with self._guard:
                    if key not in self._dirty:
                        self._running.discard(key)
                        return
                    self._dirty.discard(key)
        except BaseException:
            with self._guard:
                self._running.discard(key)
                self._dirty.discard(key)
            raise

    def _once(self, namespace: str, name: str, delivered: dict[str, Any] | None) -> None:
        ms = delivered if delivered is not None else self.kube.microservice(namespace, name)
        if ms is None or ms["metadata"].get("deletionTimestamp"):
            MICROSERVICES.remove(namespace, name, None if ms is None else ms["metadata"].get("uid"))
            with self._guard:
                self._children_total -= self._children.pop((namespace, name), 0)
                self._pruned_at.pop((namespace, name), None)
                self._applied.pop((namespace, name), None)
                self._releasing.discard((namespace, name))
            return  # the garbage collector removes the children
        started = time.perf_counter()
        key, generation = (namespace, name), ms["metadata"]["generation"]
        with self._guard:
            # A spec never changed (generation 1) never asked for other kinds of children.
            prune = generation > 1 and self._pruned_at.get(key) != generation
            previous_apply = self._applied.get(key)
            self._disturbed.discard(key)
        try:
            status, record = reconcile(
                self.kube,
                ms,
                self.post,
                base=replace(self.base, callers=self.dependents.callers(namespace, name)),
                prune=prune,
                previous_apply=previous_apply,
                prometheus=self.prometheus,
                kit_version=self.kit_versions.version(key) if self.kit_versions is not None else None,
            )
        except Exception:
            RECONCILES.labels("error").inc()
            raise
        finally:
            RECONCILE_DURATION.observe(time.perf_counter() - started)
        RECONCILES.labels("success").inc()
        rollout = status.get("rollout") or {}
        with self._guard:
            if rollout.get("phase") in ACTIVE_PHASES or rollout.get("draining"):
                self._releasing.add(key)
            else:
                self._releasing.discard(key)
            self._pruned_at[key] = generation
            if key in self._disturbed:
                record.intact = False  # a child changed while this run read it
            self._applied[key] = record
            self._children_total += len(record.children) - self._children.get(key, 0)
            self._children[key] = len(record.children)
            total = self._children_total
        MANAGED_RESOURCES.labels("Microservice").set(len(self._children))
        MANAGED_RESOURCES.labels("children").set(total)
        log.debug(
            "reconciled", extra={"microservice": f"{namespace}/{name}", "ready": status["readyReplicas"]}
        )


def _identity(child: dict[str, Any]) -> tuple[Any, Any, Any]:
    """A child's uid, generation and labels: another object, or the same one edited, differs.

    Not its resourceVersion: a status written by its controller (Prometheus operator's on a
    ServiceMonitor) is no drift, and would re-apply every child on every resync.
    """
    metadata = child["metadata"]
    return metadata.get("uid"), metadata.get("generation"), metadata.get("labels")


def owner_of(child: dict[str, Any]) -> str | None:
    """The name of the Microservice owning a child, if any."""
    for reference in child["metadata"].get("ownerReferences") or []:
        if reference.get("kind") == KIND and reference.get("controller"):
            return str(reference["name"])
    return None
