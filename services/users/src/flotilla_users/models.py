"""Accounts and service clients."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from flotilla_kit.db import UtcDateTime, utcnow

ROLE_CUSTOMER = "customer"
ROLE_ADMIN = "admin"


class Base(DeclarativeBase):
    """The users service's tables."""


class User(Base):
    """A person with a login."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20), default=ROLE_CUSTOMER)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)

    @property
    def roles(self) -> list[str]:
        """Roles carried in tokens: an admin is a customer too."""
        return [ROLE_ADMIN, ROLE_CUSTOMER] if self.role == ROLE_ADMIN else [ROLE_CUSTOMER]


class ServiceClient(Base):
    """A service allowed to obtain tokens with the client-credentials grant."""

    __tablename__ = "service_clients"

    client_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(255))
    scopes: Mapped[str] = mapped_column(String(1000), default="")
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class LoginThrottle(Base):
    """Recent failed logins per email, known account or not (so throttling reveals nothing)."""

    __tablename__ = "login_throttle"

    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class RateLimitWindow(Base):
    """Requests counted in the current window of one rate limit for one key (a client address).

    Shared by every worker and replica; throttling.py keeps it small.
    """

    __tablename__ = "rate_limit_windows"
    __table_args__ = (Index("ix_rate_limit_windows_ends_at", "ends_at"),)

    kind: Mapped[str] = mapped_column(String(40), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    hits: Mapped[int] = mapped_column(Integer)
    ends_at: Mapped[datetime] = mapped_column(UtcDateTime)


class RevokedSubject(Base):
    """A subject (a deleted account) whose tokens issued until ``revoked_at`` are revoked."""

    __tablename__ = "revoked_subjects"

    subject: Mapped[str] = mapped_column(String(100), primary_key=True)
    revoked_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
