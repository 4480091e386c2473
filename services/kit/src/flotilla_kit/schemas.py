"""Schema pieces every service's API uses the same way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import marshmallow as ma
from marshmallow import validate

MAX_ID = 2**31 - 1
"""Integer identifiers are 32-bit in every database; a larger one cannot exist."""
ID_RANGE = validate.Range(min=1, max=MAX_ID)


class Pattern(validate.Regexp):
    r"""``validate.Regexp`` where ``$`` means the end of the string, as in the documented pattern.

    Python's ``$`` also matches before a final newline: ``^[A-Z]{3}$`` would take "EUR\n",
    which OpenAPI's (ECMA-262) ``$`` refuses.
    """

    def __call__(self, value: Any) -> Any:
        match = self.regex.match(value)
        if match is None or match.end() != len(value):
            raise ma.ValidationError(self._format_error(value))
        return value


class StrictBoolean(ma.fields.Boolean):
    """A JSON ``true`` or ``false`` only: marshmallow's Boolean also takes 1, "yes", "on"...

    The OpenAPI document says ``boolean``, and a client sending a string means something else.
    """

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class PageQuerySchema(ma.Schema):
    """``limit`` and ``offset`` query parameters of a list."""

    limit = ma.fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    offset = ma.fields.Integer(load_default=0, validate=validate.Range(min=0, max=MAX_ID))


class PartialUpdateSchema(ma.Schema):
    """A PATCH body: every field optional, but not none at all."""

    class Meta:
        # Documented in the OpenAPI schema (flotilla_kit.api.SchemaKeywords); a subclass's Meta
        # that adds keywords extends this one.
        json_schema: ClassVar[dict[str, Any]] = {"minProperties": 1}

    @ma.validates_schema
    def _not_empty(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if not data:
            raise ma.ValidationError("Send at least one field to change.")


def distinct_by(key: str, message: str) -> Callable[[list[dict[str, Any]]], None]:
    """A list validator refusing two items with the same ``key``."""

    def check(items: list[dict[str, Any]]) -> None:
        values = [item[key] for item in items]
        if len(values) != len(set(values)):
            raise ma.ValidationError(message)

    return check
