"""Pure rendering: a Microservice in, the manifests of its children out (no API calls).

Migrations run as a Job, not as an init container: a Job runs once per release (revision), not
at every pod start; N replicas starting together do not race over the schema; and it has its own
status (the ``Migrated`` condition), logs and retry budget, apart from the serving pods.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from flotilla_operator import GROUP, KIND, MANAGED_BY, VERSION

Manifest = dict[str, Any]
CONFIG_HASH_ANNOTATION = "flotilla.dev/config-hash"
REVISION_ANNOTATION = "flotilla.dev/migration-revision"
CLUSTER_DOMAIN = "cluster.local"
# Traefik's, as its chart and `make up`/`make kind-up` install it (ingress-nginx is retired).
INGRESS_NAMESPACE = "traefik"
PROMETHEUS_NAMESPACE = "monitoring"
MIGRATION_BACKOFF_LIMIT = 3
MIGRATION_DEADLINE_SECONDS = 600
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
# The container's named port, whatever it serves (probes and the NetworkPolicy use it).
CONTAINER_PORT_NAME = "http"
HTTP, HTTPS = "http", "https"
# The Service's port by scheme; the scheme names it (Traefik and Prometheus read the name).
SERVICE_PORTS = {HTTP: 80, HTTPS: 443}
# spec.tls: its Secret (kubernetes.io/tls plus the CA, as cert-manager writes it) as files.
TLS_VOLUME = "tls"
TLS_MOUNT_PATH = "/etc/flotilla/tls"
TLS_CERT_KEY, TLS_KEY_KEY, TLS_CA_KEY = "tls.crt", "tls.key", "ca.crt"
# The kit's variables naming each file (it reads them at start: a new certificate rolls the pods).
TLS_FILE_ENV = {"TLS_CERT_FILE": TLS_CERT_KEY, "TLS_KEY_FILE": TLS_KEY_KEY, "TLS_CA_FILE": TLS_CA_KEY}
SERVERS_SCHEME_ANNOTATION = "traefik.ingress.kubernetes.io/service.serversscheme"
SERVERS_TRANSPORT_ANNOTATION = "traefik.ingress.kubernetes.io/service.serverstransport"
NGINX_BACKEND_PROTOCOL_ANNOTATION = "nginx.ingress.kubernetes.io/backend-protocol"
_LABEL_VALUE = re.compile(r"[^A-Za-z0-9._-]")
# Pod settings copied as they are from the spec onto every pod (the service's and the Job's).
_POD_FIELDS = ("nodeSelector", "tolerations", "affinity", "imagePullSecrets", "priorityClassName")
# The two containers a Microservice runs: what a secret mount's item may be limited to.
SERVICE, MIGRATION = "service", "migration"
SECRET_MODE = 0o440  # of every Secret volume's files: the pod's group (fsGroup) reads them
# Every pod carries the revision it runs (a hash of its template; Prometheus keeps it as the
# flotilla_dev_revision target label) and its track: the stable Deployment's or the candidate's.
REVISION_LABEL = "flotilla.dev/revision"
TRACK_LABEL = "flotilla.dev/track"
STABLE_TRACK, CANARY_TRACK = "stable", "canary"
# On the Services of one track (weighted ingress routing during a release), never scraped.
ROUTE_LABEL = "flotilla.dev/route"


@dataclass(frozen=True)
class RenderContext:
    """What rendering needs beyond the resource itself, looked up by the caller."""

    config_hash: str = ""
    service_monitor_crd: bool = True
    servers_transport_crd: bool = True
    cluster_domain: str = CLUSTER_DOMAIN
    extra_labels: dict[str, str] = field(default_factory=dict)
    # Microservices of the same namespace whose dependsOn names this one.
    callers: tuple[str, ...] = ()
    ingress_namespace: str = INGRESS_NAMESPACE
    prometheus_namespace: str = PROMETHEUS_NAMESPACE
    # The service's IngressClass is Traefik's and its IngressRoute and TraefikService CRDs are
    # installed: a release's ingress traffic is weighted (routing.py).
    weighted_ingress: bool = False
    traefik_routes_crd: bool = False
    # A release in progress (rollout.py): the candidate's pods and its share of the ingress traffic.
    candidate_replicas: int | None = None
    candidate_weight: int = 0
    # A return to the warm revision: the stable Deployment starts every new pod at once.
    fast_rollout: bool = False


def selector_labels(name: str) -> dict[str, str]:
    """The immutable selector of the Deployment, Service and friends."""
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": name}


def migration_instance(name: str) -> str:
    """The ``instance`` label of a service's migration Jobs (the Service never selects them)."""
    return f"{name[:55].rstrip('-')}-migrate"


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


