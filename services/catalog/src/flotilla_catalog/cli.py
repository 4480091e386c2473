"""``flotilla-catalog``: migrate, serve, seed demo products, release expired reservations.

The models and the database are imported by the commands that use them: ``serve`` replaces this
process with gunicorn at once.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import click

from flotilla_catalog.settings import SERVICE, CatalogSettings
from flotilla_kit.cli import ServiceDefinition, load_or_exit, service_cli

if TYPE_CHECKING:
    from sqlalchemy import MetaData


def metadata() -> MetaData:
    """The catalog's tables."""
    from flotilla_catalog.models import Base  # noqa: PLC0415 - `migrate` only

    return Base.metadata


def seed(settings: CatalogSettings) -> int:
    """Add the demo products that are not there yet; how many were added."""
    from flotilla_catalog.demo import seed_demo_products  # noqa: PLC0415 - these commands only
    from flotilla_kit.db import standalone_session  # noqa: PLC0415

    with standalone_session(settings.database_url) as session:
        return seed_demo_products(session)


def bootstrap(settings: CatalogSettings) -> None:
    """After migrating: the demo products, when SEED_DEMO_PRODUCTS is true."""
    if settings.seed_demo_products:
        click.echo(f"catalog: {seed(settings)} demo product(s) added")


main = service_cli(
    ServiceDefinition(
        name=SERVICE,
        app_factory="flotilla_catalog.app:create_app()",
        load_settings=CatalogSettings.load,
        load_migration_settings=partial(CatalogSettings.load, serving=False),
        metadata=metadata,
        versions=Path(__file__).with_name("migrations") / "versions",
        bootstrap=bootstrap,
    )
)


@main.command("seed-demo")
def seed_demo() -> None:
    """Add the demo products (idempotent)."""
    settings = load_or_exit(partial(CatalogSettings.load, serving=False))
    click.echo(f"catalog: {seed(settings)} demo product(s) added")


@main.command("release-expired")
def release_expired_command() -> None:
    """Release reservations whose holder never committed them in time."""
    from flotilla_catalog.reservations import release_expired  # noqa: PLC0415 - this command only
    from flotilla_kit.db import standalone_session  # noqa: PLC0415

    settings = load_or_exit(CatalogSettings.load)
    with standalone_session(settings.database_url) as session:
        released = release_expired(session, limit=10_000)
    click.echo(f"catalog: {released} expired reservation(s) released")
