"""The app factory every service starts from: one call switches every kit feature on."""

from __future__ import annotations

from flask import Flask

from flotilla_kit import api as api_module
from flotilla_kit import api_docs, client_address, context, faults, health, logs, metrics, problems, tracing
from flotilla_kit.api import Api
from flotilla_kit.db import Database
from flotilla_kit.json_provider import OrjsonProvider
from flotilla_kit.settings import KitSettings


def create_service_app(
    settings: KitSettings,
    *,
    title: str,
    version: str,
    description: str = "",
    database: Database | None = None,
) -> tuple[Flask, Api]:
    """A Flask app with logs, request IDs, problems, metrics, health, faults and the OpenAPI Api.

    The service then registers its blueprints on the returned ``Api`` and its readiness
    checks with ``health.add_readiness_check``.
    """
    logs.configure_logging(settings.service_name, settings.log_level)
    app = Flask(settings.service_name)
    app.json = OrjsonProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_length
    app.extensions["flotilla_settings"] = settings
    # Order matters: open the request's span and identify the request before anything logs or
    # counts it (the span's teardown then runs last, after the metrics read its trace ID).
    tracing.init_app(app, settings.service_name, version, settings.tracing)
    context.init_app(app)
    client_address.init_app(app, settings.trusted_proxies)
    logs.init_app(app)
    metrics.init_app(app)
    problems.init_app(app)
    health.init_app(app)
    # Timed and counted like real failures, before a session or a token check is started.
    faults.init_app(app, settings.faults)
    if database is not None:
        database.init_app(app, settings.database_url)
        health.add_readiness_check(app, "database", database.ping)
    api = api_module.init_app(app, title=title, version=version, description=description)
    if settings.api_docs_path:
        api_docs.init_app(app, api, settings.api_docs_path)
    return app, api