def migration_labels(ms: Manifest) -> dict[str, str]:
    """Labels of a migration Job and its pods: ``name`` N (its database admits them), not ``instance`` N."""
    return {
        **labels(ms),
        "app.kubernetes.io/instance": migration_instance(ms["metadata"]["name"]),
        "app.kubernetes.io/component": "migration",
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


def scheme(spec: dict[str, Any]) -> str:
    """``https`` when ``spec.tls`` is set (the service serves and calls over TLS), else ``http``."""
    return HTTPS if spec.get("tls") else HTTP


def service_url(name: str, namespace: str, domain: str = CLUSTER_DOMAIN, url_scheme: str = HTTP) -> str:
    """The in-cluster URL of a Microservice (its Service listens on the scheme's default port)."""
    return f"{url_scheme}://{name}.{namespace}.svc.{domain}"


def tls_server_name(ms: Manifest) -> str:
    """The name its certificate is checked against by Traefik and Prometheus."""
    return f"{ms['metadata']['name']}.{ms['metadata']['namespace']}.svc"


def ingress_paths(spec: dict[str, Any]) -> list[str]:
    """The routes of ``spec.ingress``: ``paths``, or the deprecated single ``path``."""
    routes = spec.get("ingress") or {}
    return list(routes.get("paths") or ([routes["path"]] if routes.get("path") else []))


API_DOCS_ROOT = "/docs"


def api_docs_path(ms: Manifest) -> str | None:
    """Where the kit serves the API page, ``/docs/<name>``; None when ``spec.apiDocs.enabled`` is false."""
    if not (ms["spec"].get("apiDocs") or {}).get("enabled", True):
        return None
    return f"{API_DOCS_ROOT}/{ms['metadata']['name']}"


def ingress_routes(ms: Manifest) -> list[tuple[str, str]]:
    """``(path, pathType)`` of every route: ``spec.ingress``'s paths, then the API page's (a prefix)."""
    spec = ms["spec"]
    if not spec.get("ingress"):
        return []
    path_type = spec["ingress"].get("pathType", "Prefix")
    routes = [(path, path_type) for path in ingress_paths(spec)]
    docs = api_docs_path(ms)
    if docs is not None and docs not in ingress_paths(spec):
        routes.append((docs, "Prefix"))
    return routes


def external_url(spec: dict[str, Any]) -> str | None:
    """The public URL the Ingress gives (its first path), when there is one with a host."""
    ingress = spec.get("ingress")
    if not ingress or not ingress.get("host"):
        return None
    scheme = "https" if ingress.get("tls") else "http"
    return f"{scheme}://{ingress['host']}{ingress_paths(spec)[0]}"


def dependency_env(ms: Manifest, domain: str = CLUSTER_DOMAIN) -> list[dict[str, Any]]:
    """``<NAME>_URL`` for every ``dependsOn`` entry, as the kit's discovery reads it (https with tls)."""
    namespace, url_scheme = ms["metadata"]["namespace"], scheme(ms["spec"])
    return [
        {
            "name": f"{dependency.upper().replace('-', '_')}_URL",
            "value": service_url(dependency, namespace, domain, url_scheme),
        }
        for dependency in ms["spec"].get("dependsOn", [])
    ]


def serves_tls(spec: dict[str, Any], role: str) -> bool:
    """Whether ``role`` gets ``spec.tls``: the service does, a migration neither serves nor calls."""
    return role == SERVICE and bool(spec.get("tls"))


def tls_env(spec: dict[str, Any], role: str) -> list[dict[str, Any]]:
    """The kit's ``TLS_*_FILE`` variables, pointing into the mounted ``spec.tls`` Secret."""
    if not serves_tls(spec, role):
        return []
    return [{"name": name, "value": f"{TLS_MOUNT_PATH}/{key}"} for name, key in TLS_FILE_ENV.items()]


def _probe(path: str, url_scheme: str, *, period: int, failures: int) -> dict[str, Any]:
    get: dict[str, Any] = {"path": path, "port": CONTAINER_PORT_NAME}
    if url_scheme == HTTPS:
        get["scheme"] = HTTPS.upper()  # the kubelet does not verify the certificate
    return {
        "httpGet": get,
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def api_docs_env(ms: Manifest) -> list[dict[str, Any]]:
    """The kit's API page at the path the ingress routes, or switched off."""
    path = api_docs_path(ms)
    if path is None:
        return [{"name": "API_DOCS", "value": "false"}]
    return [{"name": "API_DOCS_PATH", "value": path}]


def container_env(ms: Manifest, context: RenderContext, role: str = SERVICE) -> list[dict[str, Any]]:
    """The injected variables, then the user's own (which win over injected ones of the same name)."""
    spec = ms["spec"]
    injected: list[dict[str, Any]] = [
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        # Its spans are the Microservice's, as its metrics are (Prometheus' job label).
        {"name": "OTEL_SERVICE_NAME", "value": ms["metadata"]["name"]},
        {"name": "PORT", "value": str(spec["port"])},
        *dependency_env(ms, context.cluster_domain),
        *tls_env(spec, role),
        *api_docs_env(ms),
    ]
    own: list[dict[str, Any]] = spec.get("env", [])
    return [entry for entry in injected if entry["name"] not in {e["name"] for e in own}] + own


CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def secret_volume(mount: dict[str, Any], role: str) -> dict[str, Any] | None:
    """One mount's Secret volume for ``role``: every key, or the items for ``role`` (None: no item)."""
    if role not in mount.get("usedBy", (SERVICE, MIGRATION)):
        return None
    volume: dict[str, Any] = {"secretName": mount["secretName"], "defaultMode": SECRET_MODE}
    if "items" in mount:
        items = [
            {"key": item["key"], "path": item["path"]}
            for item in mount["items"]
            if role in item.get("usedBy", (SERVICE, MIGRATION))
        ]
        if not items:
            return None
        volume["items"] = items
    return volume


def _secret_mounts(spec: dict[str, Any], role: str) -> list[tuple[int, dict[str, Any], dict[str, Any]]]:
    """(index, mount, volume) of the secret mounts ``role`` gets; the index names the volume."""
    mounts = enumerate(spec.get("secretMounts", []))
    return [(index, mount, volume) for index, mount in mounts if (volume := secret_volume(mount, role))]


def volume_mounts(spec: dict[str, Any], role: str = SERVICE) -> list[dict[str, Any]]:
    """The scratch directory, the secret mounts and the TLS files (read-only), then ``volumeMounts``."""
    return [
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the writable scratch directory
        *(
            {"name": f"secret-{index}", "mountPath": mount["mountPath"], "readOnly": True}
            for index, mount, _volume in _secret_mounts(spec, role)
        ),
        *(
            [{"name": TLS_VOLUME, "mountPath": TLS_MOUNT_PATH, "readOnly": True}]
            if serves_tls(spec, role)
            else []
        ),
        *spec.get("volumeMounts", []),
    ]


def tls_volume(spec: dict[str, Any]) -> dict[str, Any]:
    """The ``spec.tls`` Secret as a volume, every key of it."""
    return {
        "name": TLS_VOLUME,
        "secret": {"secretName": spec["tls"]["secretName"], "defaultMode": SECRET_MODE},
    }


def volumes(spec: dict[str, Any], role: str = SERVICE) -> list[dict[str, Any]]:
    """The scratch emptyDir, one Secret volume per secret mount, the TLS Secret, then ``volumes``."""
    return [
        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
        *(
            {"name": f"secret-{index}", "secret": volume}
            for index, _mount, volume in _secret_mounts(spec, role)
        ),
        *([tls_volume(spec)] if serves_tls(spec, role) else []),
        *spec.get("volumes", []),
    ]


def _base_container(ms: Manifest, context: RenderContext, role: str = SERVICE) -> dict[str, Any]:
    """What the service container and the migration container share (but for their secrets)."""
    spec = ms["spec"]
    container: dict[str, Any] = {
        "image": spec["image"],
        "env": container_env(ms, context, role),
        "resources": spec.get("resources", {}),
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": volume_mounts(spec, role),
    }
    if spec.get("envFrom"):
        container["envFrom"] = spec["envFrom"]
    return container


def _base_pod(ms: Manifest, role: str = SERVICE) -> dict[str, Any]:
    """What the service pods and the migration pods share: security, volumes, scheduling."""
    spec = ms["spec"]
    pod: dict[str, Any] = {
        "volumes": volumes(spec, role),
        "securityContext": POD_SECURITY,
        "automountServiceAccountToken": bool(spec.get("serviceAccountName")),
        # No Docker-link variables (USERS_PORT=tcp://...): configuration comes from env only.
        "enableServiceLinks": False,
    }
    if spec.get("serviceAccountName"):
        pod["serviceAccountName"] = spec["serviceAccountName"]
    pod.update({key: spec[key] for key in _POD_FIELDS if spec.get(key)})
    return pod


def pod_labels(ms: Manifest) -> dict[str, str]:
    """The service pods' labels: the user's ``podLabels``, then ours (the selector cannot be overridden)."""
    return {**ms["spec"].get("podLabels", {}), **labels(ms)}


def pod_annotations(ms: Manifest, context: RenderContext) -> dict[str, str]:
    """The user's ``podAnnotations`` and the config hash that rolls the pods when config changes."""
    annotations = dict(ms["spec"].get("podAnnotations", {}))
    if context.config_hash:
        annotations[CONFIG_HASH_ANNOTATION] = context.config_hash
    return annotations


def topology_spread(ms: Manifest) -> list[dict[str, Any]]:
    """The spec's constraints (selecting this service's pods unless they say), else hostname and zone."""
    name = ms["metadata"]["name"]
    own = ms["spec"].get("topologySpreadConstraints")
    if own is None:
        return [
            {
                "maxSkew": 1,
                "topologyKey": key,
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": selector_labels(name)},
            }
            for key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone")
        ]
    selector = {"matchLabels": selector_labels(name)}
    return [{"labelSelector": selector, **constraint} for constraint in own]


def track_name(name: str, track: str) -> str:
    """A track's own objects' name: ``<name>-canary`` (its Deployment), ``<name>-<track>`` (Services)."""
    return f"{name[: 62 - len(track)].rstrip('-')}-{track}"


def pod_template(ms: Manifest, context: RenderContext) -> dict[str, Any]:
    """What the pods run, the same on either track: a change of it is a new revision."""
    spec, name = ms["spec"], ms["metadata"]["name"]
    probes, url_scheme = spec["probes"], scheme(spec)
    container: dict[str, Any] = {
        "name": name,
        **_base_container(ms, context),
        "ports": [{"name": CONTAINER_PORT_NAME, "containerPort": spec["port"], "protocol": "TCP"}],
        "livenessProbe": _probe(probes["liveness"]["path"], url_scheme, period=10, failures=3),
        "readinessProbe": _probe(probes["readiness"]["path"], url_scheme, period=5, failures=2),
        "startupProbe": _probe(probes["liveness"]["path"], url_scheme, period=2, failures=30),
        "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
    }
    pod_spec: dict[str, Any] = {
        "containers": [container],
        **_base_pod(ms),
        "terminationGracePeriodSeconds": 30,
        "topologySpreadConstraints": topology_spread(ms),
    }
    return {
        "metadata": {"labels": pod_labels(ms), "annotations": pod_annotations(ms, context)},
        "spec": pod_spec,
    }


def template_revision(template: dict[str, Any]) -> str:
    """10 hex of a hash of a pod template: the revision's name."""
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def revision(ms: Manifest, context: RenderContext) -> str:
    """The revision the spec asks for."""
    return template_revision(pod_template(ms, context))


def deployment(
    ms: Manifest, context: RenderContext, replicas: int | None = None, track: str = STABLE_TRACK
) -> Manifest:
    """A track's Deployment: restricted Pod Security, probes, zero-downtime rollouts, spread.

    The stable track's is named after the service (``replicas`` left out when autoscaling is on,
    the HPA owns it, unless given: a new Deployment starts at ``minReplicas``); the candidate's,
    ``<name>-canary``, selects its own pods and has the ``replicas`` given.
    """
    spec, name = ms["spec"], ms["metadata"]["name"]
    template = pod_template(ms, context)
    marks = {REVISION_LABEL: template_revision(template), TRACK_LABEL: track}
    template["metadata"]["labels"] = {**template["metadata"]["labels"], **marks}
    selector = (
        selector_labels(name) if track == STABLE_TRACK else {**selector_labels(name), TRACK_LABEL: track}
    )
    surge: int | str = "100%" if context.fast_rollout and track == STABLE_TRACK else 1
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": selector},
        "revisionHistoryLimit": 5,
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": surge}},
        "template": template,
    }
    if track != STABLE_TRACK:
        deployment_spec["replicas"] = spec["replicas"] if replicas is None else replicas
    elif not spec.get("autoscaling"):
        deployment_spec["replicas"] = spec["replicas"]
    elif replicas is not None:
        deployment_spec["replicas"] = replicas
    metadata = _metadata(ms, annotations={REVISION_LABEL: marks[REVISION_LABEL]})
    if track != STABLE_TRACK:
        metadata["name"] = track_name(name, track)
        metadata["labels"] = {**metadata["labels"], TRACK_LABEL: track}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": deployment_spec}


def _migration_template(ms: Manifest, context: RenderContext) -> dict[str, Any]:
    container = {"name": "migrate", **_base_container(ms, context, MIGRATION), "args": ["migrate"]}
    return {
        "metadata": {
            "labels": {**ms["spec"].get("podLabels", {}), **migration_labels(ms)},
            "annotations": pod_annotations(ms, context),
        },
        # Migrations talk to their database, never to the Kubernetes API: no token, whatever the account.
        "spec": {
            "containers": [container],
            **_base_pod(ms, MIGRATION),
            "automountServiceAccountToken": False,
            "restartPolicy": "Never",
        },
    }


# What a migration runs with: a change of one of these (or of the config they read) is a new
# release. Resources, scheduling, pod metadata, replicas and the injected URLs are not.
REVISION_FIELDS = ("image", "env", "envFrom", "secretMounts", "volumes", "volumeMounts")


def migration_revision(ms: Manifest, context: RenderContext) -> str:
    """8 hex of a hash of what the migration runs: ``REVISION_FIELDS`` and the config hash."""
    spec = ms["spec"]
    inputs = {**{key: spec.get(key) for key in REVISION_FIELDS}, "config": context.config_hash}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:8]


