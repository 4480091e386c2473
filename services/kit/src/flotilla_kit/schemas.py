"""Schema pieces every service's API uses the same way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import marshmallow as ma
from marshmallow import validate

MAX_ID = 2**31 - 1
"""Integer identifiers are 32-bit in every database; a larger one cannot exist."""
ID_RANGE = validate.Range(min=1, max=MAX_ID)


class PageQuerySchema(ma.Schema):
    """``limit`` and ``offset`` query parameters of a list."""

    limit = ma.fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    offset = ma.fields.Integer(load_default=0, validate=validate.Range(min=0, max=MAX_ID))


class PartialUpdateSchema(ma.Schema):
    """A PATCH body: every field optional, but not none at all."""

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
