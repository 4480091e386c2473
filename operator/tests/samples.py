"""A Microservice as the API server hands it to the operator: its defaults applied."""

from __future__ import annotations

import copy
from typing import Any

BASE: dict[str, Any] = {
    "apiVersion": "flotilla.dev/v1alpha1",
    "kind": "Microservice",
    "metadata": {"name": "orders", "namespace": "shop", "uid": "uid-1", "generation": 3},
    "spec": {
        "image": "registry.example/orders:1.4.2",
        "replicas": 2,
        "port": 8000,
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        "probes": {"liveness": {"path": "/livez"}, "readiness": {"path": "/readyz"}},
        "metrics": {"enabled": True, "path": "/metrics", "interval": "30s"},
    },
}


def microservice(generation: int = 3, **spec: Any) -> dict[str, Any]:
    """The sample with ``spec`` fields replaced, at ``generation``."""
    body = copy.deepcopy(BASE)
    body["spec"].update(spec)
    body["metadata"]["generation"] = generation
    return body


def delivered(
    generation: int = 1, version: str = "10", uid: str = "uid-1", **metadata: Any
) -> dict[str, Any]:
    """The sample as a watch event delivers it: a resourceVersion, managed fields, ``metadata``."""
    body = microservice(generation)
    body["metadata"].update(
        uid=uid,
        resourceVersion=version,
        managedFields=[{"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:spec": {}}}],
        **metadata,
    )
    return body