def migration_job_name(name: str, revision: str) -> str:
    """``N-migrate-<revision>``, shortened so that it stays a valid label value (63 characters)."""
    return f"{name[:46].rstrip('-')}-migrate-{revision}"


def migration_job(ms: Manifest, context: RenderContext) -> Manifest | None:
    """The Job running the image with ``migrate`` once per revision, when ``spec.migrate`` is set."""
    if not ms["spec"].get("migrate"):
        return None
    revision = migration_revision(ms, context)
    metadata = _metadata(ms, annotations={REVISION_ANNOTATION: revision})
    metadata["name"] = migration_job_name(ms["metadata"]["name"], revision)
    metadata["labels"] = migration_labels(ms)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "backoffLimit": MIGRATION_BACKOFF_LIMIT,
            "activeDeadlineSeconds": MIGRATION_DEADLINE_SECONDS,
            "template": _migration_template(ms, context),
        },
    }


def servers_transport_reference(ms: Manifest) -> str:
    """How Traefik's Ingress provider names this service's ServersTransport: ``<ns>-<name>@kubernetescrd``."""
    return f"{ms['metadata']['namespace']}-{ms['metadata']['name']}@kubernetescrd"


def service_annotations(ms: Manifest, context: RenderContext) -> dict[str, str]:
    """With ``spec.tls``: Traefik speaks HTTPS to the pods, verifying them with the ServersTransport."""
    if not ms["spec"].get("tls"):
        return {}
    annotations = {SERVERS_SCHEME_ANNOTATION: HTTPS}
    if context.servers_transport_crd:
        annotations[SERVERS_TRANSPORT_ANNOTATION] = servers_transport_reference(ms)
    return annotations


