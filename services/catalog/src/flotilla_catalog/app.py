"""The catalog service app."""

from __future__ import annotations

from flask import Flask

from flotilla_catalog import routes
from flotilla_catalog.db import database
from flotilla_catalog.settings import CatalogSettings
from flotilla_kit.app import create_service_app
from flotilla_kit.verification import init_jwks_auth


def create_app(settings: CatalogSettings | None = None) -> Flask:
    """Build the catalog app from the environment (or the given settings)."""
    settings = settings or CatalogSettings.load()
    app, api = create_service_app(
        settings,
        title="Flotilla catalog",
        version="1.0.0",
        description="Products, stock and stock reservations.",
        database=database,
    )
    init_jwks_auth(app, settings)
    api.register_blueprint(routes.products)
    api.register_blueprint(routes.reservations_blp)
    return app
