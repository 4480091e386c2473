"""Revoked subjects: the issuer's list, fetched and cached, checked on every verified token.

A token is revoked when its ``sub`` is on the list with a revocation time at or after the
token's ``iat``: a deleted account, or a service client taken out of the configuration. The
list only holds revocations younger than the longest token lifetime, so it stays small and a
lookup is one dict access.

The bound: a revocation takes effect within ``refresh_seconds`` (plus one fetch) while the
issuer answers. When it does not, the last list is used for ``max_staleness_seconds`` more;
after that tokens are refused with a 503 until a fetch succeeds, so the bound holds whatever
happens to the issuer. Public endpoints need no token and are not affected.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from flotilla_kit.problems import Problem

log = logging.getLogger("flotilla.auth.revocation")


class RevocationList:
    """The issuer's revoked subjects, refreshed at most every ``refresh_seconds``.

    One request thread refreshes a due list while the others go on with the current one, so
    a refresh never queues requests behind it; only the very first fetch is waited for.
    """

    def __init__(
        self,
        fetch: Callable[[], Any],
        *,
        refresh_seconds: float = 5,
        max_staleness_seconds: float = 60,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fetch = fetch
        self.refresh_seconds = refresh_seconds
        self.max_staleness_seconds = max_staleness_seconds
        self.clock = clock
        self._revoked: dict[str, float] | None = None
        self._fetched_at = -float("inf")
        self._next_attempt = -float("inf")
        self._refreshing = threading.Lock()

    def is_revoked(self, claims: Mapping[str, Any]) -> bool:
        """True when the token these (verified) claims come from was issued before its revocation."""
        revoked_at = self._current().get(str(claims.get("sub")))
        return revoked_at is not None and float(claims.get("iat", 0)) <= revoked_at

    def ensure_loaded(self) -> None:
        """Raise unless a list has been fetched (a readiness check)."""
        self._current()

    def _current(self) -> dict[str, float]:
        now = self.clock()
        if now >= self._next_attempt and self._refreshing.acquire(blocking=self._revoked is None):
            try:
                if self.clock() >= self._next_attempt:  # not refreshed while this thread waited
                    self._refresh()
            finally:
                self._refreshing.release()
        age = self.clock() - self._fetched_at
        if self._revoked is None or age > self.refresh_seconds + self.max_staleness_seconds:
            raise Problem(
                503,
                "revocations-unavailable",
                "The token revocation list cannot be fetched right now.",
                headers={"Retry-After": "1"},
            )
        return self._revoked

    def _refresh(self) -> None:
        try:
            document = self.fetch()
            revoked = {str(entry["sub"]): float(entry["revoked_at"]) for entry in document["revoked"]}
        except (Problem, ValueError, KeyError, TypeError) as exc:
            log.warning("keeping the last revocation list", extra={"error": str(exc)})
            # One attempt a second at most: an unreachable issuer costs one request in many.
            self._next_attempt = self.clock() + min(1.0, self.refresh_seconds)
            return
        self._revoked = revoked
        self._fetched_at = self.clock()
        self._next_attempt = self._fetched_at + self.refresh_seconds
