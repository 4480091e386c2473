"""Password hashing with argon2id, and a verification that costs the same for unknown users."""

from __future__ import annotations

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError

# argon2id, RFC 9106's low-memory profile: 64 MiB, 3 passes, 4 lanes, 16-byte salt. Pinned
# rather than the library's default, so that an upgrade cannot quietly change what is stored.
_hasher = PasswordHasher.from_parameters(profiles.RFC_9106_LOW_MEMORY)
# Verified against when the account does not exist, so a miss costs as much as a wrong password.
_DUMMY_HASH = _hasher.hash("flotilla-timing-equaliser")


def hash_password(password: str) -> str:
    """An argon2id hash with a random salt."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches; a ``None`` hash still spends the full verification time."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with weaker parameters than today's."""
    return _hasher.check_needs_rehash(password_hash)
