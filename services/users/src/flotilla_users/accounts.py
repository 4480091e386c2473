"""Accounts: registration, authentication with throttling, profile changes, deletion."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from flotilla_kit.db import utcnow
from flotilla_kit.problems import Problem
from flotilla_users.models import ROLE_ADMIN, ROLE_CUSTOMER, LoginThrottle, User
from flotilla_users.passwords import hash_password, needs_rehash, verify_password


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
    """The account these credentials open, or a 401 (429 after repeated failures)."""
    email = normalise_email(email)
    throttle = session.get(LoginThrottle, email)
    now = utcnow()
    if throttle is not None and throttle.locked_until is not None:
        locked_until = throttle.locked_until
        if locked_until > now:
            raise LoginThrottled(int((locked_until - now).total_seconds()) + 1)
    user = session.scalars(select(User).where(User.email == email)).one_or_none()
    if not verify_password(user.password_hash if user else None, password) or user is None:
        _record_failure(session, email, throttle, max_failures, lockout_seconds)
        raise Problem(401, "invalid-credentials", "The email or password is wrong.")
    if throttle is not None:
        session.delete(throttle)
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    session.commit()
    return user


def _record_failure(
    session: Session,
    email: str,
    throttle: LoginThrottle | None,
    max_failures: int,
    lockout_seconds: int,
) -> None:
    if throttle is None:
        throttle = LoginThrottle(email=email, failures=0)
        session.add(throttle)
    throttle.failures += 1
    if throttle.failures >= max_failures:
        throttle.locked_until = utcnow() + timedelta(seconds=lockout_seconds)
        throttle.failures = 0
    try:
        session.commit()
    except IntegrityError:
        # A concurrent failure created the row first; one lost count is harmless.
        session.rollback()


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


def delete_account(session: Session, user: User) -> None:
    """Remove an account; its tokens stop working at once."""
    session.execute(delete(User).where(User.id == user.id))
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
