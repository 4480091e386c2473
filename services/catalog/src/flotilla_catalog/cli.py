"""``flotilla-catalog``: migrate, serve, seed demo products, release expired reservations."""

from __future__ import annotations

from pathlib import Path

import click

from flotilla_catalog.demo import seed_demo_products
from flotilla_catalog.models import Base
from flotilla_catalog.reservations import release_expired
from flotilla_catalog.settings import SERVICE, CatalogSettings
from flotilla_kit.cli import ServiceDefinition, load_or_exit, service_cli
from flotilla_kit.db import standalone_session


def bootstrap(settings: CatalogSettings) -> None:
    """After migrating: the demo products, when SEED_DEMO_PRODUCTS is true."""
    if settings.seed_demo_products:
        with standalone_session(settings.database_url) as session:
            added = seed_demo_products(session)
        click.echo(f"catalog: {added} demo product(s) added")


main = service_cli(
    ServiceDefinition(
        name=SERVICE,
        app_factory="flotilla_catalog.app:create_app()",
        load_settings=CatalogSettings.load,
        metadata=Base.metadata,
        versions=Path(__file__).with_name("migrations") / "versions",
        bootstrap=bootstrap,
    )
)


@main.command("seed-demo")
def seed_demo() -> None:
    """Add the demo products (idempotent)."""
    settings = load_or_exit(CatalogSettings.load)
    with standalone_session(settings.database_url) as session:
        added = seed_demo_products(session)
    click.echo(f"catalog: {added} demo product(s) added")


@main.command("release-expired")
def release_expired_command() -> None:
    """Release reservations whose holder never committed them in time."""
    settings = load_or_exit(CatalogSettings.load)
    with standalone_session(settings.database_url) as session:
        released = release_expired(session, limit=10_000)
    click.echo(f"catalog: {released} expired reservation(s) released")
