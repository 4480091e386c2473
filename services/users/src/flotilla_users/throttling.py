"""Rate limits per client address, counted in the users database so every worker and replica shares them.

Hand-written: the ``limits`` library keeps its counters in memory, Redis, Memcached or MongoDB,
not in SQL, and Redis would be one more server to run, secure and keep alive for a few counters.
A window is fixed: it opens at a key's first counted request and lasts ``window_seconds``; one
upsert counts a request and reads the count back, atomically on PostgreSQL and SQLite alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, literal, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from flotilla_kit.db import UtcDateTime, utcnow
from flotilla_kit.problems import Problem
from flotilla_users.metrics import THROTTLED
from flotilla_users.models import RateLimitWindow
from flotilla_users.settings import RateLimit

KEY_LENGTH = 255  # the column's; a client address is at most 45 characters


@dataclass(frozen=True)
class Hit:
    """One counted request: the count of its window so far and when the window ends."""

    limit: RateLimit
    key: str
    hits: int
    ends_at: datetime

    @property
    def admitted(self) -> bool:
        """Whether this request is within the limit."""
        return self.hits <= self.limit.limit

    def retry_after(self) -> int:
        """Whole seconds until the window ends (at least 1): the ``Retry-After`` value."""
        return max(1, math.ceil((self.ends_at - utcnow()).total_seconds()))


class RateLimited(Problem):
    """429: too many requests from one client address, with ``Retry-After``."""

    def __init__(self, retry_after: int, detail: str = "Too many requests; try again later.") -> None:
        super().__init__(429, "rate-limited", detail, headers={"Retry-After": str(retry_after)})


def hit(session: Session, limit: RateLimit, key: str) -> Hit:
    """Count one request of ``key`` against ``limit`` and commit; refused ones count too.

    One ``INSERT .. ON CONFLICT DO UPDATE .. RETURNING``: the row lock orders parallel requests
    from any process, so exactly ``limit`` of a burst are admitted. Counting refused requests
    never moves the window's end, so a client that keeps knocking is released on time.
    """
    key = key[:KEY_LENGTH]
    now = utcnow()
    new_end = literal(now + timedelta(seconds=limit.window_seconds), UtcDateTime())
    insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    expired = RateLimitWindow.ends_at <= now
    statement = (
        insert(RateLimitWindow)
        .values(kind=limit.name, key=key, hits=1, ends_at=new_end)
        .on_conflict_do_update(
            index_elements=[RateLimitWindow.kind, RateLimitWindow.key],
            set_={
                "hits": case((expired, 1), else_=RateLimitWindow.hits + 1),
                "ends_at": case((expired, new_end), else_=RateLimitWindow.ends_at),
            },
        )
        .returning(RateLimitWindow.hits, RateLimitWindow.ends_at)
    )
    hits, ends_at = session.execute(statement).one()
    session.commit()
    if hits == 1:
        _forget_ended_windows(session, now)
    counted = Hit(limit, key, hits, ends_at)
    if not counted.admitted:
        THROTTLED.labels(limit.name).inc()
    return counted


def give_back(session: Session, counted: Hit) -> None:
    """Uncount an admitted request, unless its window has ended meanwhile (a new one is not owed it)."""
    session.execute(
        update(RateLimitWindow)
        .where(
            RateLimitWindow.kind == counted.limit.name,
            RateLimitWindow.key == counted.key,
            RateLimitWindow.ends_at == counted.ends_at,
            RateLimitWindow.hits > 0,
        )
        .values(hits=RateLimitWindow.hits - 1)
    )
    session.commit()


def _forget_ended_windows(session: Session, now: datetime) -> None:
    # Run when a window opens, so the table holds about the keys active in one window: each row
    # is deleted once, found through the index on ends_at, and the usual call deletes nothing.
    try:
        session.execute(delete(RateLimitWindow).where(RateLimitWindow.ends_at < now))
        session.commit()
    except DBAPIError:
        # Two replicas' deletes may deadlock on PostgreSQL; the next window's opening cleans up.
        session.rollback()
