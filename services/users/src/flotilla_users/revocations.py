"""Revoked subjects: deleted accounts and removed service clients, while their tokens may live."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from flotilla_kit.db import utcnow
from flotilla_users.models import RevokedSubject, ServiceClient

# The verifiers' clock leeway: a token lives this much past its `exp`.
LEEWAY_SECONDS = 5


def revoke_subject(session: Session, subject: str) -> None:
    """Record that every token of ``subject`` issued until now is revoked (committed by the caller)."""
    row = session.get(RevokedSubject, subject)
    if row is None:
        session.add(RevokedSubject(subject=subject, revoked_at=utcnow()))
    else:
        row.revoked_at = utcnow()


def revocation_list(session: Session, token_ttl_seconds: int) -> dict[str, Any]:
    """Every revocation younger than the longest a token lives, as ``{sub, revoked_at}`` (epoch seconds).

    Older ones are left out: every token they could match has expired.
    """
    now = utcnow()
    horizon = now - timedelta(seconds=token_ttl_seconds + LEEWAY_SECONDS)
    subjects = session.execute(
        select(RevokedSubject.subject, RevokedSubject.revoked_at).where(RevokedSubject.revoked_at > horizon)
    ).all()
    clients = session.execute(
        select(ServiceClient.client_id, ServiceClient.revoked_at).where(ServiceClient.revoked_at > horizon)
    ).all()
    return {
        "revoked": [{"sub": sub, "revoked_at": _epoch(at)} for sub, at in (*subjects, *clients) if at],
        "generated_at": _epoch(now),
    }


def forget_expired(session: Session, token_ttl_seconds: int) -> None:
    """Delete revocations no token can need any more (committed by the caller)."""
    horizon = utcnow() - timedelta(seconds=token_ttl_seconds + LEEWAY_SECONDS)
    session.query(RevokedSubject).filter(RevokedSubject.revoked_at <= horizon).delete()


def _epoch(moment: datetime) -> float:
    return moment.timestamp()
