"""A service with one route on the kit, run like the real ones: ``python -m fault_service serve``."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from flask import Flask, Response, jsonify
from sqlalchemy import MetaData

from flotilla_kit.app import create_service_app
from flotilla_kit.cli import ServiceDefinition, service_cli
from flotilla_kit.settings import KitSettings

NAME = "faulty"
ROUTE = "/things/{thing_id}"


def create_app(settings: KitSettings | None = None) -> Flask:
    """The app gunicorn serves; its settings from the environment unless given."""
    app, _api = create_service_app(settings or KitSettings.load(NAME), title=NAME, version="1.0.0")

    @app.get("/things/<int:thing_id>")
    def thing(thing_id: int) -> Response:
        return jsonify(id=thing_id)

    return app


main = service_cli(
    ServiceDefinition(
        name=NAME,
        app_factory="fault_service:create_app()",
        load_settings=partial(KitSettings.load, NAME),
        load_migration_settings=partial(KitSettings.load, NAME),
        metadata=MetaData(),
        versions=Path(__file__).parent,
    )
)

if __name__ == "__main__":
    main()
