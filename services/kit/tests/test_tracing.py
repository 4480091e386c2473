"""Traces: the request's span continues the caller's trace, calls and SQL nest under it, logs and
exemplars carry its trace ID; sampling is configured by OpenTelemetry's variables."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import pytest
import requests
from flask import Flask
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from sqlalchemy import text

from flotilla_kit import logs
from flotilla_kit.app import create_service_app
from flotilla_kit.context import accept_request_id
from flotilla_kit.db import Database
from flotilla_kit.exemplars import ExemplarStore, bucket_bound, forget_worker, read_all
from flotilla_kit.http_client import ClientPolicy, ServiceClient
from flotilla_kit.metrics import LATENCY_BUCKETS
from flotilla_kit.settings import ConfigError, KitSettings, TracingSettings
from flotilla_kit.testing import captured_spans
from flotilla_kit.tracing import current_switch, service_resource, use

NAME = "tracing-sample"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
OPENMETRICS = "application/openmetrics-text; version=1.0.0"


class Upstream(ThreadingHTTPServer):
    """Records the headers of every request; answers ``{}``."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        super().__init__(("127.0.0.1", 0), _Answer)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Answer(BaseHTTPRequestHandler):
    server: Upstream

    def do_GET(self) -> None:
        self.server.headers.append(dict(self.headers))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    with captured_spans() as exporter:
        yield exporter


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Every JSON log line the process writes while the test runs."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.json_formatter())
    handler.addFilter(logs.ContextFilter(NAME))
    logging.getLogger().addHandler(handler)
    yield stream
    logging.getLogger().removeHandler(handler)


def sample_app(tmp_path: Path, upstream_url: str) -> Flask:
    """A service with a database and a client: one request reads SQL and calls upstream."""
    database = Database()
    monkey_env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'sample.db'}"}
    with pytest.MonkeyPatch.context() as env:
        for name, value in monkey_env.items():
            env.setenv(name, value)
        settings = KitSettings.load(NAME)
    app, _api = create_service_app(settings, title=NAME, version="1.2.3", database=database)
    client = ServiceClient("upstream", upstream_url, policy=ClientPolicy(retries=0))

    @app.get("/work")
    def work() -> dict[str, int]:
        with database.read() as connection:
            answer = connection.execute(text("SELECT 42")).scalar_one()
        client.request("GET", "/things")
        logging.getLogger("sample").info("worked")
        return {"answer": answer}

    return app


def by_name(finished: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in finished}


def test_a_request_continues_the_callers_trace_with_its_call_and_sql_nested_under_it(
    tmp_path: Path, upstream: Upstream, spans: InMemorySpanExporter
) -> None:
    app = sample_app(tmp_path, upstream.url)
    response = app.test_client().get("/work", headers={"traceparent": f"00-{TRACE}-{CALLER_SPAN}-01"})
    assert response.status_code == 200
    finished = by_name(spans.get_finished_spans())

    served = finished["GET /work"]
    assert served.kind == SpanKind.SERVER
    assert format_trace_id(served.context.trace_id) == TRACE
    assert served.parent is not None and format_span_id(served.parent.span_id) == CALLER_SPAN
    sql = next(span for span in finished.values() if span.kind == SpanKind.CLIENT and "SELECT" in span.name)
    assert sql.parent is not None and sql.parent.span_id == served.context.span_id
    call = finished["GET upstream"]
    assert call.parent is not None and call.parent.span_id == served.context.span_id
    attempt = finished["GET"]  # urllib3's span of the one attempt
    assert attempt.kind == SpanKind.CLIENT
    assert attempt.parent is not None and attempt.parent.span_id == call.context.span_id
    # What the upstream saw: the attempt's span as its parent, in the same trace.
    assert upstream.headers[0]["traceparent"] == (f"00-{TRACE}-{format_span_id(attempt.context.span_id)}-01")


def test_the_trace_id_of_every_log_line_is_the_spans(
    tmp_path: Path, upstream: Upstream, spans: InMemorySpanExporter, log_lines: io.StringIO
) -> None:
    app = sample_app(tmp_path, upstream.url)
    app.test_client().get("/work", headers={"X-Request-ID": "rid-traced"})
    served = by_name(spans.get_finished_spans())["GET /work"]
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    mine = [line for line in lines if line.get("request_id") == "rid-traced"]
    assert {line["message"] for line in mine} >= {"worked", "request"}
    assert {line["trace_id"] for line in mine} == {format_trace_id(served.context.trace_id)}
    worked = next(line for line in mine if line["message"] == "worked")
    assert worked["span_id"] == format_span_id(served.context.span_id)


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        f"ff-{TRACE}-{CALLER_SPAN}-01",
        f"00-{'0' * 32}-{CALLER_SPAN}-01",
        f"00-{TRACE}-{'0' * 16}-01",
        f"00-{TRACE[:-1]}-{CALLER_SPAN}-01",
    ],
)
def test_an_invalid_traceparent_starts_a_new_trace(
    tmp_path: Path, upstream: Upstream, spans: InMemorySpanExporter, header: str
) -> None:
    app = sample_app(tmp_path, upstream.url)
    app.test_client().get("/work", headers={"traceparent": header})
    served = by_name(spans.get_finished_spans())["GET /work"]
    assert served.parent is None
    assert format_trace_id(served.context.trace_id) not in {TRACE, "0" * 32}


