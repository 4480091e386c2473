"""The OpenAPI-described API: flask-smorest wired to problem responses and body checks.

Rules every service's API follows, enforced here and documented in its ``/openapi.json``:
no string may hold a NUL character or an unpaired surrogate (PostgreSQL text cannot store them),
unknown query parameters are refused like unknown body fields, and every error response is a
problem document.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import marshmallow as ma
from apispec import BasePlugin
from apispec.ext.marshmallow.common import resolve_schema_cls
from flask import Flask, request
from flask_smorest import Api as SmorestApi
from flask_smorest import Blueprint as SmorestBlueprint
from flask_smorest.spec.plugins import unicodeconverter2paramschema
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import UnsupportedMediaType
from werkzeug.routing import Map, UnicodeConverter

from flotilla_kit import auth
from flotilla_kit.problems import PROBLEM_CONTENT_TYPE

F = TypeVar("F", bound=Callable[..., Any])

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
BEARER = "bearerAuth"
_ACCEPTS_ATTRIBUTE = "_flotilla_accepts"
_BODY_METHODS = {"POST", "PUT", "PATCH"}
NUL = "\x00"
NO_NUL = "^[^\\u0000]*$"
"""The documented ``pattern`` of every string without a stricter one."""
NO_NUL_MESSAGE = "Must not contain NUL characters."
NOT_UNICODE_MESSAGE = "Must not contain an unpaired surrogate."


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


def _text_error(text: str) -> str | None:
    if NUL in text:
        return NO_NUL_MESSAGE
    try:
        text.encode()
    except UnicodeEncodeError:
        return NOT_UNICODE_MESSAGE
    return None


def text_errors(data: Any) -> Any:
    """Messages for each string in ``data`` that cannot be stored, keyed like marshmallow's, or None."""
    if isinstance(data, str):
        error = _text_error(data)
        return [error] if error else None
    if isinstance(data, Mapping):
        items: Iterable[tuple[Any, Any]] = data.items()
    elif isinstance(data, (list, tuple)):
        items = enumerate(data)
    else:
        return None
    found = {key: errors for key, value in items if (errors := text_errors(value))}
    return found or None


class Parser(FlaskParser):
    """webargs' Flask parser with the API's rules on strings and unknown query parameters."""

    # None: the schema's own ``unknown`` (RAISE unless it says otherwise), as for bodies.
    DEFAULT_UNKNOWN_BY_LOCATION = {
        **FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION,
        "query": None,
        "querystring": None,
    }

    def pre_load(self, location_data: Any, *, schema: ma.Schema, req: Any, location: str) -> Any:
        checked = location_data
        if isinstance(location_data, Mapping):
            # Only what the schema loads: an unknown field is refused anyway, or ignored where the
            # schema says so (RFC 6749 token requests), and then so is whatever it holds.
            names = (field.data_key or name for name, field in schema.load_fields.items())
            checked = {
                name: value
                for name in names
                if (value := location_data.get(name, ma.missing)) is not ma.missing
            }
        errors = text_errors(checked)
        if errors:
            raise ma.ValidationError(errors)
        return location_data


class TextConverter(UnicodeConverter):
    """The ``string`` path converter, also refusing NUL: such a path matches no route (404)."""

    def __init__(
        self, url_map: Map, minlength: int = 1, maxlength: int | None = None, length: int | None = None
    ) -> None:
        super().__init__(url_map, minlength, maxlength, length)
        self.regex = self.regex.replace("[^/]", "[^/\\x00]", 1)


def _text_parameter_schema(converter: TextConverter) -> dict[str, Any]:
    return {**unicodeconverter2paramschema(converter), "pattern": "^[^/\\u0000]*$"}


def _no_nul_pattern(
    _converter: Any, field: ma.fields.Field[Any], ret: dict[str, Any], **_kwargs: Any
) -> dict[str, Any]:
    """Document ``NO_NUL`` on a string field without a pattern or enum (an apispec attribute function)."""
    if isinstance(field, ma.fields.String) and not {"pattern", "enum"} & set(ret):
        return {"pattern": NO_NUL}
    return {}


