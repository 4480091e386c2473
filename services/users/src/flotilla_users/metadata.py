"""RFC 8414 authorization server metadata: what a standard OAuth client reads to find us."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flotilla_kit.problems import Problem
from flotilla_users.settings import UsersSettings

TOKEN_PATH = "/oauth/token"  # noqa: S105 - a path, not a secret
JWKS_PATH = "/.well-known/jwks.json"


def server_metadata(settings: UsersSettings) -> dict[str, Any]:
    """The metadata document of the issuer ``JWT_ISSUER`` names (404 when it is not a URL)."""
    issuer = settings.jwt_issuer
    if urlsplit(issuer).scheme not in ("https", "http"):
        raise Problem(
            404,
            "no-server-metadata",
            "JWT_ISSUER is not a URL, so there is no metadata to publish: set it to the issuer's https URL.",
        )
    base = issuer.rstrip("/")
    return {
        "issuer": issuer,
        "token_endpoint": base + TOKEN_PATH,
        "jwks_uri": base + JWKS_PATH,
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": sorted({scope for client in settings.oauth_clients for scope in client.scopes}),
        # Required by RFC 8414 though there is no authorization endpoint: "none" (OAuth 2.0
        # Multiple Response Type Encoding Practices) is the one value that claims no flow.
        "response_types_supported": ["none"],
    }
