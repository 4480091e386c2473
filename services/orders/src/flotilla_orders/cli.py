"""``flotilla-orders``: migrate, serve, and settle orders a crash left pending."""

from __future__ import annotations

from pathlib import Path

import click

from flotilla_kit.cli import ServiceDefinition, load_or_exit, service_cli
from flotilla_orders.app import create_app
from flotilla_orders.db import database
from flotilla_orders.models import Base
from flotilla_orders.ordering import OrderPlacement
from flotilla_orders.settings import SERVICE, OrdersSettings

main = service_cli(
    ServiceDefinition(
        name=SERVICE,
        app_factory="flotilla_orders.app:create_app()",
        load_settings=OrdersSettings.load,
        metadata=Base.metadata,
        versions=Path(__file__).with_name("migrations") / "versions",
    )
)


@main.command()
def reconcile() -> None:
    """Settle orders left pending longer than ORDER_STALE_PENDING_SECONDS (run it periodically)."""
    settings = load_or_exit(OrdersSettings.load)
    app = create_app(settings)
    with app.app_context():
        placement = OrderPlacement(
            database.session,
            app.extensions["flotilla_catalog"],
            replay_wait=settings.replay_wait_seconds,
            stale_after=settings.stale_pending_seconds,
        )
        click.echo(f"orders: {placement.settle_stalled()} stalled order(s) settled")
