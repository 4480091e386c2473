"""For a service's own tests: an issuer of test tokens that the app under test verifies.

The platform's token issuer is another service; a unit test of one service signs its own tokens
with a key made for the test, with the same claims (RFC 9068 ``at+jwt``) the issuer writes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

from flotilla_kit import auth, tracing
from flotilla_kit.settings import KitSettings

TEST_KEY_ID = "test-key"


@dataclass(frozen=True)
class TestIssuer:
    """Signs access tokens that the app's verifier accepts."""

    __test__ = False  # not a pytest test class

    key: rsa.RSAPrivateKey
    issuer: str
    audience: str

    def token(
        self,
        subject: str = "user-1",
        *,
        roles: Iterable[str] = ("customer",),
        scopes: Iterable[str] = (),
        lifetime_seconds: int = 300,
    ) -> str:
        """An access token of ``subject`` with these roles and scopes."""
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "client_id": "tests",
            "iat": now,
            "exp": now + lifetime_seconds,
            "jti": uuid.uuid4().hex,
            "roles": list(roles),
            "scope": " ".join(scopes),
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": TEST_KEY_ID, "typ": "at+jwt"})

    def headers(self, subject: str = "user-1", **kwargs: object) -> dict[str, str]:
        """``Authorization: Bearer <token>`` for ``subject``."""
        return {"Authorization": f"Bearer {self.token(subject, **kwargs)}"}  # type: ignore[arg-type]


def install_test_issuer(app: Flask) -> TestIssuer:
    """Make ``app`` verify tokens of a new test key (instead of the issuer's JWKS) and return its issuer."""
    settings: KitSettings = app.extensions["flotilla_settings"]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = {TEST_KEY_ID: key.public_key()}
    resolver = auth.StaticKeyResolver(lambda: public)
    auth.init_app(
        app, auth.TokenVerifier(resolver, issuer=settings.jwt_issuer, audience=settings.jwt_audience)
    )
    return TestIssuer(key, settings.jwt_issuer, settings.jwt_audience)


@contextmanager
def captured_spans() -> Iterator[InMemorySpanExporter]:
    """Record every trace the process starts while inside (a caller's unsampled one aside).

    For a service's tests: ``with captured_spans() as spans: client.get(...)``, then
    ``spans.get_finished_spans()``. Sampling and export are put back as they were afterwards.
    """
    exporter = InMemorySpanExporter()
    previous = tracing.current_switch()
    tracing.use(ParentBased(ALWAYS_ON), SimpleSpanProcessor(exporter))
    try:
        yield exporter
    finally:
        tracing.use(*previous)
