"""Access tokens for users and service clients."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from flotilla_users.keys import SigningKeys


@dataclass(frozen=True)
class IssuedToken:
    """A signed token and how long it lives."""

    access_token: str
    expires_in: int
    scope: str


# The client of a password login (the platform's own front end), for RFC 9068's ``client_id``.
LOGIN_CLIENT_ID = "flotilla-login"


class TokenIssuer:
    """Signs RFC 9068 access tokens (RS256, typed ``at+jwt``), with roles and scope."""

    def __init__(self, keys: SigningKeys, *, issuer: str, audience: str, ttl_seconds: int) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.ttl_seconds = ttl_seconds

    def issue(
        self, subject: str, *, client_id: str, roles: Iterable[str] = (), scopes: Iterable[str] = ()
    ) -> IssuedToken:
        """A token for ``subject``, obtained by ``client_id``."""
        now = int(time.time())
        scope = " ".join(sorted(set(scopes)))
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "client_id": client_id,
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl_seconds,
            "jti": uuid.uuid4().hex,
            "roles": sorted(set(roles)),
            "scope": scope,
        }
        return IssuedToken(self.keys.sign(claims), self.ttl_seconds, scope)
