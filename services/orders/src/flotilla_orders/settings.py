"""The orders service's configuration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marshmallow.validate import Length, Range

from flotilla_kit.discovery import require_services
from flotilla_kit.settings import ConfigError, KitSettings, finish, read_env, secret

SERVICE = "orders"
RESERVATIONS_SCOPE = "reservations:write"


@dataclass(frozen=True)
class OrdersSettings(KitSettings):
    """Shared settings plus the service client identity and idempotency timings."""

    client_id: str
    client_secret: str
    replay_wait_seconds: float
    stale_pending_seconds: float

    @classmethod
    def load(cls, service_name: str = SERVICE) -> OrdersSettings:
        """Read and validate the environment; every bad variable is named."""
        env = read_env()
        fields = KitSettings.fields_from(env, service_name)
        extra: dict[str, Any] = {
            "client_id": env.str("ORDERS_CLIENT_ID", "orders", validate=Length(min=1)),
            "client_secret": secret(env, "ORDERS_CLIENT_SECRET", validate=Length(min=16)),
            "replay_wait_seconds": env.float(
                "ORDER_REPLAY_WAIT_SECONDS", 10.0, validate=Range(min=0, max=60)
            ),
            "stale_pending_seconds": env.float("ORDER_STALE_PENDING_SECONDS", 60.0, validate=Range(min=1)),
        }
        finish(env)
        if extra["client_secret"] is None:
            raise ConfigError(
                "invalid configuration: ORDERS_CLIENT_SECRET: required (or ORDERS_CLIENT_SECRET_FILE)"
            )
        require_services("users", "catalog")
        return cls(**fields, **extra)