def service(ms: Manifest, context: RenderContext) -> Manifest:
    """The Service: port 80 named ``http`` (443 ``https`` with ``spec.tls``) onto the container's port."""
    port_name = scheme(ms["spec"])
    metadata = _metadata(ms)
    annotations = service_annotations(ms, context)
    if annotations:
        metadata["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(ms["metadata"]["name"]),
            "ports": [
                {
                    "name": port_name,
                    "port": SERVICE_PORTS[port_name],
                    "targetPort": CONTAINER_PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }


def ingress(ms: Manifest) -> Manifest | None:
    """One Ingress with every route, when ``spec.ingress`` is set."""
    spec = ms["spec"].get("ingress")
    if not spec:
        return None
    backend = {"service": {"name": ms["metadata"]["name"], "port": {"name": scheme(ms["spec"])}}}
    rule: dict[str, Any] = {
        "http": {
            "paths": [
                {"path": path, "pathType": path_type, "backend": backend}
                for path, path_type in ingress_routes(ms)
            ]
        }
    }
    if spec.get("host"):
        rule["host"] = spec["host"]
    body: dict[str, Any] = {"rules": [rule]}
    if spec.get("className"):  # unset: the cluster's default IngressClass
        body["ingressClassName"] = spec["className"]
    annotations: dict[str, str] = {}
    tls = spec.get("tls")
    if tls:
        body["tls"] = [{"hosts": [spec["host"]], "secretName": tls["secretName"]}]
        if tls.get("clusterIssuer"):
            annotations["cert-manager.io/cluster-issuer"] = tls["clusterIssuer"]
    if ms["spec"].get("tls"):  # Traefik reads the Service's annotations; ingress-nginx this one
        annotations[NGINX_BACKEND_PROTOCOL_ANNOTATION] = HTTPS.upper()
    metadata = _metadata(ms)
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": metadata, "spec": body}


def _namespace_peer(namespace: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}}}


