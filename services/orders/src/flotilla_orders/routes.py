"""HTTP endpoints of the orders service."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask.views import MethodView
from sqlalchemy import select

from flotilla_kit.api import Blueprint
from flotilla_kit.auth import current_principal
from flotilla_kit.problems import Problem
from flotilla_kit.schemas import PageQuerySchema
from flotilla_orders.catalog import Catalog
from flotilla_orders.db import database
from flotilla_orders.models import CONFIRMED, Order
from flotilla_orders.ordering import OrderPlacement, failure_problem
from flotilla_orders.schemas import (
    IdempotencyHeaderSchema,
    OrderPageSchema,
    OrderRequestSchema,
    OrderSchema,
)
from flotilla_orders.settings import OrdersSettings

orders = Blueprint("orders", __name__, url_prefix="/orders", description="Customers' orders")
CUSTOMER = ("customer",)


@orders.route("")
class Orders(MethodView):
    """The caller's orders."""

    @orders.requires(roles=CUSTOMER)
    @orders.arguments(IdempotencyHeaderSchema, location="headers")
    @orders.arguments(OrderRequestSchema)
    @orders.response(201, OrderSchema)
    @orders.alt_response(409, description="Not enough stock, or the same key is still in progress")
    @orders.alt_response(422, description="Invalid items, unknown product, or a reused key")
    @orders.alt_response(503, description="The catalog is unavailable; the order failed and holds nothing")
    def post(self, headers: dict[str, str], body: dict[str, Any]) -> tuple[Order, int, dict[str, str]]:
        """Place an order; replaying the same Idempotency-Key returns the same order."""
        settings: OrdersSettings = current_app.extensions["flotilla_settings"]
        catalog: Catalog = current_app.extensions["flotilla_catalog"]
        placement = OrderPlacement(
            database.session,
            catalog,
            replay_wait=settings.replay_wait_seconds,
            stale_after=settings.stale_pending_seconds,
        )
        order, replayed = placement.place(
            current_principal().subject, headers["idempotency_key"], body["items"]
        )
        if order.status != CONFIRMED:
            raise failure_problem(order)
        response_headers = {"Location": f"/orders/{order.id}"}
        if replayed:
            response_headers["Idempotent-Replayed"] = "true"
        return order, 201, response_headers

    @orders.requires(roles=CUSTOMER)
    @orders.arguments(PageQuerySchema, location="query")
    @orders.response(200, OrderPageSchema)
    def get(self, page: dict[str, int]) -> dict[str, Any]:
        """List my orders, newest first."""
        items = database.session.scalars(
            select(Order)
            .where(Order.user_id == current_principal().subject)
            .order_by(Order.created_at.desc(), Order.id)
            .limit(page["limit"])
            .offset(page["offset"])
        ).all()
        return {"items": items, **page}


@orders.route("/<string:order_id>")
class OrderById(MethodView):
    """One of the caller's orders."""

    @orders.requires(roles=CUSTOMER)
    @orders.response(200, OrderSchema)
    @orders.alt_response(404, description="No such order of yours")
    def get(self, order_id: str) -> Order:
        """Read one of my orders."""
        order = database.session.get(Order, order_id)
        if order is None or order.user_id != current_principal().subject:
            raise Problem(404, "order-not-found", f"No order {order_id} of yours.")
        return order
