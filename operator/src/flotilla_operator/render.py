"""Pure rendering: a Microservice in, the manifests of its children out (no API calls)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from flotilla_operator import GROUP, KIND, MANAGED_BY, VERSION

Manifest = dict[str, Any]
CONFIG_HASH_ANNOTATION = "flotilla.dev/config-hash"
CLUSTER_DOMAIN = "cluster.local"
_LABEL_VALUE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class RenderContext:
    """What rendering needs beyond the resource itself, looked up by the caller."""

    config_hash: str = ""
    service_monitor_crd: bool = True
    cluster_domain: str = CLUSTER_DOMAIN
    extra_labels: dict[str, str] = field(default_factory=dict)


def selector_labels(name: str) -> dict[str, str]:
    """The immutable selector of the Deployment, Service and friends."""
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": name}


def image_tag(image: str) -> str:
    """The tag of an image reference, as a label value (``latest`` when there is none)."""
    reference = image.split("@", 1)[0]
    last = reference.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else "latest"
    return _LABEL_VALUE.sub("-", tag)[:63].strip("-._") or "latest"


def labels(ms: Manifest) -> dict[str, str]:
    """The ``app.kubernetes.io/*`` labels every child carries."""
    name = ms["metadata"]["name"]
    return {
        **selector_labels(name),
        "app.kubernetes.io/version": image_tag(ms["spec"]["image"]),
        "app.kubernetes.io/component": "microservice",
        "app.kubernetes.io/part-of": "flotilla",
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def owner_reference(ms: Manifest) -> dict[str, Any]:
    """Makes a child garbage-collected with its Microservice."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": ms["metadata"]["name"],
        "uid": ms["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(ms: Manifest, **extra: Any) -> dict[str, Any]:
    return {
        "name": ms["metadata"]["name"],
        "namespace": ms["metadata"]["namespace"],
        "labels": labels(ms),
        "ownerReferences": [owner_reference(ms)],
        **extra,
    }


def service_url(name: str, namespace: str, domain: str = CLUSTER_DOMAIN) -> str:
    """The in-cluster URL of a Microservice (its Service listens on port 80)."""
    return f"http://{name}.{namespace}.svc.{domain}"


def external_url(spec: dict[str, Any]) -> str | None:
    """The public URL the Ingress gives, when there is one with a host."""
    ingress = spec.get("ingress")
    if not ingress or not ingress.get("host"):
        return None
    scheme = "https" if ingress.get("tls") else "http"
    return f"{scheme}://{ingress['host']}{ingress['path']}"


def dependency_env(ms: Manifest, domain: str = CLUSTER_DOMAIN) -> list[dict[str, Any]]:
    """``<NAME>_URL`` for every ``dependsOn`` entry, as the kit's discovery reads it."""
    namespace = ms["metadata"]["namespace"]
    return [
        {
            "name": f"{dependency.upper().replace('-', '_')}_URL",
            "value": service_url(dependency, namespace, domain),
        }
        for dependency in ms["spec"].get("dependsOn", [])
    ]


def _probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def deployment(ms: Manifest, context: RenderContext) -> Manifest:
    """The Deployment: restricted Pod Security, probes, zero-downtime rollouts, spread."""
    spec, name = ms["spec"], ms["metadata"]["name"]
    injected: list[dict[str, Any]] = [
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "PORT", "value": str(spec["port"])},
        *dependency_env(ms, context.cluster_domain),
    ]
    own: list[dict[str, Any]] = spec.get("env", [])
    # The user's own variables win over injected ones of the same name (one entry per name).
    env = [entry for entry in injected if entry["name"] not in {e["name"] for e in own}] + own
    container: dict[str, Any] = {
        "name": name,
        "image": spec["image"],
        "ports": [{"name": "http", "containerPort": spec["port"], "protocol": "TCP"}],
        "env": env,
        "resources": spec.get("resources", {}),
        "livenessProbe": _probe(spec["probes"]["liveness"]["path"], period=10, failures=3),
        "readinessProbe": _probe(spec["probes"]["readiness"]["path"], period=5, failures=2),
        "startupProbe": _probe(spec["probes"]["liveness"]["path"], period=2, failures=30),
        "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the writable scratch directory
            *(
                {"name": f"secret-{index}", "mountPath": mount["mountPath"], "readOnly": True}
                for index, mount in enumerate(spec.get("secretMounts", []))
            ),
        ],
    }
    if spec.get("envFrom"):
        container["envFrom"] = spec["envFrom"]
    if spec.get("migrate"):
        # The service's own `migrate` command (schema and bootstrap data) runs before it serves.
        pod_migration = {
            key: value
            for key, value in container.items()
            if key in ("image", "env", "envFrom", "resources", "securityContext", "volumeMounts")
        }
        init_containers = [{"name": "migrate", "args": ["migrate"], **pod_migration}]
    else:
        init_containers = []
    pod_annotations = {CONFIG_HASH_ANNOTATION: context.config_hash} if context.config_hash else {}
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": [
            {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
            *(
                {
                    "name": f"secret-{index}",
                    "secret": {"secretName": mount["secretName"], "defaultMode": 0o440},
                }
                for index, mount in enumerate(spec.get("secretMounts", []))
            ),
        ],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "automountServiceAccountToken": bool(spec.get("serviceAccountName")),
        # No Docker-link variables (USERS_PORT=tcp://...): configuration comes from env only.
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 30,
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": key,
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": selector_labels(name)},
            }
            for key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone")
        ],
    }
    if spec.get("serviceAccountName"):
        pod_spec["serviceAccountName"] = spec["serviceAccountName"]
    if init_containers:
        pod_spec["initContainers"] = init_containers
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(name)},
        "revisionHistoryLimit": 5,
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {
            "metadata": {"labels": labels(ms), "annotations": pod_annotations},
            "spec": pod_spec,
        },
    }
    if not spec.get("autoscaling"):
        deployment_spec["replicas"] = spec["replicas"]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _metadata(ms), "spec": deployment_spec}


def service(ms: Manifest) -> Manifest:
    """The Service: port 80 named ``http`` onto the container's ``http`` port."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(ms),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(ms["metadata"]["name"]),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def ingress(ms: Manifest) -> Manifest | None:
    """The Ingress route, when ``spec.ingress`` is set."""
    spec = ms["spec"].get("ingress")
    if not spec:
        return None
    rule: dict[str, Any] = {
        "http": {
            "paths": [
                {
                    "path": spec["path"],
                    "pathType": "Prefix",
                    "backend": {"service": {"name": ms["metadata"]["name"], "port": {"name": "http"}}},
                }
            ]
        }
    }
    if spec.get("host"):
        rule["host"] = spec["host"]
    body: dict[str, Any] = {"rules": [rule]}
    if spec.get("className"):
        body["ingressClassName"] = spec["className"]
    annotations: dict[str, str] = {}
    tls = spec.get("tls")
    if tls:
        body["tls"] = [{"hosts": [spec["host"]], "secretName": tls["secretName"]}]
        if tls.get("clusterIssuer"):
            annotations["cert-manager.io/cluster-issuer"] = tls["clusterIssuer"]
    metadata = _metadata(ms)
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": metadata, "spec": body}


def service_monitor(ms: Manifest, context: RenderContext) -> Manifest | None:
    """The ServiceMonitor, when metrics are enabled and its CRD is installed."""
    metrics = ms["spec"].get("metrics", {})
    if not metrics.get("enabled", True) or not context.service_monitor_crd:
        return None
    metadata = _metadata(ms)
    metadata["labels"] = {**metadata["labels"], **metrics.get("labels", {})}
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": metadata,
        "spec": {
            "selector": {"matchLabels": selector_labels(ms["metadata"]["name"])},
            "namespaceSelector": {"matchNames": [ms["metadata"]["namespace"]]},
            "endpoints": [{"port": "http", "path": metrics["path"], "interval": metrics["interval"]}],
        },
    }


def autoscaler(ms: Manifest) -> Manifest | None:
    """The HorizontalPodAutoscaler, when ``spec.autoscaling`` is set."""
    spec = ms["spec"].get("autoscaling")
    if not spec:
        return None
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(ms),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": ms["metadata"]["name"]},
            "minReplicas": spec.get("minReplicas", 1),
            "maxReplicas": spec["maxReplicas"],
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": spec.get("targetCPUUtilizationPercentage", 80),
                        },
                    },
                }
            ],
        },
    }


def disruption_budget(ms: Manifest) -> Manifest | None:
    """The PodDisruptionBudget, when ``spec.disruptionBudget`` is set."""
    spec = ms["spec"].get("disruptionBudget")
    if not spec:
        return None
    body = {key: spec[key] for key in ("minAvailable", "maxUnavailable") if key in spec}
    body["selector"] = {"matchLabels": selector_labels(ms["metadata"]["name"])}
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": _metadata(ms), "spec": body}


def render(ms: Manifest, context: RenderContext) -> list[Manifest]:
    """Every child this Microservice should have right now."""
    optional = [ingress(ms), service_monitor(ms, context), autoscaler(ms), disruption_budget(ms)]
    return [deployment(ms, context), service(ms), *[child for child in optional if child is not None]]


def config_references(spec: dict[str, Any]) -> tuple[set[str], set[str]]:
    """Names of the ConfigMaps and Secrets the pods read (``env``, ``envFrom``, ``secretMounts``)."""
    config_maps: set[str] = set()
    secrets: set[str] = set()
    for entry in spec.get("env", []):
        source = entry.get("valueFrom", {})
        if "configMapKeyRef" in source:
            config_maps.add(source["configMapKeyRef"]["name"])
        if "secretKeyRef" in source:
            secrets.add(source["secretKeyRef"]["name"])
    secrets.update(mount["secretName"] for mount in spec.get("secretMounts", []))
    for entry in spec.get("envFrom", []):
        if "configMapRef" in entry:
            config_maps.add(entry["configMapRef"]["name"])
        if "secretRef" in entry:
            secrets.add(entry["secretRef"]["name"])
    return config_maps, secrets
