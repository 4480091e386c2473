"""Request and response bodies of the catalog API."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

from flotilla_kit.schemas import ID_RANGE, PartialUpdateSchema, Pattern, StrictBoolean, distinct_by

NAME = validate.Length(min=1, max=200)
CURRENCY = Pattern(r"^[A-Z]{3}$", error="Must be an ISO 4217 code such as EUR.")
MAX_QUANTITY = 1000


class ProductSchema(ma.Schema):
    """A product as the API shows it."""

    id = ma.fields.Integer(dump_only=True)
    name = ma.fields.String(required=True, validate=NAME)
    description = ma.fields.String(load_default="", validate=validate.Length(max=5000))
    price_cents = ma.fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=10**9))
    currency = ma.fields.String(required=True, validate=CURRENCY)
    stock = ma.fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=10**9))


class ProductUpdateSchema(PartialUpdateSchema):
    """A partial update of a product."""

    name = ma.fields.String(validate=NAME)
    description = ma.fields.String(validate=validate.Length(max=5000))
    price_cents = ma.fields.Integer(strict=True, validate=validate.Range(min=0, max=10**9))
    currency = ma.fields.String(validate=CURRENCY)
    stock = ma.fields.Integer(strict=True, validate=validate.Range(min=0, max=10**9))


class ProductPageSchema(ma.Schema):
    """A page of products."""

    items = ma.fields.List(ma.fields.Nested(ProductSchema), required=True)
    total = ma.fields.Integer(required=True)
    limit = ma.fields.Integer(required=True)
    offset = ma.fields.Integer(required=True)


class ReservationLineSchema(ma.Schema):
    """A product and how many to set aside."""

    product_id = ma.fields.Integer(required=True, strict=True, validate=ID_RANGE)
    quantity = ma.fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=MAX_QUANTITY))


class ReservationRequestSchema(ma.Schema):
    """Set stock aside under an idempotency key chosen by the caller."""

    key = ma.fields.String(required=True, validate=Pattern(r"^[A-Za-z0-9._:-]{1,200}$"))
    items = ma.fields.List(
        ma.fields.Nested(ReservationLineSchema),
        required=True,
        validate=[
            validate.Length(min=1, max=100),
            distinct_by("product_id", "Each product may appear once."),
        ],
    )
    commit = StrictBoolean(
        load_default=False,
        metadata={"description": "Take the stock for good at once: the reservation is made committed."},
    )
    same_currency = StrictBoolean(
        load_default=False,
        metadata={"description": "Refuse (422 mixed-currencies) lines priced in different currencies."},
    )


class ReservedItemSchema(ma.Schema):
    """A reserved line with the product's name and price at reservation time."""

    product_id = ma.fields.Integer(required=True)
    quantity = ma.fields.Integer(required=True)
    name = ma.fields.String(required=True)
    unit_price_cents = ma.fields.Integer(required=True)
    currency = ma.fields.String(required=True)


class ReservationSchema(ma.Schema):
    """A reservation and its state."""

    key = ma.fields.String(required=True)
    status = ma.fields.String(required=True)
    expires_at = ma.fields.DateTime(required=True)
    items = ma.fields.List(ma.fields.Nested(ReservedItemSchema), required=True)