def test_without_an_exporter_nothing_is_recorded_but_logs_and_calls_keep_the_trace(
    tmp_path: Path, upstream: Upstream, log_lines: io.StringIO
) -> None:
    app = sample_app(tmp_path, upstream.url)
    app.test_client().get(
        "/work", headers={"traceparent": f"00-{TRACE}-{CALLER_SPAN}-01", "X-Request-ID": "rid-off"}
    )
    forwarded = upstream.headers[0]["traceparent"]
    assert forwarded.startswith(f"00-{TRACE}-") and not forwarded.endswith(CALLER_SPAN + "-01")
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    assert {line["trace_id"] for line in lines if line.get("request_id") == "rid-off"} == {TRACE}


def test_probes_and_scrapes_are_not_traced(
    tmp_path: Path, upstream: Upstream, spans: InMemorySpanExporter
) -> None:
    client = sample_app(tmp_path, upstream.url).test_client()
    for path in ("/livez", "/readyz", "/metrics"):
        assert client.get(path).status_code == 200
    assert spans.get_finished_spans() == ()


def test_a_sampled_requests_trace_is_its_latency_buckets_exemplar_in_openmetrics(
    tmp_path: Path, upstream: Upstream, spans: InMemorySpanExporter
) -> None:
    client = sample_app(tmp_path, upstream.url).test_client()
    client.get("/work")
    served = by_name(spans.get_finished_spans())["GET /work"]
    scrape = client.get("/metrics", headers={"Accept": OPENMETRICS})
    assert scrape.content_type.startswith("application/openmetrics-text")
    exemplars = [
        sample.exemplar
        for family in text_string_to_metric_families(scrape.get_data(as_text=True))  # type: ignore[no-untyped-call]
        for sample in family.samples
        if sample.name == "http_request_duration_seconds_bucket"
        and sample.labels.get("route") == "/work"
        and sample.exemplar is not None
    ]
    # Earlier tests' requests keep the buckets this one did not fall in.
    assert format_trace_id(served.context.trace_id) in {exemplar.labels["trace_id"] for exemplar in exemplars}
    classic = client.get("/metrics")
    assert classic.content_type.startswith("text/plain") and b"# {" not in classic.get_data()


