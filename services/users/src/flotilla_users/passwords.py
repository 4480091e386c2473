"""Password hashing with argon2id, and a verification that costs the same for unknown users.

Each hash takes 64 MiB while it runs, so a process runs a bounded number at once (the others
wait their turn): a pod's memory is then workers x (base + that number x 64 MiB), whatever the
threads and the load. Without the bound, a burst of logins on one pod is an out-of-memory kill.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError

# argon2id, RFC 9106's low-memory profile: 64 MiB, 3 passes, 4 lanes, 16-byte salt. Pinned
# rather than the library's default, so that an upgrade cannot quietly change what is stored.
_hasher = PasswordHasher.from_parameters(profiles.RFC_9106_LOW_MEMORY)
# Verified against when the account does not exist, so a miss costs as much as a wrong password.
_DUMMY_HASH = _hasher.hash("flotilla-timing-equaliser")
_slots = threading.BoundedSemaphore(1)


def limit_concurrent_hashes(count: int) -> None:
    """Let ``count`` hashes or verifications run at once in this process (PASSWORD_HASH_CONCURRENCY)."""
    global _slots  # noqa: PLW0603 - one bound per process, set once at start
    _slots = threading.BoundedSemaphore(count)


@contextmanager
def _slot() -> Iterator[None]:
    with _slots:
        yield


def hash_password(password: str) -> str:
    """An argon2id hash with a random salt."""
    with _slot():
        return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches; a ``None`` hash still spends the full verification time."""
    try:
        with _slot():
            matches = _hasher.verify(password_hash or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return False
    return matches and password_hash is not None


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with weaker parameters than today's."""
    return _hasher.check_needs_rehash(password_hash)
