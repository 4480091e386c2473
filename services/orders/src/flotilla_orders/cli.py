"""``flotilla-orders``: migrate and serve."""

from __future__ import annotations

from pathlib import Path

from flotilla_kit.cli import ServiceDefinition, service_cli
from flotilla_orders.models import Base
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
