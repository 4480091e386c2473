"""Request IDs and W3C trace context."""

from __future__ import annotations

from flask import Flask

from flotilla_kit.context import (
    TraceContext,
    accept_request_id,
    parse_traceparent,
    propagation_headers,
)
from flotilla_kit.context import init_app as init_context

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_a_valid_traceparent_is_continued_with_a_new_span() -> None:
    trace = TraceContext.start(f"00-{TRACE}-00f067aa0ba902b7-01")
    assert trace.trace_id == TRACE
    assert trace.span_id != "00f067aa0ba902b7"
    assert trace.child_header() == f"00-{TRACE}-{trace.span_id}-01"


def test_invalid_traceparents_start_a_new_trace() -> None:
    for header in (
        None,
        "",
        "garbage",
        f"ff-{TRACE}-00f067aa0ba902b7-01",
        f"00-{'0' * 32}-00f067aa0ba902b7-01",
        f"00-{TRACE}-{'0' * 16}-01",
        f"00-{TRACE[:-1]}-00f067aa0ba902b7-01",
    ):
        assert parse_traceparent(header) is None
        assert len(TraceContext.start(header).trace_id) == 32


def test_request_ids_are_accepted_only_when_safe() -> None:
    assert accept_request_id("abc-123_x.y:z") == "abc-123_x.y:z"
    for unsafe in ("", "a b", "x" * 129, "new\nline", 'quote"'):
        generated = accept_request_id(unsafe)
        assert generated != unsafe
        assert len(generated) == 32


def test_outgoing_calls_carry_the_request_id_and_a_child_traceparent() -> None:
    app = Flask("context-test")
    init_context(app)
    seen: dict[str, str] = {}

    @app.get("/")
    def view() -> str:
        seen.update(propagation_headers())
        return "ok"

    response = app.test_client().get(
        "/", headers={"X-Request-ID": "rid-1", "traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}
    )
    assert response.headers["X-Request-ID"] == "rid-1"
    assert seen["X-Request-ID"] == "rid-1"
    assert seen["traceparent"].startswith(f"00-{TRACE}-")
    assert propagation_headers() == {}