class SchemaKeywords(BasePlugin):
    """Documents the JSON Schema keywords a marshmallow schema lists in ``Meta.json_schema``.

    For rules of a whole body that fields cannot express, such as ``minProperties``.
    """

    def schema_helper(self, name: str, definition: dict[str, Any], **kwargs: Any) -> dict[str, Any] | None:
        schema = kwargs.get("schema")
        if schema is None:
            return None
        meta = getattr(resolve_schema_cls(schema), "Meta", None)
        keywords: dict[str, Any] = dict(getattr(meta, "json_schema", None) or {})
        return keywords


def _snake(name: str) -> str:
    """``ProductById`` -> ``product_by_id``; ``register`` stays."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


class OperationIds(BasePlugin):
    """Gives each operation an ``operationId`` and each public one an explicit ``security: []``.

    The id is the method and the view, ``get_product_by_id`` (a view's ``@blp.doc(operationId=...)``
    wins): generated clients name their functions after it, so a clash is refused at start.
    """

    def __init__(self) -> None:
        self.owners: dict[str, str] = {}

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        rule = kwargs.get("rule")
        view = _snake(rule.endpoint.rsplit(".", 1)[-1]) if rule is not None else _snake(path or "")
        for method, operation in (operations or {}).items():
            operation_id = operation.setdefault("operationId", f"{method}_{view}")
            # No global requirement is declared: [] says in so many words that no token is needed.
            operation.setdefault("security", [])
            where = f"{method.upper()} {path}"
            owner = self.owners.setdefault(operation_id, where)
            if owner != where:
                raise ValueError(f"operationId {operation_id!r} of {where} is already {owner}'s")


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
            if name == "UNPROCESSABLE_ENTITY":
                response["description"] = (
                    "The request is invalid: each bad field or parameter is named in `errors`. "
                    "Unknown body fields and unknown query parameters are refused, and so are "
                    "a NUL character and an unpaired surrogate in any string."
                )
            self.spec.components.responses_lazy[name] = response


_CHALLENGE_HEADERS = {
    "WWW-Authenticate": {
        "description": "The RFC 6750 bearer challenge",
        "required": True,
        "schema": {"type": "string", "pattern": "^Bearer "},
    }
}


class Blueprint(SmorestBlueprint):  # type: ignore[misc]
    """A flask-smorest Blueprint that also declares accepted body types and auth docs."""

    ARGUMENTS_PARSER = Parser()

    def arguments(self, schema: Any, **kwargs: Any) -> Callable[[F], F]:
        """flask-smorest's, with a schema class made an instance once, at declaration.

        Given a class, webargs builds an instance on every request, deep-copying its fields: a
        tenth of a small POST's time. Instances are shared like the response schemas already are.
        """
        instance = schema() if isinstance(schema, type) else schema
        decorator: Callable[[F], F] = super().arguments(instance, **kwargs)
        return decorator

    def alt_response(
        self,
        status_code: int | str,
        response: str | None = None,
        *,
        schema: Any = None,
        content_type: str | None = None,
        **kwargs: Any,
    ) -> Callable[[F], F]:
        """Document another response; an error one without a schema is a problem document."""
        if response is None and schema is None and str(status_code)[:1] in ("4", "5"):
            schema, content_type = ProblemSchema, content_type or PROBLEM_CONTENT_TYPE
        decorator: Callable[[F], F] = super().alt_response(
            status_code, response, schema=schema, content_type=content_type, **kwargs
        )
        return decorator

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
            func = self.alt_response(
                401, description="Missing or invalid bearer token", headers=_CHALLENGE_HEADERS
            )(func)
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
            # Relative: the host that serves the document, the ingress or the service itself.
            "servers": [{"url": "/", "description": "The host serving this document"}],
            "components": {
                "securitySchemes": {BEARER: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
            },
        },
    )
    # Before any route is added: every <string:...> and <...> path part refuses NUL.
    app.url_map.converters["default"] = app.url_map.converters["string"] = TextConverter
    api = Api(app, spec_kwargs={"extra_plugins": [SchemaKeywords(), OperationIds()]})
    api.register_converter(TextConverter, _text_parameter_schema)
    api.ma_plugin.converter.add_attribute_function(_no_nul_pattern)

    @app.before_request
    def _check_body_media_type() -> None:
        # A route or method that does not exist is a 404 or 405 whatever the body.
        if request.method not in _BODY_METHODS or not _has_body() or request.routing_exception:
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
