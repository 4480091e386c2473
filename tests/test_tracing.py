"""Traces end to end on loopback: the three services export to a real Jaeger (the pinned v2 binary),
an order's trace is read back whole, logs carry its IDs, and a slow request's exemplar in a real
Prometheus leads to its trace."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.jaeger import JaegerServer, read_trace, traces_of
from tests.support.order_trace import check_order_trace
from tests.support.platform import Platform, start_platform
from tests.support.prometheus import PrometheusServer, ScrapeJob


@pytest.fixture(scope="module")
def jaeger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JaegerServer]:
    server = JaegerServer(tmp_path_factory.mktemp("jaeger")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory, jaeger: JaegerServer) -> Iterator[Platform]:
    """The three services, every span sampled and exported to Jaeger."""
    platform = start_platform(
        tmp_path_factory.mktemp("traced-logs"),
        tmp_path_factory.mktemp("traced-keys"),
        instance="traced",
        env=jaeger.otel_env(),
    )
    yield platform
    platform.stop()


def traceparent() -> tuple[str, str, str]:
    """A sampled ``traceparent`` of a caller's span: the header, its trace ID and its span ID."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def place_order(platform: Platform) -> tuple[str, str, requests.Response]:
    """One order of a new product, inside a trace the test starts."""
    product = platform.create_product(stock=5)
    token = platform.customer_token()
    header, trace_id, span_id = traceparent()
    response = platform.order(
        token, [{"product_id": product["id"], "quantity": 1}], headers={"traceparent": header}
    )
    assert response.status_code == 201, response.text
    return trace_id, span_id, response


def test_an_orders_whole_trace_is_read_back_from_jaeger(traced: Platform, jaeger: JaegerServer) -> None:
    trace_id, caller_span, _response = place_order(traced)
    spans = read_trace(jaeger.query_url, trace_id)
    check_order_trace(spans, caller_span)


def test_every_log_line_of_the_order_carries_its_spans_ids(traced: Platform, jaeger: JaegerServer) -> None:
    trace_id, _caller, response = place_order(traced)
    request_id = response.headers["X-Request-ID"]
    spans = read_trace(jaeger.query_url, trace_id)
    by_id = {span.span_id: span for span in spans}
    for service in traced.services():
        lines = [json.loads(line) for line in service.log_lines() if request_id in line]
        lines = [line for line in lines if line.get("request_id") == request_id]
        if service.name == "users":
            continue  # the token may be cached: users may not see this request at all
        assert lines, f"{service.name} logged nothing for {request_id}"
        for line in lines:
            assert line["trace_id"] == trace_id, line
            assert by_id[line["span_id"]].service == service.name, line


def test_a_slow_requests_exemplar_in_prometheus_leads_to_its_trace(
    traced: Platform, jaeger: JaegerServer, tmp_path: Path
) -> None:
    prometheus = PrometheusServer(
        tmp_path,
        [ScrapeJob(service.name, [service.url.removeprefix("http://")]) for service in traced.services()],
        [],
        exemplars=True,
    ).start()
    try:
        prometheus.wait_for_scrapes()
        for _ in range(5):
            requests.get(f"{traced.catalog.url}/products", timeout=10).raise_for_status()
        traced.register()  # argon2: the slow request, a quarter of a second or more
        exemplars = wait_for_exemplars(
            prometheus, 'http_request_duration_seconds_bucket{job="users", route="/users/register"}'
        )
    finally:
        prometheus.stop()
    slowest = max(exemplars, key=lambda exemplar: float(exemplar["value"]))
    spans = read_trace(jaeger.query_url, slowest["labels"]["trace_id"])
    [served] = [span for span in spans if span.parent_id is None]
    assert (served.service, served.name) == ("users", "POST /users/register")
    assert abs(served.duration_ms / 1000 - float(slowest["value"])) < 0.05, (served, slowest)


def wait_for_exemplars(
    prometheus: PrometheusServer, selector: str, timeout: float = 30
) -> list[dict[str, Any]]:
    """The exemplars of ``selector`` Prometheus has stored, once it has any."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [exemplar for series in prometheus.exemplars(selector) for exemplar in series["exemplars"]]
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"no exemplar of {selector} within {timeout:.0f}s")


def test_each_gunicorn_worker_exports_its_own_spans(traced: Platform, jaeger: JaegerServer) -> None:
    catalog = traced.catalog
    assert catalog.process is not None
    workers = catalog.pids() - {catalog.process.pid}
    assert len(workers) == 2
    for _ in range(40):  # a new connection each: the kernel spreads them over the workers' sockets
        requests.get(f"{catalog.url}/products", timeout=10).raise_for_status()
    deadline = time.monotonic() + 30
    senders: set[int] = set()
    while time.monotonic() < deadline and senders != workers:
        traces = traces_of(jaeger.query_url, "catalog")
        senders = {
            int(span.process["process.pid"])
            for trace in traces
            for span in trace
            if span.service == "catalog"
        }
        time.sleep(0.5)
    assert senders == workers, f"spans came from {senders}, the workers are {workers}"
