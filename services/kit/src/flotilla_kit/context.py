"""Request identity: ``X-Request-ID`` and W3C ``traceparent``, accepted, generated and forwarded."""

from __future__ import annotations

import functools
import re
import secrets
import uuid
from dataclasses import dataclass

from flask import Flask, Response, g, has_request_context, request

REQUEST_ID_HEADER = "X-Request-ID"
TRACEPARENT_HEADER = "traceparent"

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
_CONVERTER = re.compile(r"<(?:[^>]*:)?([^>:]+)>")
UNMATCHED_ROUTE = "unmatched"
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@dataclass(frozen=True)
class TraceContext:
    """The W3C trace context of one request: our span inside the caller's trace."""

    trace_id: str
    span_id: str
    flags: str = "01"

    @classmethod
    def start(cls, header: str | None) -> TraceContext:
        """Continue the caller's trace when its header is valid, else start a new one."""
        parsed = parse_traceparent(header)
        trace_id, flags = parsed if parsed else (secrets.token_hex(16), "01")
        return cls(trace_id=trace_id, span_id=secrets.token_hex(8), flags=flags)

    def child_header(self) -> str:
        """A ``traceparent`` for an outgoing call made inside this span."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


def parse_traceparent(header: str | None) -> tuple[str, str] | None:
    """Return ``(trace_id, flags)`` of a valid version-00 header, else None."""
    if not header:
        return None
    match = _TRACEPARENT.match(header.strip().lower())
    if not match:
        return None
    version, trace_id, parent_id, flags = match.groups()
    if version == "ff" or set(trace_id) == {"0"} or set(parent_id) == {"0"}:
        return None
    return trace_id, flags


def accept_request_id(header: str | None) -> str:
    """The caller's request ID when it is safe to log and echo, else a new one."""
    if header and _REQUEST_ID.match(header):
        return header
    return uuid.uuid4().hex


def route_template() -> str:
    """The matched route as an OpenAPI path (``/products/{product_id}``); bounded for labels."""
    if request.url_rule is None:
        return UNMATCHED_ROUTE
    return _openapi_path(request.url_rule.rule)


@functools.lru_cache(maxsize=1024)
def _openapi_path(rule: str) -> str:
    return _CONVERTER.sub(r"{\1}", rule)


def current_request_id() -> str | None:
    """The request ID of the request being served, if any."""
    if has_request_context():
        request_id: str | None = g.get("request_id")
        return request_id
    return None


def current_trace() -> TraceContext | None:
    """The trace context of the request being served, if any."""
    if has_request_context():
        trace: TraceContext | None = g.get("trace")
        return trace
    return None


def propagation_headers() -> dict[str, str]:
    """Headers that carry this request's identity onto an outgoing call."""
    headers: dict[str, str] = {}
    request_id = current_request_id()
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    trace = current_trace()
    if trace:
        headers[TRACEPARENT_HEADER] = trace.child_header()
    return headers


def init_app(app: Flask) -> None:
    """Give every request an ID and a trace context, and echo the ID."""

    @app.before_request
    def _identify() -> None:
        g.request_id = accept_request_id(request.headers.get(REQUEST_ID_HEADER))
        g.trace = TraceContext.start(request.headers.get(TRACEPARENT_HEADER))

    @app.after_request
    def _echo(response: Response) -> Response:
        request_id = current_request_id()
        if request_id:
            response.headers[REQUEST_ID_HEADER] = request_id
        return response
