"""Traces on the real node: an order placed through the ingress is read back whole from the
chart's Jaeger, and the node's Prometheus leads from a latency exemplar to its trace."""

from __future__ import annotations

import secrets
import time
from typing import Any

import requests
from kubernetes import client

from tests.support.jaeger import read_trace
from tests.support.node import Platform
from tests.support.order_trace import check_order_trace
from tests.support.prometheus import node_prometheus_url


def place_traced_order(platform: Platform) -> tuple[str, str]:
    """An order through the ingress inside a trace the test starts: its trace and span IDs."""
    customer = platform.customer_token()
    product_id = platform.create_product(stock=5)
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    order = platform.request(
        "POST",
        "/orders",
        json={"items": [{"product_id": product_id, "quantity": 1}]},
        headers={
            "Authorization": f"Bearer {customer}",
            "Idempotency-Key": f"trace-{time.time_ns()}",
            "traceparent": f"00-{trace_id}-{span_id}-01",
        },
    )
    assert order.status_code == 201, order.text
    return trace_id, span_id


def test_an_order_through_the_ingress_is_traced_whole_in_jaeger(platform: Platform, jaeger: str) -> None:
    trace_id, caller_span = place_traced_order(platform)
    spans = read_trace(jaeger, trace_id)
    check_order_trace(spans, caller_span)

    pods = client.CoreV1Api(platform.kube).list_namespaced_pod(platform.namespace).items
    pod_names = {pod.metadata.name: pod.metadata.labels.get("app.kubernetes.io/name") for pod in pods}
    for span in spans:
        assert span.process["k8s.namespace.name"] == platform.namespace, span
        assert pod_names.get(span.process["k8s.pod.name"]) == span.service, span


def test_a_latency_exemplar_in_the_nodes_prometheus_leads_to_its_trace(
    platform: Platform, jaeger: str
) -> None:
    trace_id, _caller = place_traced_order(platform)
    labels = f'namespace="{platform.namespace}", job="orders", route="/orders"'
    selector = f"http_request_duration_seconds_bucket{{{labels}}}"
    deadline = time.monotonic() + 60
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not found:
        found = [e for e in exemplars(node_prometheus_url(), selector) if e["labels"]["trace_id"] == trace_id]
        time.sleep(1)
    assert found, f"no exemplar of {selector} names trace {trace_id} within 60s"
    spans = read_trace(jaeger, found[0]["labels"]["trace_id"])
    root = next(span for span in spans if span.name == "POST /orders")
    assert abs(root.duration_ms / 1000 - float(found[0]["value"])) < 0.05, (root, found[0])


def exemplars(prometheus: str, selector: str) -> list[dict[str, Any]]:
    """The exemplars Prometheus stored for ``selector`` in the last ten minutes."""
    now = time.time()
    response = requests.get(
        f"{prometheus}/api/v1/query_exemplars",
        params={"query": selector, "start": str(now - 600), "end": str(now)},
        timeout=10,
    )
    response.raise_for_status()
    return [exemplar for series in response.json()["data"] for exemplar in series["exemplars"]]