def network_policy_peers(ms: Manifest, context: RenderContext) -> list[dict[str, Any]]:
    """Who may call this service: its callers' pods, the ingress controller, Prometheus, ``from``."""
    spec = ms["spec"]
    peers: list[dict[str, Any]] = [
        {"podSelector": {"matchLabels": selector_labels(caller)}} for caller in sorted(set(context.callers))
    ]
    if spec.get("ingress"):
        peers.append(_namespace_peer(context.ingress_namespace))
    if spec.get("metrics", {}).get("enabled", True):
        peers.append(_namespace_peer(context.prometheus_namespace))
    peers.extend((spec.get("networkPolicy") or {}).get("from", []))
    return peers


DNS_PORTS = [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]


def network_policy_egress(ms: Manifest) -> list[dict[str, Any]]:
    """Where the pods may connect: DNS anywhere, the services of ``dependsOn``, the peers of ``to``."""
    spec = ms["spec"]
    rules: list[dict[str, Any]] = [{"ports": DNS_PORTS}]
    dependencies = [
        {"podSelector": {"matchLabels": selector_labels(name)}} for name in spec.get("dependsOn", [])
    ]
    extra = (spec.get("networkPolicy") or {}).get("to", [])
    if dependencies or extra:
        rules.append({"to": [*dependencies, *extra]})
    return rules


