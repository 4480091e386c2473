"""The catalog service's configuration."""

from __future__ import annotations

from dataclasses import dataclass

from marshmallow.validate import Range

from flotilla_kit.discovery import require_services
from flotilla_kit.settings import KitSettings, finish, read_env

SERVICE = "catalog"
RESERVATIONS_SCOPE = "reservations:write"


@dataclass(frozen=True)
class CatalogSettings(KitSettings):
    """Shared settings, how long an uncommitted reservation holds stock, demo data on migrate."""

    reservation_ttl_seconds: int
    seed_demo_products: bool = False

    @classmethod
    def load(cls, service_name: str = SERVICE, *, serving: bool = True) -> CatalogSettings:
        """Read and validate the environment; every bad variable is named.

        Only ``serving`` needs the users service (its JWKS): the migrations and the demo data do not.
        """
        env = read_env()
        fields = KitSettings.fields_from(env, service_name)
        ttl = env.int("RESERVATION_TTL_SECONDS", 600, validate=Range(min=5, max=86400))
        # A shop example or a demo install gets products to order from `migrate` alone.
        seed = env.bool("SEED_DEMO_PRODUCTS", False)
        finish(env)
        if serving and fields["jwks_url"] is None:
            require_services("users")
        return cls(**fields, reservation_ttl_seconds=ttl, seed_demo_products=seed)
