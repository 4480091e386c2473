"""Weighted ingress routing during a release: Traefik's own weighted service (pure).

Why Traefik's TraefikService and not Gateway API weights: Traefik is the ingress controller the
platform installs (its CRDs come with it), the services' routes stay Kubernetes Ingresses (what
cert-manager and every other controller read), and for the length of a release only one
IngressRoute is added on top of the Ingress. Its route has the Ingress's rule and a priority one
above the Ingress router's (Traefik's default priority is the rule's length), so it takes that
service's requests, and only those, until it is removed. The TraefikService splits them between
one Service per track; a track with no weight is left out (Traefik rejects a weighted service
whose Service has no endpoints). Traffic between services goes through the service's own
Service, which selects both tracks: it follows the replica ratio.
"""

from __future__ import annotations

from typing import Any

from flotilla_operator.render import (
    CANARY_TRACK,
    HTTPS,
    ROUTE_LABEL,
    SERVICE_PORTS,
    STABLE_TRACK,
    TRACK_LABEL,
    Manifest,
    RenderContext,
    _metadata,
    ingress_routes,
    scheme,
    selector_labels,
    service,
    track_name,
)

TRAEFIK_API = "traefik.io/v1alpha1"
TRAEFIK_CONTROLLER = "traefik.io/ingress-controller"


def track_service(ms: Manifest, context: RenderContext, track: str) -> Manifest:
    """``<name>-<track>``: the service's Service narrowed to one track's pods."""
    body = service(ms, context)
    name = ms["metadata"]["name"]
    body["metadata"]["name"] = track_name(name, track)
    body["metadata"]["labels"] = {**body["metadata"]["labels"], ROUTE_LABEL: track}
    body["spec"]["selector"] = {**selector_labels(name), TRACK_LABEL: track}
    return body


def traefik_service(ms: Manifest, weight: int) -> Manifest:
    """The weighted split: ``100 - weight`` to the stable track, ``weight`` to the candidate."""
    name, port_name = ms["metadata"]["name"], scheme(ms["spec"])
    shares = ((STABLE_TRACK, 100 - weight), (CANARY_TRACK, weight))
    services = []
    for track, share in shares:
        if share <= 0:
            continue
        entry: dict[str, Any] = {
            "name": track_name(name, track),
            "port": SERVICE_PORTS[port_name],
            "weight": share,
        }
        if port_name == HTTPS:
            entry["scheme"] = HTTPS
            entry["serversTransport"] = name  # the ServersTransport render.servers_transport writes
        services.append(entry)
    return {
        "apiVersion": TRAEFIK_API,
        "kind": "TraefikService",
        "metadata": _metadata(ms),
        "spec": {"weighted": {"services": services}},
    }


def route_rule(host: str | None, path: str, path_type: str) -> str:
    """The rule Traefik's Ingress provider writes for one Ingress path (non-strict prefix matching)."""
    matcher = "Path" if path_type == "Exact" else "PathPrefix"
    rules = ([f'Host("{host}")'] if host else []) + [f'{matcher}("{path}")']
    return " && ".join(rules)


def ingress_route(ms: Manifest) -> Manifest:
    """Every path of ``spec.ingress`` to the TraefikService, just above the Ingress's own routers."""
    spec = ms["spec"]["ingress"]
    routes = []
    for path, path_type in ingress_routes(ms):
        rule = route_rule(spec.get("host"), path, path_type)
        routes.append(
            {
                "kind": "Rule",
                "match": rule,
                "priority": len(rule) + 1,
                "services": [{"name": ms["metadata"]["name"], "kind": "TraefikService"}],
            }
        )
    body: dict[str, Any] = {"routes": routes}
    if spec.get("tls"):
        body["tls"] = {"secretName": spec["tls"]["secretName"]}
    return {"apiVersion": TRAEFIK_API, "kind": "IngressRoute", "metadata": _metadata(ms), "spec": body}


def weighted_route(ms: Manifest, context: RenderContext) -> list[Manifest]:
    """A release's route, when the service has an ingress that Traefik serves (else none)."""
    if context.candidate_replicas is None or not ms["spec"].get("ingress") or not context.weighted_ingress:
        return []
    return [
        track_service(ms, context, STABLE_TRACK),
        track_service(ms, context, CANARY_TRACK),
        traefik_service(ms, context.candidate_weight),
        ingress_route(ms),
    ]
