"""Microservices as the operator reports them: listed, read, reconciled, Ready."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, cast

from kubernetes import client
from kubernetes.client import ApiClient

from tests.support.operator import GROUP, PLURAL, VERSION, OperatorProcess


class StartOperator(Protocol):
    """The ``start_operator`` fixture: an operator process, stopped after the test."""

    def __call__(
        self, settings: dict[str, str], lease: str | None = None, kubeconfig: Path | None = None
    ) -> OperatorProcess: ...


def microservices(kube: ApiClient, namespace: str) -> list[dict[str, Any]]:
    listed = client.CustomObjectsApi(kube).list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    return cast(list[dict[str, Any]], cast(dict[str, Any], listed)["items"])


def as_json(kube: ApiClient, model: Any) -> Any:
    """A typed object of the client as the API's own JSON (camelCase dicts)."""
    return kube.sanitize_for_serialization(model)  # type: ignore[no-untyped-call]


def plain(kube: ApiClient, listing: Any) -> list[dict[str, Any]]:
    """The items of a typed list, as JSON."""
    return cast(list[dict[str, Any]], as_json(kube, listing)["items"])


def read(kube: ApiClient, namespace: str, name: str) -> dict[str, Any]:
    found = client.CustomObjectsApi(kube).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    return cast(dict[str, Any], found)


def reconciled(ms: dict[str, Any]) -> bool:
    """The operator has written the status of the current generation (whatever the rollout says)."""
    status = ms.get("status") or {}
    return bool(status.get("conditions")) and status.get("observedGeneration") == ms["metadata"]["generation"]


def ready(ms: dict[str, Any]) -> bool:
    """Ready=True for the current generation, as the operator reports it."""
    conditions = (ms.get("status") or {}).get("conditions") or []
    return reconciled(ms) and any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def deployment_image(kube: ApiClient, namespace: str, name: str) -> str:
    """The image of the first container of Deployment ``name``."""
    deployment = as_json(kube, client.AppsV1Api(kube).read_namespaced_deployment(name, namespace))
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])
