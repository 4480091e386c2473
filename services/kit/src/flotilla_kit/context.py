"""Request identity: ``X-Request-ID``, accepted, generated and forwarded.

The W3C ``traceparent`` is OpenTelemetry's to accept and forward (``flotilla_kit.tracing``).
"""

from __future__ import annotations

import functools
import re
import uuid

from flask import Flask, Response, g, has_request_context, request

REQUEST_ID_HEADER = "X-Request-ID"

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
_CONVERTER = re.compile(r"<(?:[^>]*:)?([^>:]+)>")
UNMATCHED_ROUTE = "unmatched"


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


def propagation_headers() -> dict[str, str]:
    """Headers that carry this request's identity onto an outgoing call."""
    headers: dict[str, str] = {}
    request_id = current_request_id()
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    return headers


def init_app(app: Flask) -> None:
    """Give every request an ID and echo it (its trace context is OpenTelemetry's: ``tracing``)."""

    @app.before_request
    def _identify() -> None:
        g.request_id = accept_request_id(request.headers.get(REQUEST_ID_HEADER))

    @app.after_request
    def _echo(response: Response) -> Response:
        request_id = current_request_id()
        if request_id:
            response.headers[REQUEST_ID_HEADER] = request_id
        return response
