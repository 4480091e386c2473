"""The token verifier of a service that trusts the users service's JWKS and revocation list."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask

from flotilla_kit import auth, health
from flotilla_kit.discovery import is_declared, service_url
from flotilla_kit.http_client import ClientPolicy, ServiceClient
from flotilla_kit.problems import Problem
from flotilla_kit.revocation import RevocationList
from flotilla_kit.settings import KitSettings

JWKS_PATH = "/.well-known/jwks.json"
REVOCATIONS_PATH = "/internal/revocations"


def init_jwks_auth(app: Flask, settings: KitSettings) -> None:
    """Verify bearer tokens with the issuer's JWKS and revocation list.

    They come from ``JWKS_URL`` and ``REVOCATIONS_URL``, or from the discovered users service.
    ``/readyz`` waits for both when the issuer is declared (those URLs, or ``USERS_URL``: the
    operator sets it for ``dependsOn: [users]``); a service that declares no issuer is ready
    without one, serves what needs no token, and answers a token with 503 while none is found.
    """
    keys = _json_fetcher(settings, settings.jwks_url or service_url("users") + JWKS_PATH, "keys")
    revoked = _json_fetcher(
        settings, settings.revocations_url or service_url("users") + REVOCATIONS_PATH, "revocations"
    )
    resolver = auth.JwksKeyResolver(keys)
    revocations = RevocationList(
        revoked,
        refresh_seconds=settings.revocation_refresh_seconds,
        max_staleness_seconds=settings.revocation_max_staleness_seconds,
    )
    auth.init_app(
        app,
        auth.TokenVerifier(
            resolver, issuer=settings.jwt_issuer, audience=settings.jwt_audience, revocations=revocations
        ),
    )
    if settings.jwks_url or settings.revocations_url or is_declared("users"):
        health.add_readiness_check(app, "signing_keys", resolver.ensure_loaded)
        health.add_readiness_check(app, "revocations", revocations.ensure_loaded)


def _json_fetcher(settings: KitSettings, url: str, what: str) -> Callable[[], Any]:
    """GET ``url`` from the issuer with the kit client; anything but a 200 is a 503 problem."""
    client = ServiceClient(
        "users", url, policy=ClientPolicy.from_settings(settings), ca_bundle=settings.ca_bundle
    )

    def fetch() -> Any:
        response = client.request("GET", "", authenticate=False)
        if response.status_code != 200:
            raise Problem(503, f"{what}-unavailable", f"The issuer's {what} answered {response.status_code}.")
        return response.json()

    return fetch
