"""OAuth 2.0 client-credentials tokens for service-to-service calls, cached until near expiry."""

from __future__ import annotations

import base64
import threading
import time
from urllib.parse import quote_plus

from flotilla_kit import tracing
from flotilla_kit.http_client import ServiceClient, UpstreamUnavailable

REFRESH_MARGIN_SECONDS = 30.0


class ClientCredentialsToken:
    """Fetches a token from the issuer's ``/oauth/token`` and reuses it until near expiry."""

    def __init__(self, issuer: ServiceClient, client_id: str, client_secret: str, scope: str) -> None:
        self.issuer = issuer
        self.client_id = client_id
        self.client_secret = client_secret
        self.scope = scope
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0

    def __call__(self) -> str:
        with (
            tracing.span("client credentials token", **{"oauth.client_id": self.client_id}) as span,
            self._lock,
        ):
            cached = self._token is not None and time.monotonic() < self._expires_at
            span.set_attribute("flotilla.token.cached", cached)
            if self._token is None or not cached:
                self._token, lifetime = self._fetch()
                self._expires_at = time.monotonic() + max(lifetime - REFRESH_MARGIN_SECONDS, lifetime / 2)
            return self._token

    def invalidate(self) -> None:
        with self._lock:
            self._token = None

    def _basic_credentials(self) -> str:
        # RFC 6749 section 2.3.1: form-encode each part, then Basic-encode the pair.
        pair = f"{quote_plus(self.client_id)}:{quote_plus(self.client_secret)}"
        return "Basic " + base64.b64encode(pair.encode()).decode()

    def _fetch(self) -> tuple[str, float]:
        response = self.issuer.request(
            "POST",
            "/oauth/token",
            data={"grant_type": "client_credentials", "scope": self.scope},
            headers={"Accept": "application/json", "Authorization": self._basic_credentials()},
            idempotent=True,
            authenticate=False,
        )
        if response.status_code != 200:
            raise UpstreamUnavailable(
                self.issuer.target, f"token request refused with {response.status_code}"
            )
        body = response.json()
        return str(body["access_token"]), float(body.get("expires_in", 300))