def network_policy(ms: Manifest, context: RenderContext) -> Manifest | None:
    """The NetworkPolicy admitting the declared peers on port ``http``, letting out only the egress list."""
    settings = ms["spec"].get("networkPolicy") or {}
    if not settings.get("enabled", True):
        return None
    peers = network_policy_peers(ms, context)
    # A rule without peers would admit everyone: no peers, no rule (nothing is admitted).
    rules = [{"from": peers, "ports": [{"port": CONTAINER_PORT_NAME, "protocol": "TCP"}]}] if peers else []
    name = ms["metadata"]["name"]
    body: dict[str, Any] = {
        # The name alone: the service's pods and its migration Jobs' (whose instance differs).
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": name}},
        "policyTypes": ["Ingress"],
        "ingress": rules,
    }
    if settings.get("restrictEgress", True):
        body["policyTypes"] = ["Ingress", "Egress"]
        body["egress"] = network_policy_egress(ms)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(ms),
        "spec": body,
    }


# Copied by the Prometheus operator from the Service onto every series it scrapes (as
# app_kubernetes_io_managed_by): the alerts find every Microservice by it, not by a list of names.
SCRAPE_TARGET_LABELS = ("app.kubernetes.io/managed-by",)


def scrape_endpoint(ms: Manifest) -> dict[str, Any]:
    """The ServiceMonitor's endpoint: the Service's port; over HTTPS verified with ``ca.crt`` under tls."""
    metrics, tls = ms["spec"]["metrics"], ms["spec"].get("tls")
    endpoint: dict[str, Any] = {
        "port": scheme(ms["spec"]),
        "path": metrics["path"],
        "interval": metrics["interval"],
    }
    if tls:
        endpoint["scheme"] = HTTPS
        endpoint["tlsConfig"] = {
            "ca": {"secret": {"name": tls["secretName"], "key": TLS_CA_KEY}},
            "serverName": tls_server_name(ms),
        }
    return endpoint


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
            # The service's own Service only: a release's track Services select the same pods.
            "selector": {
                "matchLabels": selector_labels(ms["metadata"]["name"]),
                "matchExpressions": [{"key": ROUTE_LABEL, "operator": "DoesNotExist"}],
            },
            "namespaceSelector": {"matchNames": [ms["metadata"]["namespace"]]},
            "endpoints": [scrape_endpoint(ms)],
            "targetLabels": list(SCRAPE_TARGET_LABELS),
            # Which revision served (canary analysis compares the candidate with the stable).
            "podTargetLabels": [REVISION_LABEL],
        },
    }


