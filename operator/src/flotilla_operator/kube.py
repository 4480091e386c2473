"""The operator's only contact with the API server: a thin layer over the dynamic client."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

# Not the generated CoreV1Api: importing it costs 21 MB of the operator's memory, for reading
# ConfigMaps and Secrets and posting Events, which the dynamic client does as well.
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import DynamicApiError, NotFoundError, ResourceNotFoundError

from flotilla_operator import FIELD_MANAGER, GROUP, KIND, MANAGED_BY, VERSION
from flotilla_operator.render import ConfigRef, config_digest, migration_instance

Manifest = dict[str, Any]
# Every kind of child the operator writes, by apiVersion.
CHILD_KINDS = {
    "Deployment": "apps/v1",
    "Service": "v1",
    "Ingress": "networking.k8s.io/v1",
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "HorizontalPodAutoscaler": "autoscaling/v2",
    "PodDisruptionBudget": "policy/v1",
    "NetworkPolicy": "networking.k8s.io/v1",
    "Job": "batch/v1",
    "ServersTransport": "traefik.io/v1alpha1",
    "TraefikService": "traefik.io/v1alpha1",
    "IngressRoute": "traefik.io/v1alpha1",
}
SERVICE_MONITOR_CRD = "servicemonitors.monitoring.coreos.com"
SERVERS_TRANSPORT_CRD = "serverstransports.traefik.io"
# Children of kinds a cluster may lack: each is rendered only while its CRD is installed.
OPTIONAL_KINDS = {
    "ServiceMonitor": SERVICE_MONITOR_CRD,
    "ServersTransport": SERVERS_TRANSPORT_CRD,
    "TraefikService": "traefikservices.traefik.io",
    "IngressRoute": "ingressroutes.traefik.io",
}
# The children whose watch events the operator follows. The optional kinds are listed by each
# resync instead (``Kube.managed``, ``Reconciler.audit``): one request, where a watch of the
# ServiceMonitors cost 25 MB more per 1,000 Microservices (kopf's per-object state), and a
# re-apply of each every 10 minutes cost 2,000 applies per period at 2,000.
WATCHED_KINDS = tuple(kind for kind in CHILD_KINDS if kind not in OPTIONAL_KINDS)
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
CRD_CACHE_SECONDS = 30.0
REPORTING_INSTANCE = socket.gethostname()[:128]
log = logging.getLogger("flotilla.operator")


class OrjsonDynamicClient(DynamicClient):
    """The dynamic client, parsing JSON responses with orjson where ``_as_dict`` is the serializer.

    The standard library's parser was 31 % of the idle operator's CPU at 2,000 Microservices
    (py-spy), nearly all of it the resync's listing; orjson parses the same in a fraction.
    """

    def request(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        if params.get("serializer") is not _as_dict or not params.get("serialize", True):
            return super().request(method, path, body, **params)
        params.pop("serializer")
        response = super().request(method, path, body, serialize=False, **params)
        try:
            parsed = orjson.loads(response.data)
        except orjson.JSONDecodeError:
            return response.data.decode("utf8")  # as the dynamic client answers a body that is not JSON
        return _as_dict(self, parsed)


def _as_dict(_: Any, data: Manifest) -> Manifest:
    """A response as parsed JSON: the dynamic client's ``serializer``, in place of its ResourceInstance.

    That wraps every field in a ResourceField, which ``to_dict`` then unwraps: 0.4 ms more per
    Deployment, 6% of the operator's CPU while it converged 1,000 Microservices (py-spy).
    Items of a list get their apiVersion and kind, as ResourceInstance gives them.
    """
    kind = str(data.get("kind", ""))
    if kind.endswith("List") and "items" in data:
        data["items"] = data["items"] or []
        for item in data["items"]:
            item.setdefault("apiVersion", data.get("apiVersion"))
            item.setdefault("kind", kind[: -len("List")])
    return data


def _always() -> None:
    """Writes need no permission (one operator, no election)."""


def _nowhere(kind: str, body: Manifest) -> None:
    """Nobody follows what was written."""


class Kube:
    """Server-side apply, deletes and reads, with the one field manager of the operator.

    ``fence`` runs before every write and raises to refuse it (a replica that no longer leads);
    ``wrote`` hears of every object written, with its new resourceVersion (what the watches owe).
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        crd_cache_seconds: float = CRD_CACHE_SECONDS,
        fence: Callable[[], None] = _always,
        wrote: Callable[[str, Manifest], None] = _nowhere,
    ) -> None:
        self.api_client = api_client
        self.fence = fence
        self.wrote = wrote
        self.crd_cache_seconds = crd_cache_seconds
        self.dynamic = OrjsonDynamicClient(api_client)  # type: ignore[no-untyped-call]
        self._crd_lock = threading.Lock()
        self._crd_checked: dict[str, tuple[float, bool]] = {}
        self._classes: tuple[float, list[Manifest] | None] = (0.0, None)
        # The client's discovery cache is not thread-safe: an invalidation (which empties it and
        # reloads) while another handler thread fills it in raised KeyError('apis') there, and
        # kopf parks a handler failing that way for a minute.
        self._discovery_lock = threading.RLock()

    def forget_crds(self) -> None:
        """Ask the API server again next time (a CRD came or went)."""
        with self._crd_lock:
            self._crd_checked.clear()
        self._forget_discovery()

    def _forget_discovery(self) -> None:
        with self._discovery_lock:
            self.dynamic.resources.invalidate_cache()

    def _resource(self, api_version: str, kind: str) -> Any:
        with self._discovery_lock:
            return self.dynamic.resources.get(api_version=api_version, kind=kind)

    def apply(self, manifest: Manifest, field_manager: str = FIELD_MANAGER) -> Manifest:
        """Server-side apply ``manifest``, taking over fields edited by hand (force)."""
        resource = self._resource(manifest["apiVersion"], manifest["kind"])
        self.fence()
        applied = resource.server_side_apply(
            body=manifest,
            name=manifest["metadata"]["name"],
            namespace=manifest["metadata"]["namespace"],
            field_manager=field_manager,
            force_conflicts=True,
            serializer=_as_dict,
        )
        result: Manifest = applied
        self.wrote(manifest["kind"], result)
        return result

    def replace_field(self, manifest: Manifest, path: tuple[str, ...]) -> None:
        """Overwrite one field wholesale (JSON patch), dropping entries other managers added."""
        value: Any = manifest
        for key in path:
            value = value[key]
        resource = self._resource(manifest["apiVersion"], manifest["kind"])
        self.fence()
        patched = resource.patch(
            body=[{"op": "replace", "path": "/" + "/".join(path), "value": value}],
            name=manifest["metadata"]["name"],
            namespace=manifest["metadata"]["namespace"],
            content_type="application/json-patch+json",
            serializer=_as_dict,
        )
        self.wrote(manifest["kind"], patched)

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        """Delete a child and, in the background, what it made (a Job's pods); False when it was gone."""
        resource = self._resource(CHILD_KINDS[kind], kind)
        self.fence()
        try:
            resource.delete(name=name, namespace=namespace, propagation_policy="Background")
        except NotFoundError:
            return False
        return True

    def pods(self, namespace: str, selector: dict[str, str]) -> list[Manifest]:
        """The pods matching ``selector`` (a release's candidate: its restarts and waiting reasons)."""
        label_selector = ",".join(f"{key}={value}" for key, value in sorted(selector.items()))
        listed = self._resource("v1", "Pod").get(
            namespace=namespace, label_selector=label_selector, serializer=_as_dict
        )
        items: list[Manifest] = listed["items"]
        return items

    def ingress_controller(self, class_name: str | None) -> str | None:
        """The controller of an IngressClass (unnamed: the default class), cached like the CRDs."""
        with self._crd_lock:
            checked_at, classes = self._classes
            if time.monotonic() - checked_at >= self.crd_cache_seconds or classes is None:
                try:
                    resource = self._resource("networking.k8s.io/v1", "IngressClass")
                    classes = resource.get(serializer=_as_dict)["items"]
                except DynamicApiError as exc:
                    if exc.status != 403:
                        raise
                    # Not granted (a hand-made Role): no class is known, traffic follows the replicas.
                    log.warning("the operator may not list IngressClasses: ingress traffic is not weighted")
                    classes = []
                self._classes = (time.monotonic(), classes)
        for item in classes:
            metadata = item.get("metadata") or {}
            default = (metadata.get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"
            if metadata.get("name") == class_name or (class_name is None and default):
                return str((item.get("spec") or {}).get("controller") or "") or None
        return None

    def remove_annotation(self, namespace: str, name: str, key: str) -> None:
        """Drop one annotation of a Microservice (a command acted on)."""
        resource = self._microservices()
        self.fence()
        patched = resource.patch(
            body={"metadata": {"annotations": {key: None}}},
            name=name,
            namespace=namespace,
            content_type="application/merge-patch+json",
            serializer=_as_dict,
        )
        self.wrote(KIND, patched)

    def children(self, kind: str, namespace: str, owner: str) -> list[Manifest]:
        """The children of ``kind`` this operator manages for Microservice ``owner``."""
        try:
            resource = self._resource(CHILD_KINDS[kind], kind)
        except ResourceNotFoundError:
            return []  # e.g. no ServiceMonitor CRD (OPTIONAL_KINDS): there can be no such children
        instance = migration_instance(owner) if kind == "Job" else owner
        selector = f"app.kubernetes.io/managed-by={MANAGED_BY},app.kubernetes.io/instance={instance}"
        try:
            listed = resource.get(namespace=namespace, label_selector=selector, serializer=_as_dict)
        except NotFoundError:
            self.forget_crds()  # the kind went away with its CRD; discovery was stale
            return []
        items: list[Manifest] = listed["items"]
        return items

    def managed(self, kind: str, namespace: str | None) -> list[Manifest] | None:
        """Every ``kind`` the operator manages (one namespace, or all); None without its CRD."""
        if kind in OPTIONAL_KINDS and not self.crd_installed(OPTIONAL_KINDS[kind]):
            return None
        try:
            resource = self._resource(CHILD_KINDS[kind], kind)
            listed = resource.get(
                namespace=namespace,
                label_selector=f"app.kubernetes.io/managed-by={MANAGED_BY}",
                serializer=_as_dict,
            )
        except (ResourceNotFoundError, NotFoundError):
            self.forget_crds()  # the CRD went away since it was last checked
            return None
        items: list[Manifest] = listed["items"]
        return items

    def get(self, kind: str, namespace: str, name: str) -> Manifest | None:
        """One child, or None."""
        try:
            resource = self._resource(CHILD_KINDS[kind], kind)
            found: Manifest = resource.get(name=name, namespace=namespace, serializer=_as_dict)
        except NotFoundError:
            return None
        return found

    def crd_installed(self, name: str) -> bool:
        """Whether a CRD exists (cached briefly: it is asked on every reconcile)."""
        with self._crd_lock:
            checked_at, previously = self._crd_checked.get(name, (0.0, None))
            if time.monotonic() - checked_at < self.crd_cache_seconds and previously is not None:
                return previously
            try:
                client.ApiextensionsV1Api(self.api_client).read_custom_resource_definition(name)
                installed = True
            except ApiException as exc:
                if exc.status != 404:
                    raise
                installed = False
            if installed and previously is False:
                self._forget_discovery()  # discovery must learn the new kind
            self._crd_checked[name] = (time.monotonic(), installed)
            return installed

    def post_event(self, ms: Manifest, kind: str, reason: str, message: str) -> None:
        """One core/v1 Event about a Microservice.

        Written here rather than with ``kopf.event``: kopf's poster lives in context variables
        of its handler threads, and reconciles also run in the resync thread.
        """
        metadata = ms["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{metadata['name']}.", "namespace": metadata["namespace"]},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": metadata["name"],
                "namespace": metadata["namespace"],
                "uid": metadata.get("uid"),
                "resourceVersion": metadata.get("resourceVersion"),
            },
            "type": kind,
            "reason": reason,
            "message": message[:1024],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER,
            "reportingInstance": REPORTING_INSTANCE,
        }
        resource = self._resource("v1", "Event")
        self.fence()
        resource.create(body=event, namespace=metadata["namespace"])

    # --- Microservices ---------------------------------------------------------------------

    def all_microservices(self, namespace: str | None) -> list[Manifest]:
        """Every Microservice the operator watches (one namespace, or all)."""
        listed = self._microservices().get(namespace=namespace, serializer=_as_dict)
        items: list[Manifest] = listed["items"]
        return items

    def microservice(self, namespace: str, name: str) -> Manifest | None:
        """One Microservice, or None.

        Through the dynamic client: the generated CustomObjectsApi validates every call's
        arguments with pydantic, 11% of the operator's CPU in this one read (py-spy).
        """
        try:
            found: Manifest = self._microservices().get(name=name, namespace=namespace, serializer=_as_dict)
        except NotFoundError:
            return None
        return found

    def _microservices(self) -> Any:
        try:
            return self._resource(f"{GROUP}/{VERSION}", KIND)
        except ResourceNotFoundError:
            self._forget_discovery()  # discovery older than the CRD: ask again, once
            return self._resource(f"{GROUP}/{VERSION}", KIND)

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Replace the status fields the operator owns (status subresource)."""
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": {"name": name, "namespace": namespace},
            "status": status,
        }
        resource = self._microservices().status
        self.fence()
        patched = resource.server_side_apply(
            body=body,
            name=name,
            namespace=namespace,
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
            serializer=_as_dict,
        )
        self.wrote(KIND, patched)

    def config_hash(self, namespace: str, refs: list[ConfigRef]) -> str:
        """The digest of what ``refs`` read (``render.config_digest``); raises ``ConfigMissing``."""
        found: dict[tuple[str, str], dict[str, str] | None] = {}
        for kind, name in sorted({(ref.kind, ref.name) for ref in refs}):
            try:
                obj = self._resource("v1", kind).get(name=name, namespace=namespace, serializer=_as_dict)
            except NotFoundError:
                found[(kind, name)] = None
            else:
                found[(kind, name)] = {**(obj.get("data") or {}), **(obj.get("binaryData") or {})}
        return config_digest(refs, found)
