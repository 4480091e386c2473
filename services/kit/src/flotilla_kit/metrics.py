"""Prometheus metrics, correct under several gunicorn workers (multiprocess mode)."""

from __future__ import annotations

import os
import time

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from flotilla_kit.context import route_template
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


def exposition() -> bytes:
    """All metrics in the text format, merged across workers when multiprocess."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


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
        HTTP_LATENCY.labels(request.method, route_template()).observe(time.perf_counter() - started)

    @app.after_request
    def _count(response: Response) -> Response:
        HTTP_REQUESTS.labels(request.method, route_template(), str(response.status_code)).inc()
        return response

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(exposition(), content_type=CONTENT_TYPE_LATEST)
