"""The OpenAPI-described API: flask-smorest wired to problem responses and body checks."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import marshmallow as ma
from flask import Flask, request
from flask_smorest import Api as SmorestApi
from flask_smorest import Blueprint as SmorestBlueprint
from werkzeug.exceptions import UnsupportedMediaType

from flotilla_kit import auth
from flotilla_kit.problems import PROBLEM_CONTENT_TYPE

F = TypeVar("F", bound=Callable[..., Any])

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
BEARER = "bearerAuth"
_ACCEPTS_ATTRIBUTE = "_flotilla_accepts"
_BODY_METHODS = {"POST", "PUT", "PATCH"}


class FieldErrorSchema(ma.Schema):
    """One invalid field of a request."""

    field = ma.fields.String(required=True, metadata={"description": "Dotted path of the field"})
    location = ma.fields.String(required=True, metadata={"description": "json, query, form..."})
    message = ma.fields.String(required=True)


class ProblemSchema(ma.Schema):
    """RFC 9457 problem details (extension members allowed)."""

    class Meta:
        unknown = ma.INCLUDE

    type = ma.fields.String(required=True)
    title = ma.fields.String(required=True)
    status = ma.fields.Integer(required=True)
    detail = ma.fields.String(required=True)
    errors = ma.fields.List(ma.fields.Nested(FieldErrorSchema))


class Api(SmorestApi):  # type: ignore[misc]
    """flask-smorest's Api, documenting and answering errors as problem+json."""

    ERROR_SCHEMA = ProblemSchema

    def _register_error_handlers(self) -> None:
        # flotilla_kit.problems owns error handling for the whole app.
        return None

    def _register_responses(self) -> None:
        super()._register_responses()
        for name, response in list(self.spec.components.responses_lazy.items()):
            content = response.get("content", {})
            if JSON in content:
                response["content"] = {PROBLEM_CONTENT_TYPE: content[JSON]}
            self.spec.components.responses_lazy[name] = response


class Blueprint(SmorestBlueprint):  # type: ignore[misc]
    """A flask-smorest Blueprint that also declares accepted body types and auth docs."""

    def accepts(self, *content_types: str) -> Callable[[F], F]:
        """Declare the request body media types a view takes (JSON when not declared)."""

        def decorator(func: F) -> F:
            setattr(func, _ACCEPTS_ATTRIBUTE, frozenset(content_types))
            return func

        return decorator

    def requires(self, *, roles: Iterable[str] = (), scopes: Iterable[str] = ()) -> Callable[[F], F]:
        """Guard a view with a bearer token (and roles/scopes) and document it."""
        roles, scopes = tuple(roles), tuple(scopes)

        def decorator(func: F) -> F:
            func = auth.require(roles=roles, scopes=scopes)(func)
            func = self.doc(security=[{BEARER: []}])(func)
            func = self.alt_response(401, description="Missing or invalid bearer token")(func)
            if roles or scopes:
                func = self.alt_response(403, description="The token lacks a role or scope")(func)
            return func

        return decorator


def _has_body() -> bool:
    return bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def init_app(app: Flask, *, title: str, version: str, description: str = "") -> Api:
    """Create the service's Api, served as ``/openapi.json``, with a 415 check on bodies."""
    app.config.setdefault("API_TITLE", title)
    app.config.setdefault("API_VERSION", version)
    app.config.setdefault("OPENAPI_VERSION", "3.0.3")
    app.config.setdefault("OPENAPI_URL_PREFIX", "/")
    app.config.setdefault("OPENAPI_JSON_PATH", "openapi.json")
    app.config.setdefault(
        "API_SPEC_OPTIONS",
        {
            "info": {"description": description},
            "components": {
                "securitySchemes": {BEARER: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
            },
        },
    )
    api = Api(app)

    @app.before_request
    def _check_body_media_type() -> None:
        if request.method not in _BODY_METHODS or not _has_body():
            return
        view = app.view_functions.get(request.endpoint or "")
        # MethodView classes keep the declaration on the method (post, patch...).
        view_class = getattr(view, "view_class", None)
        if view_class is not None:
            view = getattr(view_class, request.method.lower(), view)
        accepted: Iterable[str] = getattr(view, _ACCEPTS_ATTRIBUTE, frozenset({JSON}))
        if request.mimetype not in accepted:
            raise UnsupportedMediaType(
                f"Content-Type {request.mimetype or '(none)'!r} is not supported here; "
                f"send {' or '.join(sorted(accepted))}."
            )

    return api
