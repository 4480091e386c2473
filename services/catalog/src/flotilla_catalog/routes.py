"""HTTP endpoints of the catalog service."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask.views import MethodView
from sqlalchemy import RowMapping, bindparam, func, select

from flotilla_catalog import reservations
from flotilla_catalog.db import database
from flotilla_catalog.models import Product, Reservation
from flotilla_catalog.schemas import (
    ProductPageSchema,
    ProductSchema,
    ProductUpdateSchema,
    ReservationRequestSchema,
    ReservationSchema,
)
from flotilla_catalog.settings import RESERVATIONS_SCOPE, CatalogSettings
from flotilla_kit.api import Blueprint
from flotilla_kit.auth import current_principal
from flotilla_kit.db import utcnow
from flotilla_kit.problems import Problem
from flotilla_kit.schemas import MAX_ID, PageQuerySchema

products = Blueprint("products", __name__, url_prefix="/products", description="Products and stock")
reservations_blp = Blueprint(
    "reservations", __name__, url_prefix="/reservations", description="Stock reservations for other services"
)
ADMIN = ("admin",)


def _not_found(product_id: int) -> Problem:
    return Problem(404, "product-not-found", f"No product {product_id}.")


def _product(product_id: int) -> Product:
    """The live product, to change it in the request's session."""
    product = database.session.get(Product, product_id)
    if product is None or product.deleted_at is not None:
        raise _not_found(product_id)
    return product


# The public read: one statement, no ORM identity map, compiled once (the hottest path).
_LIVE_PRODUCT = select(*(Product.__table__.c[name] for name in ProductSchema().fields)).where(
    Product.id == bindparam("product_id"), Product.deleted_at.is_(None)
)


def _product_view(product_id: int) -> RowMapping:
    """The live product's fields as the API shows them."""
    with database.read() as connection:
        row = connection.execute(_LIVE_PRODUCT, {"product_id": product_id}).first()
    if row is None:
        raise _not_found(product_id)
    return row._mapping


@products.route("")
class Products(MethodView):
    """The product list."""

    @products.arguments(PageQuerySchema, location="query")
    @products.response(200, ProductPageSchema)
    def get(self, page: dict[str, int]) -> dict[str, Any]:
        """List products (public)."""
        live = Product.deleted_at.is_(None)
        total = database.session.scalar(select(func.count()).select_from(Product).where(live))
        items = database.session.scalars(
            select(Product).where(live).order_by(Product.id).limit(page["limit"]).offset(page["offset"])
        ).all()
        return {"items": items, "total": total, "limit": page["limit"], "offset": page["offset"]}

    @products.requires(roles=ADMIN)
    @products.arguments(ProductSchema)
    @products.response(201, ProductSchema)
    def post(self, body: dict[str, Any]) -> Product:
        """Add a product (admin)."""
        product = Product(**body)
        database.session.add(product)
        database.session.commit()
        return product


@products.route(f"/<int(max={MAX_ID}):product_id>")
class ProductById(MethodView):
    """One product."""

    @products.response(200, ProductSchema)
    @products.alt_response(404, description="No such product")
    def get(self, product_id: int) -> RowMapping:
        """Read a product (public)."""
        return _product_view(product_id)

    @products.requires(roles=ADMIN)
    @products.arguments(ProductUpdateSchema)
    @products.response(200, ProductSchema)
    @products.alt_response(404, description="No such product")
    def patch(self, body: dict[str, Any], product_id: int) -> Product:
        """Change a product (admin)."""
        product = _product(product_id)
        for name, value in body.items():
            setattr(product, name, value)
        database.session.commit()
        return product

    @products.requires(roles=ADMIN)
    @products.response(204)
    @products.alt_response(404, description="No such product")
    def delete(self, product_id: int) -> None:
        """Withdraw a product (admin); past reservations keep their lines."""
        _product(product_id).deleted_at = utcnow()
        database.session.commit()


@reservations_blp.route("")
class Reservations(MethodView):
    """Reserve stock."""

    @reservations_blp.requires(scopes=(RESERVATIONS_SCOPE,))
    @reservations_blp.arguments(ReservationRequestSchema)
    @reservations_blp.response(201, ReservationSchema)
    @reservations_blp.alt_response(200, schema=ReservationSchema, description="Replay of an existing key")
    @reservations_blp.alt_response(409, description="Not enough stock, or the key was used for other items")
    @reservations_blp.alt_response(422, description="Unknown product, or mixed currencies when refused")
    def post(self, body: dict[str, Any]) -> tuple[Reservation | reservations.NewReservation, int]:
        """Hold stock for every line, or none; idempotent by key (``commit``: take it at once)."""
        settings: CatalogSettings = current_app.extensions["flotilla_settings"]
        reservation, created = reservations.reserve(
            database.session,
            key=body["key"],
            client_id=current_principal().subject,
            items=body["items"],
            ttl_seconds=settings.reservation_ttl_seconds,
            commit=body["commit"],
            same_currency=body["same_currency"],
        )
        return reservation, 201 if created else 200


@reservations_blp.route("/<string(maxlength=200):key>")
class ReservationByKey(MethodView):
    """One reservation."""

    @reservations_blp.requires(scopes=(RESERVATIONS_SCOPE,))
    @reservations_blp.response(200, ReservationSchema)
    @reservations_blp.alt_response(404, description="No such reservation")
    def get(self, key: str) -> Reservation:
        """Read a reservation."""
        return reservations.owned(database.session, key, current_principal().subject)


@reservations_blp.route("/<string(maxlength=200):key>/commit")
class CommitReservation(MethodView):
    """Make a reservation permanent."""

    @reservations_blp.requires(scopes=(RESERVATIONS_SCOPE,))
    @reservations_blp.response(200, ReservationSchema)
    @reservations_blp.alt_response(404, description="No such reservation")
    @reservations_blp.alt_response(409, description="Already released or expired")
    def post(self, key: str) -> Reservation:
        """Commit held stock; idempotent."""
        return reservations.commit(database.session, key=key, client_id=current_principal().subject)


@reservations_blp.route("/<string(maxlength=200):key>/release")
class ReleaseReservation(MethodView):
    """Give reserved stock back."""

    @reservations_blp.requires(scopes=(RESERVATIONS_SCOPE,))
    @reservations_blp.response(200, ReservationSchema)
    @reservations_blp.alt_response(409, description="Already committed")
    def post(self, key: str) -> Reservation:
        """Release held stock; idempotent, and an unknown key can no longer be reserved."""
        return reservations.release(database.session, key=key, client_id=current_principal().subject)
