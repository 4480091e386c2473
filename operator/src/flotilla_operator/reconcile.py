"""One reconciliation: apply the rendered children, prune the rest, report status."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes.dynamic.exceptions import DynamicApiError, NotFoundError, ResourceNotFoundError

from flotilla_operator import KIND
from flotilla_operator.kube import CHILD_KINDS, SERVICE_MONITOR_CRD, Kube
from flotilla_operator.metrics import MANAGED_RESOURCES, RECONCILE_DURATION, RECONCILES
from flotilla_operator.render import (
    RenderContext,
    config_references,
    external_url,
    render,
    selector_labels,
    service_url,
)
from flotilla_operator.status import (
    MONITORING,
    READY,
    Condition,
    dependencies_condition,
    rollout_conditions,
    stamp,
    transitions,
)

log = logging.getLogger("flotilla.operator")
EventPoster = Callable[[dict[str, Any], str, str, str], None]
"""post(microservice, type, reason, message): one Kubernetes Event."""


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


def reconcile(kube: Kube, ms: dict[str, Any], post: EventPoster) -> dict[str, Any]:
    """Bring the children of ``ms`` in line with its spec and write its status."""
    metadata, spec = ms["metadata"], ms["spec"]
    namespace, name, uid = metadata["namespace"], metadata["name"], metadata["uid"]
    config_maps, secrets = config_references(spec)
    crd_installed = kube.crd_installed(SERVICE_MONITOR_CRD)
    context = RenderContext(
        config_hash=kube.config_hash(namespace, config_maps, secrets), service_monitor_crd=crd_installed
    )
    desired = render(ms, context)
    try:
        applied = {manifest["kind"]: apply_child(kube, manifest) for manifest in desired}
    except (ResourceNotFoundError, NotFoundError):
        kube.forget_crds()  # a CRD went away since it was last checked; the retry re-renders
        raise
    for kind in CHILD_KINDS:
        if kind in applied or (kind == "ServiceMonitor" and not crd_installed):
            continue
        for child in kube.children(kind, namespace, name):
            if _owned_by(child, uid) and kube.delete(kind, namespace, child["metadata"]["name"]):
                log.info("removed child", extra={"kind": kind, "microservice": f"{namespace}/{name}"})
    dependencies = {
        dependency: kube.microservice(namespace, dependency) for dependency in spec.get("dependsOn", [])
    }
    deployment = applied["Deployment"]
    wanted = None if spec.get("autoscaling") else spec["replicas"]
    conditions = [
        *rollout_conditions(deployment, wanted),
        dependencies_condition(dependencies),
        monitoring_condition(spec, crd_installed),
    ]
    previous = (ms.get("status") or {}).get("conditions")
    stamped = stamp(conditions, previous, metadata["generation"])
    deployment_status = deployment.get("status") or {}
    ready = deployment_status.get("readyReplicas", 0) or 0
    replicas = deployment_status.get("replicas", 0) or 0
    status: dict[str, Any] = {
        "observedGeneration": metadata["generation"],
        "replicas": replicas,
        "readyReplicas": ready,
        "replicasSummary": f"{ready}/{wanted if wanted is not None else replicas}",
        "selector": ",".join(f"{k}={v}" for k, v in selector_labels(name).items()),
        "url": service_url(name, namespace),
        "conditions": stamped,
    }
    public = external_url(spec)
    if public:
        status["externalURL"] = public
    kube.patch_status(namespace, name, status)
    for condition in transitions(previous, stamped):
        if condition["type"] == READY or (condition["status"] == "True" and condition["type"] == "Degraded"):
            kind = "Normal" if condition["type"] == READY and condition["status"] == "True" else "Warning"
            post(
                ms,
                kind,
                condition["reason"],
                f"{condition['type']}={condition['status']}: {condition['message']}",
            )
    return status


@dataclass
class Reconciler:
    """Runs reconciliations one at a time per Microservice; a request during a run reruns it."""

    kube: Kube
    post: EventPoster
    _guard: threading.Lock = field(default_factory=threading.Lock)
    _running: set[tuple[str, str]] = field(default_factory=set)
    _dirty: set[tuple[str, str]] = field(default_factory=set)
    _children: dict[tuple[str, str], int] = field(default_factory=dict)

    def request(self, namespace: str, name: str) -> None:
        """Reconcile ``namespace/name`` now, or right after the run in progress."""
        key = (namespace, name)
        with self._guard:
            if key in self._running:
                self._dirty.add(key)
                return
            self._running.add(key)
        try:
            while True:
                self._once(namespace, name)
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

    def _once(self, namespace: str, name: str) -> None:
        ms = self.kube.microservice(namespace, name)
        if ms is None or ms["metadata"].get("deletionTimestamp"):
            with self._guard:
                self._children.pop((namespace, name), None)
            return  # the garbage collector removes the children
        started = time.perf_counter()
        try:
            status = reconcile(self.kube, ms, self.post)
        except Exception:
            RECONCILES.labels("error").inc()
            raise
        finally:
            RECONCILE_DURATION.observe(time.perf_counter() - started)
        RECONCILES.labels("success").inc()
        with self._guard:
            self._children[(namespace, name)] = 2 + sum(
                1 for key in ("ingress", "autoscaling", "disruptionBudget") if ms["spec"].get(key)
            )
            total = sum(self._children.values())
        MANAGED_RESOURCES.labels("Microservice").set(len(self._children))
        MANAGED_RESOURCES.labels("children").set(total)
        log.debug(
            "reconciled", extra={"microservice": f"{namespace}/{name}", "ready": status["readyReplicas"]}
        )


def owner_of(child: dict[str, Any]) -> str | None:
    """The name of the Microservice owning a child, if any."""
    for reference in child["metadata"].get("ownerReferences") or []:
        if reference.get("kind") == KIND and reference.get("controller"):
            return str(reference["name"])
    return None
