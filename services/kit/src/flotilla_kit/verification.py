"""The token verifier of a service that trusts the users service's JWKS."""

from __future__ import annotations

from flotilla_kit.auth import JwksKeyResolver, TokenVerifier
from flotilla_kit.discovery import service_url
from flotilla_kit.settings import KitSettings

JWKS_PATH = "/.well-known/jwks.json"


def jwks_verifier(settings: KitSettings) -> TokenVerifier:
    """Verify tokens with keys from ``JWKS_URL``, or from the discovered users service."""
    url = settings.jwks_url or service_url("users") + JWKS_PATH
    return TokenVerifier(
        JwksKeyResolver(url, ca_bundle=settings.ca_bundle, timeout=settings.http_timeout_seconds),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
