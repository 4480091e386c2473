"""The token verifier of a service that trusts the users service's JWKS."""

from __future__ import annotations

from typing import Any

from flask import Flask

from flotilla_kit import auth, health
from flotilla_kit.discovery import service_url
from flotilla_kit.http_client import ClientPolicy, ServiceClient
from flotilla_kit.problems import Problem
from flotilla_kit.settings import KitSettings

JWKS_PATH = "/.well-known/jwks.json"


def init_jwks_auth(app: Flask, settings: KitSettings) -> None:
    """Verify bearer tokens with the issuer's JWKS; ``/readyz`` waits until keys are loaded.

    The JWKS comes from ``JWKS_URL``, or from the discovered users service.
    """
    client = ServiceClient(
        "users",
        settings.jwks_url or service_url("users") + JWKS_PATH,
        policy=ClientPolicy.from_settings(settings),
        ca_bundle=settings.ca_bundle,
    )

    def fetch() -> Any:
        response = client.request("GET", "", authenticate=False)
        if response.status_code != 200:
            raise Problem(503, "keys-unavailable", f"The JWKS answered {response.status_code}.")
        return response.json()

    resolver = auth.JwksKeyResolver(fetch)
    auth.init_app(
        app, auth.TokenVerifier(resolver, issuer=settings.jwt_issuer, audience=settings.jwt_audience)
    )
    health.add_readiness_check(app, "signing_keys", resolver.ensure_loaded)
