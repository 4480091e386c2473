"""``flotilla-orders``: migrate, serve, and settle orders a crash left pending.

The app and the models are imported by the commands that use them: ``serve`` replaces this
process with gunicorn at once.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import click

from flotilla_kit.cli import ServiceDefinition, load_or_exit, service_cli
from flotilla_kit.settings import KitSettings
from flotilla_orders.settings import SERVICE, OrdersSettings

if TYPE_CHECKING:
    from sqlalchemy import MetaData


def metadata() -> MetaData:
    """The orders service's tables."""
    from flotilla_orders.models import Base  # noqa: PLC0415 - `migrate` only

    return Base.metadata


main = service_cli(
    ServiceDefinition(
        name=SERVICE,
        app_factory="flotilla_orders.app:create_app()",
        load_settings=OrdersSettings.load,
        # The migration needs the database, not the client secret: it is not given it.
        load_migration_settings=partial(KitSettings.load, SERVICE),
        metadata=metadata,
        versions=Path(__file__).with_name("migrations") / "versions",
    )
)


@main.command()
def reconcile() -> None:
    """Settle orders left pending longer than ORDER_STALE_PENDING_SECONDS (run it periodically)."""
    from flotilla_orders.app import create_app  # noqa: PLC0415 - this command only
    from flotilla_orders.db import database  # noqa: PLC0415
    from flotilla_orders.ordering import OrderPlacement  # noqa: PLC0415

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
