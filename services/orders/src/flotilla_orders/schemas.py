"""Request and response bodies of the orders API."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

from flotilla_kit.schemas import ID_RANGE, distinct_by


class OrderLineSchema(ma.Schema):
    """A product and a quantity."""

    product_id = ma.fields.Integer(required=True, strict=True, validate=ID_RANGE)
    quantity = ma.fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=1000))


class OrderRequestSchema(ma.Schema):
    """A new order."""

    items = ma.fields.List(
        ma.fields.Nested(OrderLineSchema),
        required=True,
        validate=[
            validate.Length(min=1, max=100),
            distinct_by("product_id", "Each product may appear once; add up the quantities."),
        ],
    )


class IdempotencyHeaderSchema(ma.Schema):
    """The client's key that makes retries of one order safe."""

    class Meta:
        unknown = ma.EXCLUDE

    idempotency_key = ma.fields.String(
        required=True,
        data_key="Idempotency-Key",
        validate=validate.Length(min=1, max=255),
        metadata={"description": "Unique per order; a replay with the same key returns the same order."},
    )


class OrderItemSchema(ma.Schema):
    """An order line with the price it was bought at."""

    product_id = ma.fields.Integer(required=True)
    quantity = ma.fields.Integer(required=True)
    name = ma.fields.String(allow_none=True)
    unit_price_cents = ma.fields.Integer(allow_none=True)


class OrderSchema(ma.Schema):
    """An order; ``total`` is in minor units of ``currency`` once confirmed."""

    id = ma.fields.String(required=True)
    status = ma.fields.String(
        required=True, metadata={"enum": ["pending", "confirmed", "rejected", "failed"]}
    )
    items = ma.fields.List(ma.fields.Nested(OrderItemSchema), required=True)
    total = ma.fields.Integer(allow_none=True)
    currency = ma.fields.String(allow_none=True)
    created_at = ma.fields.DateTime(required=True)


class OrderPageSchema(ma.Schema):
    """A page of the caller's orders, newest first."""

    items = ma.fields.List(ma.fields.Nested(OrderSchema), required=True)
    limit = ma.fields.Integer(required=True)
    offset = ma.fields.Integer(required=True)
