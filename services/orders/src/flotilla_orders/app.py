"""The orders service app."""

from __future__ import annotations

from flask import Flask

from flotilla_kit.app import create_service_app
from flotilla_kit.http_client import client_for
from flotilla_kit.token_source import ClientCredentialsToken
from flotilla_kit.verification import init_jwks_auth
from flotilla_orders import routes
from flotilla_orders.catalog import Catalog
from flotilla_orders.db import database
from flotilla_orders.settings import RESERVATIONS_SCOPE, OrdersSettings


def create_app(settings: OrdersSettings | None = None) -> Flask:
    """Build the orders app from the environment (or the given settings)."""
    settings = settings or OrdersSettings.load()
    app, api = create_service_app(
        settings,
        title="Flotilla orders",
        version="1.0.0",
        description="Customers' orders; stock is reserved in the catalog.",
        database=database,
    )
    init_jwks_auth(app, settings)
    token = ClientCredentialsToken(
        client_for("users", settings), settings.client_id, settings.client_secret, RESERVATIONS_SCOPE
    )
    app.extensions["flotilla_catalog"] = Catalog(client_for("catalog", settings, token=token))
    api.register_blueprint(routes.orders)
    return app
