"""The Microservice CRD: shipped in this package, applied by ``install-crd`` and at start-up.

The operator applies its own CRD when it starts (server-side apply, forced), so upgrading the
operator upgrades the CRD; Helm installs it only once from ``crds/`` and never upgrades it.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Any

import yaml
from kubernetes import client

from flotilla_operator import FIELD_MANAGER

CRD_RESOURCE = "manifests/crd.yaml"
CRD_NAME = "microservices.flotilla.dev"


def crd_manifest() -> dict[str, Any]:
    """The Microservice CRD as shipped in this package."""
    text = resources.files("flotilla_operator").joinpath(CRD_RESOURCE).read_text()
    manifest: dict[str, Any] = yaml.safe_load(text)
    return manifest


def _established(crd: client.V1CustomResourceDefinition) -> bool:
    conditions = (crd.status.conditions if crd.status else None) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


def apply_crd(api: client.ApiClient, timeout: float = 60) -> None:
    """Server-side apply the CRD (forced: over Helm's or an older operator's) and wait until it is served."""
    extensions = client.ApiextensionsV1Api(api)
    extensions.patch_custom_resource_definition(
        CRD_NAME,
        crd_manifest(),
        field_manager=FIELD_MANAGER,
        force=True,
        _content_type="application/apply-patch+yaml",
    )
    deadline = time.monotonic() + timeout
    while not _established(extensions.read_custom_resource_definition(CRD_NAME)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{CRD_NAME} was not established within {timeout:.0f}s")
        time.sleep(0.2)
