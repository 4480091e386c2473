"""Traces with OpenTelemetry: requests served, outgoing calls and SQL, exported over OTLP.

Configuration is OpenTelemetry's own (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_TRACES_SAMPLER``,
``OTEL_TRACES_SAMPLER_ARG``, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_BSP_*``...).
Without an endpoint nothing is recorded or exported, but every request still gets a trace ID (the
caller's when it sent a ``traceparent``) for its logs and its outgoing calls.

One tracer provider serves the whole process: gunicorn builds the app in each worker, after the
fork, so each worker starts its own exporter thread.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from urllib.parse import urlsplit

from flask import Flask
from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.propagate import inject
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.util.types import Attributes
from sqlalchemy import Engine

from flotilla_kit import sampling_gate
from flotilla_kit.settings import TracingSettings

INSTRUMENTATION = "flotilla_kit"
# Probes and scrapes: every few seconds from the kubelet and Prometheus, never worth a trace.
UNTRACED_PATHS = ("livez", "readyz", "metrics")

# Traces start where work comes in: a request served (or a message consumed).
_TRACE_STARTERS = {SpanKind.SERVER, SpanKind.CONSUMER}
# OpenTelemetry's standard samplers, by their OTEL_TRACES_SAMPLER names.
_SAMPLERS: dict[str, Callable[[float], Sampler]] = {
    "always_on": lambda _ratio: ALWAYS_ON,
    "always_off": lambda _ratio: ALWAYS_OFF,
    "traceidratio": TraceIdRatioBased,
    "parentbased_always_on": lambda _ratio: ParentBased(ALWAYS_ON),
    "parentbased_always_off": lambda _ratio: ParentBased(ALWAYS_OFF),
    "parentbased_traceidratio": lambda ratio: ParentBased(TraceIdRatioBased(ratio)),
}


def sampler(settings: TracingSettings) -> Sampler:
    """The sampler of the spans; nothing is sampled when nothing is exported."""
    if not settings.exporting:
        return ALWAYS_OFF
    return _SAMPLERS[settings.sampler_name](settings.ratio)


class _Switch(SpanProcessor, Sampler):
    """The process's one sampler and span processor, replaceable after the provider is set.

    OpenTelemetry lets a process set its tracer provider once; the kit (and its tests) configure
    sampling and export per app through this switch instead.
    """

    def __init__(self) -> None:
        self.sampler: Sampler = ALWAYS_OFF
        self.processor: SpanProcessor | None = None

    def should_sample(
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        if (
            kind not in _TRACE_STARTERS
            and not trace.get_current_span(parent_context).get_span_context().is_valid
        ):
            # SQL or a call outside any request (a readiness ping, the revocation list's refresh
            # every few seconds): no trace of its own, or they would bury the requests. Dropped,
            # it still has IDs: the callee learns (flags 00) not to record its side either.
            return SamplingResult(Decision.DROP)
        return self.sampler.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"Flotilla({self.sampler.get_description()})"

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        if self.processor is not None:
            self.processor.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if self.processor is not None:
            self.processor.on_end(span)

    def shutdown(self) -> None:
        if self.processor is not None:
            self.processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.processor.force_flush(timeout_millis) if self.processor is not None else True


_switch = _Switch()
_lock = threading.Lock()
_provider: TracerProvider | None = None


def service_resource(service: str, version: str) -> Resource:
    """Who sends the spans; OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over these."""
    attributes: dict[str, str | int] = {
        "service.name": service,
        "service.version": version,
        "process.pid": os.getpid(),
    }
    namespace = os.environ.get("POD_NAMESPACE")
    if namespace:
        attributes["k8s.namespace.name"] = namespace
        attributes["k8s.pod.name"] = socket.gethostname()
    # Resource.create lets its arguments win over the environment's: merged again, the other way.
    return Resource.create(attributes).merge(OTELResourceDetector().detect())


def _process_provider(service: str, version: str) -> TracerProvider:
    """The process's tracer provider, made and instrumented once (the first app names it)."""
    global _provider  # noqa: PLW0603 - one provider per process, as OpenTelemetry wants
    with _lock:
        if _provider is None:
            _provider = TracerProvider(
                sampler=_switch,
                resource=service_resource(service, version),
                id_generator=sampling_gate.PendingTraceIds(),
            )
            _provider.add_span_processor(_switch)
            trace.set_tracer_provider(_provider)
        return _provider