def servers_transport(ms: Manifest, context: RenderContext) -> Manifest | None:
    """Traefik's ServersTransport verifying the pods' certificate, with ``spec.tls`` and its CRD."""
    tls = ms["spec"].get("tls")
    if not tls or not context.servers_transport_crd:
        return None
    return {
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "ServersTransport",
        "metadata": _metadata(ms),
        "spec": {"serverName": tls_server_name(ms), "rootCAs": [{"secret": tls["secretName"]}]},
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
    """The PodDisruptionBudget, when ``spec.disruptionBudget`` is set; unhealthy pods never block a drain."""
    spec = ms["spec"].get("disruptionBudget")
    if not spec:
        return None
    body = {key: spec[key] for key in ("minAvailable", "maxUnavailable") if key in spec}
    body["selector"] = {"matchLabels": selector_labels(ms["metadata"]["name"])}
    body["unhealthyPodEvictionPolicy"] = "AlwaysAllow"
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": _metadata(ms), "spec": body}


def render(ms: Manifest, context: RenderContext) -> list[Manifest]:
    """Every child this Microservice should have right now (the migration Job first).

    With a release in progress (``context.candidate_replicas``), the candidate's Deployment too;
    its weighted ingress route is ``routing.weighted_route``'s.
    """
    optional = [
        ingress(ms),
        service_monitor(ms, context),
        servers_transport(ms, context),
        autoscaler(ms),
        disruption_budget(ms),
        network_policy(ms, context),
    ]
    job = migration_job(ms, context)
    release: list[Manifest] = []
    if context.candidate_replicas is not None:
        release = [deployment(ms, context, context.candidate_replicas, CANARY_TRACK)]
    return [
        *([job] if job else []),
        deployment(ms, context),
        service(ms, context),
        *[child for child in optional if child is not None],
        *release,
    ]


@dataclass(frozen=True)
class ConfigRef:
    """One ConfigMap or Secret the pods read: one ``key`` of it, or all of it (``key`` None)."""

    kind: str
    name: str
    key: str | None = None
    optional: bool = False

    def __str__(self) -> str:
        return f"{self.kind} {self.name}" + (f" (key {self.key})" if self.key else "")


class ConfigMissing(Exception):
    """Required ConfigMaps, Secrets or keys are absent: nothing that depends on them is rendered."""

    def __init__(self, missing: list[ConfigRef]) -> None:
        self.missing = missing
        super().__init__("Waiting for " + ", ".join(str(ref) for ref in missing) + ".")


def _volume_references(volume: dict[str, Any]) -> list[ConfigRef]:
    """The Secrets and ConfigMaps a pod volume mounts (directly or projected), whole."""
    sources = [volume, *((volume.get("projected") or {}).get("sources") or [])]
    refs = []
    for source in sources:
        if "secret" in source:
            secret = source["secret"]
            refs.append(
                ConfigRef(
                    "Secret",
                    secret.get("secretName") or secret.get("name", ""),
                    None,
                    bool(secret.get("optional")),
                )
            )
        if "configMap" in source:
            refs.append(
                ConfigRef(
                    "ConfigMap", source["configMap"]["name"], None, bool(source["configMap"].get("optional"))
                )
            )
    return refs


def config_references(spec: dict[str, Any]) -> list[ConfigRef]:
    """What the pods read: single keys (``*KeyRef``), whole objects (``envFrom``, mounts, volumes)."""
    refs: set[ConfigRef] = set()
    for entry in spec.get("env", []):
        source = entry.get("valueFrom", {})
        for field_name, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
            if field_name in source:
                ref = source[field_name]
                refs.add(ConfigRef(kind, ref["name"], ref["key"], bool(ref.get("optional"))))
    for entry in spec.get("envFrom", []):
        for field_name, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
            if field_name in entry:
                refs.add(
                    ConfigRef(kind, entry[field_name]["name"], None, bool(entry[field_name].get("optional")))
                )
    refs.update(ConfigRef("Secret", mount["secretName"]) for mount in spec.get("secretMounts", []))
    if spec.get("tls"):  # the kit reads the certificate at start: a renewed one rolls the pods
        refs.add(ConfigRef("Secret", spec["tls"]["secretName"]))
    for volume in spec.get("volumes", []):
        refs.update(_volume_references(volume))
    return sorted(refs, key=lambda ref: (ref.kind, ref.name, ref.key or "", ref.optional))


def config_digest(refs: list[ConfigRef], found: dict[tuple[str, str], dict[str, str] | None]) -> str:
    """16 hex of what ``refs`` read from ``found`` ((kind, name) -> data, None when absent); '' without refs.

    Only the referenced keys count, so rotating another service's key in a shared Secret changes
    nothing here. Raises ``ConfigMissing`` naming each required object or key that is absent.
    """
    if not refs:
        return ""
    missing: list[ConfigRef] = []
    read: list[Any] = []
    for ref in refs:
        data = found.get((ref.kind, ref.name))
        value = data if ref.key is None or data is None else data.get(ref.key)
        if value is None and not ref.optional:
            missing.append(ref)
        read.append([ref.kind, ref.name, ref.key, value])
    if missing:
        raise ConfigMissing(missing)
    return hashlib.sha256(json.dumps(read, sort_keys=True).encode()).hexdigest()[:16]
