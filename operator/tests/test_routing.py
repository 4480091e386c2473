"""A release's objects, rendered without a cluster: the candidate's Deployment, the weighted route."""

from __future__ import annotations

from dataclasses import replace

from samples import microservice

from flotilla_operator.render import (
    REVISION_LABEL,
    ROUTE_LABEL,
    TRACK_LABEL,
    RenderContext,
    deployment,
    render,
    revision,
    selector_labels,
    service_monitor,
)
from flotilla_operator.routing import ingress_route, route_rule, traefik_service, weighted_route

ROUTED = {"host": "shop.example.com", "paths": ["/orders", "/carts"]}
RELEASING = RenderContext(candidate_replicas=1, candidate_weight=25, weighted_ingress=True)


def test_the_candidate_runs_the_same_revision_in_a_deployment_of_its_own() -> None:
    ms = microservice()
    stable, candidate = deployment(ms, RenderContext()), deployment(ms, RenderContext(), 1, "canary")
    assert candidate["metadata"]["name"] == "orders-canary"
    assert candidate["spec"]["replicas"] == 1
    assert stable["spec"]["selector"]["matchLabels"] == selector_labels("orders")
    assert candidate["spec"]["selector"]["matchLabels"] == {
        **selector_labels("orders"),
        TRACK_LABEL: "canary",
    }
    stable_labels = stable["spec"]["template"]["metadata"]["labels"]
    candidate_labels = candidate["spec"]["template"]["metadata"]["labels"]
    assert stable_labels[REVISION_LABEL] == candidate_labels[REVISION_LABEL] == revision(ms, RenderContext())
    assert (stable_labels[TRACK_LABEL], candidate_labels[TRACK_LABEL]) == ("stable", "canary")
    # Both tracks' pods are the service's: its Service, PDB and NetworkPolicy select them.
    assert selector_labels("orders").items() <= candidate_labels.items()


def test_a_revision_is_what_the_pods_run_and_nothing_else() -> None:
    base = revision(microservice(), RenderContext())
    assert revision(microservice(image="registry.example/orders:1.5.0"), RenderContext()) != base
    assert revision(microservice(env=[{"name": "A", "value": "1"}]), RenderContext()) != base
    assert revision(microservice(), RenderContext(config_hash="abc")) != base
    assert revision(microservice(replicas=7), RenderContext()) == base
    assert revision(microservice(rollout={"strategy": "RollingUpdate"}), RenderContext()) == base


def test_render_adds_the_candidate_only_during_a_release() -> None:
    names = {(m["kind"], m["metadata"]["name"]) for m in render(microservice(), RenderContext())}
    assert ("Deployment", "orders-canary") not in names
    releasing = {(m["kind"], m["metadata"]["name"]) for m in render(microservice(), RELEASING)}
    assert ("Deployment", "orders-canary") in releasing


def test_the_traefik_service_splits_by_weight_and_leaves_out_a_track_without_weight() -> None:
    ms = microservice(ingress=ROUTED)
    split = traefik_service(ms, 25)["spec"]["weighted"]["services"]
    assert [(s["name"], s["weight"], s["port"]) for s in split] == [
        ("orders-stable", 75, 80),
        ("orders-canary", 25, 80),
    ]
    assert [s["name"] for s in traefik_service(ms, 0)["spec"]["weighted"]["services"]] == ["orders-stable"]
    secure = traefik_service(microservice(ingress=ROUTED, tls={"secretName": "orders-tls"}), 10)
    assert {
        (s["scheme"], s["port"], s["serversTransport"]) for s in secure["spec"]["weighted"]["services"]
    } == {("https", 443, "orders")}


def test_the_ingress_route_takes_the_ingress_rules_one_priority_above() -> None:
    route = ingress_route(microservice(ingress={**ROUTED, "tls": {"secretName": "shop-tls"}}))
    rules = [(r["match"], r["priority"]) for r in route["spec"]["routes"]]
    orders = 'Host("shop.example.com") && PathPrefix("/orders")'
    assert rules[0] == (orders, len(orders) + 1)
    docs = 'Host("shop.example.com") && PathPrefix("/docs/orders")'
    assert rules[-1] == (docs, len(docs) + 1)  # the API page follows the release like the API
    assert route["spec"]["routes"][0]["services"] == [{"name": "orders", "kind": "TraefikService"}]
    assert route["spec"]["tls"] == {"secretName": "shop-tls"}
    assert route_rule(None, "/x", "Exact") == 'Path("/x")'


def test_the_weighted_route_needs_a_release_an_ingress_and_traefik() -> None:
    ms = microservice(ingress=ROUTED)
    kinds = [(m["kind"], m["metadata"]["name"]) for m in weighted_route(ms, RELEASING)]
    assert kinds == [
        ("Service", "orders-stable"),
        ("Service", "orders-canary"),
        ("TraefikService", "orders"),
        ("IngressRoute", "orders"),
    ]
    tracks = weighted_route(ms, RELEASING)[:2]
    assert [t["spec"]["selector"][TRACK_LABEL] for t in tracks] == ["stable", "canary"]
    assert [t["metadata"]["labels"][ROUTE_LABEL] for t in tracks] == ["stable", "canary"]
    assert weighted_route(microservice(), RELEASING) == []
    assert weighted_route(ms, replace(RELEASING, weighted_ingress=False)) == []
    assert weighted_route(ms, RenderContext(weighted_ingress=True)) == []


def test_the_service_monitor_scrapes_the_services_own_service_and_keeps_the_revision() -> None:
    monitor = service_monitor(microservice(), RenderContext())
    assert monitor is not None
    assert monitor["spec"]["podTargetLabels"] == [REVISION_LABEL]
    assert monitor["spec"]["selector"]["matchExpressions"] == [
        {"key": ROUTE_LABEL, "operator": "DoesNotExist"}
    ]