def test_the_workers_exemplar_files_merge_into_the_newest_of_each_bucket(tmp_path: Path) -> None:
    labels = {"method": "GET", "route": "/work"}
    earlier = ExemplarStore(tmp_path)
    earlier.record("latency", labels, bucket_bound(0.3, LATENCY_BUCKETS), {"trace_id": "a" * 32}, 0.3)
    earlier.record("latency", labels, bucket_bound(0.001, LATENCY_BUCKETS), {"trace_id": "c" * 32}, 0.001)
    earlier.flush()
    [written] = tmp_path.iterdir()
    written.rename(tmp_path / "exemplars_1.json")  # another worker's file
    later = ExemplarStore(tmp_path)
    later.record("latency", labels, "0.5", {"trace_id": "b" * 32}, 0.4)
    later.flush()

    merged = read_all(tmp_path)
    assert bucket_bound(0.3, LATENCY_BUCKETS) == "0.5" and bucket_bound(99.0, LATENCY_BUCKETS) == "+Inf"
    assert {key: exemplar.labels["trace_id"] for key, exemplar in merged.items()} == {
        ("latency_bucket", (("le", "0.5"), ("method", "GET"), ("route", "/work"))): "b" * 32,
        ("latency_bucket", (("le", "0.001"), ("method", "GET"), ("route", "/work"))): "c" * 32,
    }
    forget_worker(tmp_path, 1)
    assert len(read_all(tmp_path)) == 1


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTEL_TRACES_SAMPLER", "sometimes"),
        ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
        ("OTEL_TRACES_SAMPLER_ARG", "half"),
        ("OTEL_TRACES_EXPORTER", "zipkin"),
    ],
)
def test_a_bad_tracing_variable_is_refused_naming_it(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        TracingSettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", variable: value})


def test_spans_are_exported_only_with_an_endpoint_and_not_when_disabled() -> None:
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}
    assert not TracingSettings.from_env({}).exporting
    assert TracingSettings.from_env(endpoint).exporting
    assert TracingSettings.from_env(
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}
    ).exporting
    assert not TracingSettings.from_env({**endpoint, "OTEL_SDK_DISABLED": "true"}).exporting
    assert not TracingSettings.from_env({**endpoint, "OTEL_TRACES_EXPORTER": "none"}).exporting
    ratio = TracingSettings.from_env(
        {**endpoint, "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
    )
    assert (ratio.sampler_name, ratio.ratio) == ("parentbased_traceidratio", 0.1)


def test_request_ids_are_accepted_only_when_safe() -> None:
    assert accept_request_id("abc-123_x.y:z") == "abc-123_x.y:z"
    for unsafe in ("", "a b", "x" * 129, "new\nline", 'quote"'):
        generated = accept_request_id(unsafe)
        assert generated != unsafe
        assert len(generated) == 32


def test_the_spans_resource_names_the_pod_and_lets_the_environment_name_the_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POD_NAMESPACE", "shop")
    assert service_resource("orders", "1.2.3").attributes["service.name"] == "orders"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "shop-orders")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=staging")
    attributes = service_resource("orders", "1.2.3").attributes
    assert attributes["service.name"] == "shop-orders"
    assert attributes["service.version"] == "1.2.3"
    assert attributes["deployment.environment.name"] == "staging"
    assert attributes["k8s.namespace.name"] == "shop"
    assert attributes["k8s.pod.name"]


def test_work_outside_any_request_starts_no_trace_and_tells_its_callee_so(
    tmp_path: Path, upstream: Upstream, spans: InMemorySpanExporter
) -> None:
    sample_app(tmp_path, upstream.url)  # a service's process: its calls are instrumented
    client = ServiceClient("upstream", upstream.url, policy=ClientPolicy(retries=0))
    client.request("GET", "/revocations")  # as the revocation list's refresh does, every few seconds
    assert [(span.name, span.kind) for span in spans.get_finished_spans()] == []
    flags = int(upstream.headers[0]["traceparent"].rsplit("-", 1)[1], 16)
    assert not flags & 1  # not sampled: the callee records nothing either


def test_a_request_the_sampler_passes_over_records_nothing_yet_keeps_its_trace(
    tmp_path: Path, upstream: Upstream, spans: InMemorySpanExporter, log_lines: io.StringIO
) -> None:
    app = sample_app(tmp_path, upstream.url)
    previous = current_switch()
    use(ParentBased(TraceIdRatioBased(0.0)), previous[1])
    try:
        app.test_client().get("/work", headers={"X-Request-ID": "rid-passed-over"})
    finally:
        use(*previous)
    assert spans.get_finished_spans() == ()  # no request span, no SQL, no call, no attempt
    [line] = [
        json.loads(line)
        for line in log_lines.getvalue().splitlines()
        if '"worked"' in line and "rid-passed-over" in line
    ]
    _version, trace_id, _span, flags = upstream.headers[0]["traceparent"].split("-")
    assert trace_id == line["trace_id"] and int(flags, 16) & 1 == 0


def test_a_ratio_is_applied_once_per_trace_not_again_by_the_instrumented_request(
    tmp_path: Path, upstream: Upstream, spans: InMemorySpanExporter
) -> None:
    client = sample_app(tmp_path, upstream.url).test_client()
    previous = current_switch()
    use(ParentBased(TraceIdRatioBased(0.5)), previous[1])
    try:
        for _ in range(200):
            client.get("/livez")  # untraced: never counted
            client.get("/metrics")
            client.get("/work")
    finally:
        use(*previous)
    served = [span for span in spans.get_finished_spans() if span.name == "GET /work"]
    assert 70 <= len(served) <= 130, len(served)  # 0.5 of 200, not 0.25 (sampled twice)


def test_other_http_calls_of_the_process_keep_the_traceparent_their_caller_set(
    tmp_path: Path, upstream: Upstream, spans: InMemorySpanExporter
) -> None:
    sample_app(tmp_path, upstream.url)  # the kit's tracing set up in this process
    mine = f"00-{TRACE}-{CALLER_SPAN}-01"
    requests.get(f"{upstream.url}/elsewhere", headers={"traceparent": mine}, timeout=5)
    assert upstream.headers[0]["traceparent"] == mine
    assert spans.get_finished_spans() == ()
