"""RFC 9457 ``application/problem+json`` responses for every error path."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, json
from werkzeug.exceptions import HTTPException, InternalServerError

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://flotilla.dev/problems/"

log = logging.getLogger("flotilla.errors")


class Problem(Exception):
    """A domain error that becomes a problem response (raise it from any view)."""

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        *,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.type = PROBLEM_TYPE_BASE + slug
        self.title = title or HTTPStatus(status).phrase
        self.detail = detail
        self.headers = dict(headers or {})
        self.extensions = extensions

    def body(self) -> dict[str, Any]:
        """The JSON members of this problem."""
        return {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extensions,
        }


def problem_response(
    status: int,
    body: Mapping[str, Any],
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A response carrying a problem document."""
    response = Response(json.dumps(dict(body)), status=status, content_type=PROBLEM_CONTENT_TYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def field_errors(messages: Any, location: str | None = None, prefix: str = "") -> Iterator[dict[str, str]]:
    """Flatten webargs/marshmallow messages into ``{field, location, message}`` items."""
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            if (
                location is None
                and prefix == ""
                and key in {"json", "query", "form", "headers", "view_args", "files", "cookies"}
            ):
                yield from field_errors(value, str(key), "")
                continue
            name = f"{prefix}.{key}" if prefix else str(key)
            yield from field_errors(value, location, name)
    elif isinstance(messages, (list, tuple)) and messages and all(isinstance(m, str) for m in messages):
        for message in messages:
            yield {"field": prefix or "(body)", "location": location or "json", "message": message}
    elif isinstance(messages, (list, tuple)):
        for item in messages:
            yield from field_errors(item, location, prefix)
    elif messages is not None:
        yield {"field": prefix or "(body)", "location": location or "json", "message": str(messages)}


def http_exception_problem(error: HTTPException) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, body and headers of the problem for a werkzeug/flask-smorest HTTP error."""
    status = error.code or 500
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": error.description or HTTPStatus(status).description,
    }
    headers = {
        name: value
        for name, value in error.get_headers()
        if name.lower() not in {"content-type", "content-length"}
    }
    data = getattr(error, "data", None) or {}
    messages = data.get("errors") or data.get("messages")
    if messages:
        body["type"] = PROBLEM_TYPE_BASE + "validation"
        body["title"] = "Request validation failed"
        body["errors"] = list(field_errors(messages))
        body["detail"] = "; ".join(f"{e['field']}: {e['message']}" for e in body["errors"])
    elif data.get("message"):
        body["detail"] = data["message"]
    headers.update(data.get("headers") or {})
    return status, body, headers


def init_app(app: Flask) -> None:
    """Answer every error, expected or not, with a problem document."""

    @app.errorhandler(Problem)
    def _problem(error: Problem) -> Response:
        return problem_response(error.status, error.body(), error.headers)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        if isinstance(error, InternalServerError) and error.original_exception is not None:
            return _unexpected(error.original_exception)
        status, body, headers = http_exception_problem(error)
        return problem_response(status, body, headers)

    @app.errorhandler(Exception)
    def _unexpected(error: BaseException) -> Response:
        if isinstance(error, HTTPException):
            return _http_error(error)
        return internal_error_response(error)


def internal_error_response(error: BaseException) -> Response:
    """Log an unexpected error with its traceback and answer a 500 problem that reveals nothing."""
    log.exception("unhandled error", exc_info=error)
    return problem_response(
        500,
        {
            "type": "about:blank",
            "title": "Internal Server Error",
            "status": 500,
            "detail": "The server could not complete the request; it has been logged.",
        },
    )
