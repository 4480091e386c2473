"""Service clients of the client-credentials grant: kept in step with configuration."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from flotilla_kit.db import utcnow
from flotilla_kit.problems import Problem
from flotilla_users.models import ServiceClient
from flotilla_users.settings import ServiceClientConfig

_NO_CLIENT = "0" * 64


def secret_digest(secret: str) -> str:
    """SHA-256 of a client secret.

    Secrets are long and random, so a slow hash would buy nothing and would let
    unauthenticated token requests burn memory and CPU.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


def sync_clients(session: Session, configured: Iterable[ServiceClientConfig]) -> None:
    """Create or update every configured client; revoke the ones no longer configured."""
    wanted = {client.client_id: client for client in configured}
    existing = {client.client_id: client for client in session.scalars(select(ServiceClient))}
    for client_id, config in wanted.items():
        # UsersSettings.load_for_migration, which `migrate` reads, requires every secret.
        assert config.secret is not None, client_id
        row = existing.get(client_id)
        if row is None:
            row = ServiceClient(client_id=client_id, secret_hash=secret_digest(config.secret))
            session.add(row)
        else:
            row.secret_hash = secret_digest(config.secret)
        row.scopes = " ".join(sorted(config.scopes))
        row.revoked_at = None
    for client_id, row in existing.items():
        if client_id not in wanted and row.revoked_at is None:
            row.revoked_at = utcnow()
    session.commit()


def invalid_client() -> Problem:
    """RFC 6749 ``invalid_client``, as a problem carrying the OAuth error code."""
    return Problem(
        401,
        "invalid-client",
        "Client authentication failed.",
        headers={"WWW-Authenticate": 'Basic realm="flotilla"'},
        error="invalid_client",
        error_description="Client authentication failed.",
    )


def authenticate_client(session: Session, client_id: str, secret: str) -> ServiceClient:
    """The active client these credentials name, or ``invalid_client``."""
    row = session.get(ServiceClient, client_id)
    expected = row.secret_hash if row is not None else _NO_CLIENT
    if not hmac.compare_digest(expected, secret_digest(secret)) or row is None:
        raise invalid_client()
    if row.revoked_at is not None:
        raise invalid_client()
    return row


def granted_scopes(client: ServiceClient, requested: str | None) -> set[str]:
    """The scopes to grant: all the client's when none are asked, else a checked subset."""
    allowed = set(client.scopes.split())
    if not requested:
        return allowed
    asked = set(requested.split())
    if not asked <= allowed:
        raise Problem(
            400,
            "invalid-scope",
            f"Scope(s) not allowed for this client: {' '.join(sorted(asked - allowed))}.",
            error="invalid_scope",
            error_description="The requested scope is not allowed.",
        )
    return asked