def init_app(app: Flask, service: str, version: str, settings: TracingSettings) -> None:
    """Trace every request ``app`` serves (probes and scrapes aside) and what it calls."""
    provider = _process_provider(service, version)
    if settings.exporting:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415

        previous = _switch.processor
        # Reads the OTEL_EXPORTER_OTLP_* variables (endpoint, headers, timeout, certificate).
        use(sampler(settings), BatchSpanProcessor(OTLPSpanExporter()))
        if previous is not None:
            previous.shutdown()
    plain = app.wsgi_app
    FlaskInstrumentor().instrument_app(app, tracer_provider=provider)  # type: ignore[no-untyped-call]
    sampling_gate.only_when_sampled(app, FlaskInstrumentor.__module__)
    app.wsgi_app = sampling_gate.SamplingGate(  # type: ignore[method-assign]
        app.wsgi_app, plain, lambda: _switch.sampler, UNTRACED_PATHS
    )
    sampling_gate.init_app(app)


def use(sampler: Sampler, processor: SpanProcessor | None) -> None:
    """Sample with ``sampler`` and hand the ended spans to ``processor`` from now on."""
    _switch.sampler, _switch.processor = sampler, processor


def current_switch() -> tuple[Sampler, SpanProcessor | None]:
    """The sampler and span processor in use (to put them back after a test)."""
    return _switch.sampler, _switch.processor


def instrument_engine(engine: Engine) -> None:
    """A span for every SQL statement ``engine`` runs, under the request's span."""
    # Per engine: SQLAlchemyInstrumentor().instrument() wraps create_engine once per process.
    # Its connection-usage metric goes nowhere: the kit's Prometheus metrics count the pool.
    unused = metrics.NoOpMeter(INSTRUMENTATION).create_up_down_counter("db.client.connections.usage")
    EngineTracer(tracer(), engine, connections_usage=unused)  # type: ignore[no-untyped-call]


def tracer() -> trace.Tracer:
    """The kit's tracer (the process's provider once an app is built)."""
    return trace.get_tracer(INSTRUMENTATION)


def current_ids() -> tuple[str | None, str | None]:
    """The current span's trace and span IDs in hex, or ``(None, None)`` outside any span."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None, None
    return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)


def sampled_trace_id() -> str | None:
    """The current trace's ID when its spans are recorded (an exemplar can link to it)."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid and context.trace_flags.sampled:
        return trace.format_trace_id(context.trace_id)
    return None


@contextmanager
def client_span(method: str, url: str) -> Iterator[trace.Span]:
    """One attempt of the service client: a CLIENT span as OpenTelemetry's HTTP conventions name it.

    No answer (an exception) makes it an error; ``answered`` records the answer.

    Hand-written: urllib3's instrumentation patches every urllib3 call of the process and puts
    its own ``traceparent`` on each, over one the caller set (a test's, a CLI's requests).
    """
    if not is_instrumentation_enabled():
        yield trace.get_current_span()
        return
    parts = urlsplit(url)
    attributes: dict[str, str | int] = {
        "http.request.method": method,
        "url.full": url,
        "server.address": parts.hostname or "",
        "server.port": parts.port or (443 if parts.scheme == "https" else 80),
    }
    with tracer().start_as_current_span(method, kind=SpanKind.CLIENT, attributes=attributes) as current:
        yield current


def answered(current: trace.Span, status: int) -> None:
    """The answer's status on an attempt's span; a 5xx makes it an error (a 4xx is the caller's)."""
    current.set_attribute("http.response.status_code", status)
    if status >= 500:
        current.set_status(Status(StatusCode.ERROR))


def traceparent_of(current: trace.Span) -> dict[str, str]:
    """The W3C headers that make ``current`` the callee's parent."""
    headers: dict[str, str] = {}
    inject(headers, context=trace.set_span_in_context(current))
    return headers


@contextmanager
def span(name: str, **attributes: str | int | float | bool) -> Iterator[trace.Span]:
    """A span of the kit's own (a token fetch, a logical call and its retries).

    None in a request the sampler passed over: the current (non-recording) span stands in.
    """
    if not is_instrumentation_enabled():
        yield trace.get_current_span()
        return
    with tracer().start_as_current_span(name, attributes=attributes) as current:
        yield current
