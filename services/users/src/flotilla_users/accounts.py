"""Accounts: registration, authentication with throttling, profile changes, deletion."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from flotilla_kit.db import insert_if_absent, utcnow
from flotilla_kit.problems import Problem
from flotilla_users import revocations, throttling
from flotilla_users.models import ROLE_ADMIN, ROLE_CUSTOMER, LoginThrottle, User
from flotilla_users.passwords import hash_password, needs_rehash, verify_password
from flotilla_users.settings import RateLimit


def normalise_email(email: str) -> str:
    """Emails compare case-insensitively."""
    return email.strip().lower()


def register(session: Session, *, email: str, password: str, name: str, role: str = ROLE_CUSTOMER) -> User:
    """Create an account; a taken email is a 409 problem."""
    user = User(email=normalise_email(email), name=name, password_hash=hash_password(password), role=role)
    session.add(user)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Problem(409, "email-taken", "An account with this email already exists.") from None
    return user


class LoginThrottled(Problem):
    """Too many failed logins for one email."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            429,
            "login-throttled",
            "Too many failed logins; try again later.",
            headers={"Retry-After": str(retry_after)},
        )


def authenticate(
    session: Session, *, email: str, password: str, max_failures: int, lockout_seconds: int
) -> User:
    """The account these credentials open, or a 401 (429 after repeated failures).

    Each attempt is counted before the password is checked, atomically, so parallel guesses
    cannot slip past the limit; a success clears the count.
    """
    email = normalise_email(email)
    _count_attempt(session, email, max_failures, lockout_seconds)
    user = session.scalars(select(User).where(User.email == email)).one_or_none()
    if not verify_password(user.password_hash if user else None, password) or user is None:
        # RFC 9110: a 401 carries a challenge; no error code, as no token was presented (RFC 6750 3.1).
        raise Problem(
            401,
            "invalid-credentials",
            "The email or password is wrong.",
            headers={"WWW-Authenticate": 'Bearer realm="flotilla"'},
        )
    session.execute(delete(LoginThrottle).where(LoginThrottle.email == email))
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    session.commit()
    return user


def authenticate_from(
    session: Session,
    address: str,
    address_limit: RateLimit,
    *,
    email: str,
    password: str,
    max_failures: int,
    lockout_seconds: int,
) -> User:
    """``authenticate``, with the failed logins of one client address limited as well.

    The attempt counts against the address first, so a flood over the limit costs no argon2 and
    locks no account; a success gives back its own attempt only. That is no reset: an attacker
    who holds one valid account cannot wipe out the failures of its guesses with it.
    """
    attempt = throttling.hit(session, address_limit, address)
    if not attempt.admitted:
        raise LoginThrottled(attempt.retry_after())
    user = authenticate(
        session, email=email, password=password, max_failures=max_failures, lockout_seconds=lockout_seconds
    )
    throttling.give_back(session, attempt)
    return user


def _count_attempt(session: Session, email: str, max_failures: int, lockout_seconds: int) -> None:
    """Count one attempt for ``email``; 429 while locked, and lock once over the limit."""
    insert_if_absent(session, LoginThrottle, {"email": email, "failures": 0})
    now = utcnow()
    counted = session.execute(
        update(LoginThrottle)
        .where(
            LoginThrottle.email == email,
            or_(LoginThrottle.locked_until.is_(None), LoginThrottle.locked_until <= now),
        )
        .values(failures=LoginThrottle.failures + 1, locked_until=None, updated_at=now)
        .returning(LoginThrottle.failures)
    ).scalar_one_or_none()
    if counted is not None and counted > max_failures:
        session.execute(
            update(LoginThrottle)
            .where(LoginThrottle.email == email)
            .values(failures=0, locked_until=now + timedelta(seconds=lockout_seconds))
        )
    session.commit()
    if counted is None or counted > max_failures:
        locked_until = session.scalars(
            select(LoginThrottle.locked_until).where(LoginThrottle.email == email)
        ).one()
        remaining = (locked_until - now).total_seconds() if locked_until else lockout_seconds
        raise LoginThrottled(max(1, int(remaining) + 1))


def update_profile(
    session: Session, user: User, *, name: str | None, password: str | None, current_password: str | None
) -> User:
    """Change the name and/or password (the latter only with the current password)."""
    if password is not None:
        if current_password is None or not verify_password(user.password_hash, current_password):
            raise Problem(
                403,
                "wrong-current-password",
                "The current password is wrong.",
                errors=[{"field": "current_password", "location": "json", "message": "Wrong password."}],
            )
        user.password_hash = hash_password(password)
    if name is not None:
        user.name = name
    session.commit()
    return user


def delete_account(session: Session, user: User, *, token_ttl_seconds: int) -> None:
    """Remove an account and revoke its tokens: at once here, at other services on their next refresh."""
    session.execute(delete(User).where(User.id == user.id))
    revocations.revoke_subject(session, user.id)
    revocations.forget_expired(session, token_ttl_seconds)
    session.commit()


def ensure_admin(session: Session, *, email: str, password: str) -> None:
    """Create the configured admin, or make the existing account an admin; idempotent."""
    user = session.scalars(select(User).where(User.email == normalise_email(email))).one_or_none()
    if user is None:
        register(session, email=email, password=password, name="Administrator", role=ROLE_ADMIN)
        return
    if user.role != ROLE_ADMIN:
        user.role = ROLE_ADMIN
        session.commit()
