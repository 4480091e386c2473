"""Prometheus metrics, correct under several gunicorn workers (multiprocess mode)."""

from __future__ import annotations

import os
import time

from flask import Flask, Response, g, request
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
)
from prometheus_client.exposition import choose_encoder

from flotilla_kit import tracing
from flotilla_kit.context import route_template
from flotilla_kit.exemplars import ExemplarStore, WithExemplars, bucket_bound
from flotilla_kit.version import kit_version

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Millisecond steps up to 5 ms, where a read and a loopback hop between services fall: a quantile
# is interpolated inside its bucket, so with one bucket from 2.5 to 5 ms a hop of 2.6 ms and one of
# 4.9 ms looked alike. The alert rules' bounds (0.5 s, 2.5 s) stay.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests served, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time spent serving HTTP requests, by method and route template.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
KIT_INFO = Gauge(
    "flotilla_kit_info",
    "The Flotilla kit this service runs on (always 1): the operator reports its version.",
    ["version"],
    multiprocess_mode="max",
)
HTTP_IN_FLIGHT = Gauge(
    "http_requests_in_flight",
    "HTTP requests being served now.",
    multiprocess_mode="livesum",
)


def exposition(accept: str | None = None) -> tuple[bytes, str]:
    """All metrics, merged across workers when multiprocess, in the format ``accept`` prefers.

    OpenMetrics (what Prometheus asks for) carries the latency buckets' exemplars; the classic
    text format cannot.
    """
    encode, content_type = choose_encoder(accept or "")
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory:
        return encode(REGISTRY), content_type
    registry = CollectorRegistry()
    registry.register(WithExemplars(multiprocess.MultiProcessCollector(None), directory))  # type: ignore[no-untyped-call]
    return encode(registry), content_type


def _exemplar_store() -> ExemplarStore | None:
    directory = os.environ.get(MULTIPROC_ENV)
    return ExemplarStore(directory) if directory else None


def observe_latency(method: str, route: str, seconds: float) -> None:
    """Time one request; a sampled trace becomes its bucket's exemplar."""
    histogram = HTTP_LATENCY.labels(method, route)
    trace_id = tracing.sampled_trace_id()
    if trace_id is None:
        histogram.observe(seconds)
        return
    exemplar = {"trace_id": trace_id}
    histogram.observe(seconds, exemplar)  # kept by prometheus_client in a single process
    if _EXEMPLARS is not None:
        le = bucket_bound(seconds, LATENCY_BUCKETS)
        _EXEMPLARS.record(HTTP_LATENCY._name, {"method": method, "route": route}, le, exemplar, seconds)


_EXEMPLARS = _exemplar_store()


def init_app(app: Flask) -> None:
    """Count and time every request and serve ``/metrics``."""
    KIT_INFO.labels(kit_version()).set(1)

    @app.before_request
    def _start() -> None:
        g.metrics_started = time.perf_counter()
        HTTP_IN_FLIGHT.inc()

    @app.teardown_request
    def _finish(_error: BaseException | None) -> None:
        started = g.pop("metrics_started", None)
        if started is None:
            return
        HTTP_IN_FLIGHT.dec()
        observe_latency(request.method, route_template(), time.perf_counter() - started)

    @app.after_request
    def _count(response: Response) -> Response:
        HTTP_REQUESTS.labels(request.method, route_template(), str(response.status_code)).inc()
        return response

    @app.get("/metrics")
    def metrics() -> Response:
        body, content_type = exposition(request.headers.get("Accept"))
        return Response(body, content_type=content_type)
