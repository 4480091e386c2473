"""SQLAlchemy 2 engine and request-scoped sessions; SQLite by default, PostgreSQL by URL."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask, Response
from sqlalchemy import Connection, DateTime, Dialect, Engine, Table, create_engine, event, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, scoped_session, sessionmaker
from sqlalchemy.types import TypeDecorator

from flotilla_kit import tracing
from flotilla_kit.problems import Problem, internal_error_response, problem_response

EXTENSION = "flotilla_db"
log = logging.getLogger("flotilla.db")


def utcnow() -> datetime:
    """Timezone-aware now, in UTC."""
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use an aware UTC time")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def normalise_url(url: str) -> str:
    """Use the psycopg 3 driver for plain ``postgres(ql)://`` URLs."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str, idle_ping_seconds: float | None = None) -> Engine:
    """An engine tuned for the backend: WAL and a busy timeout on SQLite, idle pings on PostgreSQL."""
    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": 30}, hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(
        parsed,
        pool_size=5,
        max_overflow=5,
        pool_timeout=5,
        pool_recycle=1800,
        hide_parameters=True,  # bound values (password hashes, emails) never reach error logs
        connect_args={"connect_timeout": 5},
    )
    ping_idle_connections(engine, IDLE_PING_SECONDS if idle_ping_seconds is None else idle_ping_seconds)
    return engine


IDLE_PING_SECONDS = 5.0
_CHECKED_IN_AT = "flotilla_checked_in_at"


def ping_idle_connections(engine: Engine, idle_seconds: float) -> None:
    """Ping a pooled connection before use when it sat idle for ``idle_seconds``.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: a database round trip per request.
    A connection that was in use a moment ago is as alive as a ping would show, so only idle
    ones are pinged (a database restarted overnight); a dead one is replaced before the
    request sees it (``DisconnectionError`` makes the pool connect afresh).
    """

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN_AT] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_CHECKED_IN_AT)
        if since is None or time.monotonic() - since < idle_seconds:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError(f"a pooled connection is gone: {exc}") from exc
        if not alive:
            raise DisconnectionError("a pooled connection did not answer its ping")


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class Database:
    """One engine per process and one session per request (removed at teardown)."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self._autocommit: Engine | None = None
        self._sessions: scoped_session[Session] = scoped_session(sessionmaker(expire_on_commit=False))

    @property
    def session(self) -> Session:
        """The session of the current request (thread), created on first use."""
        return self._sessions()

    def init_app(self, app: Flask, url: str) -> None:
        """Bind to ``url``, close the request's session afterwards, add a readiness check."""
        self.engine = make_engine(url)
        tracing.instrument_engine(self.engine)
        # The same pool: a connection is switched to autocommit for one read and back on return.
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._sessions.configure(bind=self.engine)
        app.extensions[EXTENSION] = self

        @app.teardown_appcontext
        def _remove_session(_error: BaseException | None) -> None:
            self._sessions.remove()

        for error_class in (DBAPIError, DisconnectionError, PoolTimeout):
            app.register_error_handler(error_class, _database_error)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A pooled connection for a read of one statement, with no transaction around it.

        One statement sees one snapshot by itself: without the request session's BEGIN and
        ROLLBACK, a single-row read is one database round trip instead of three.
        """
        assert self._autocommit is not None, "Database.init_app was not called"
        with self._autocommit.connect() as connection:
            yield connection

    def ping(self) -> None:
        """Raise when the database cannot answer ``SELECT 1``."""
        assert self.engine is not None, "Database.init_app was not called"
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def is_postgresql(self) -> bool:
        """Whether the bound database is PostgreSQL."""
        return self.engine is not None and self.engine.dialect.name == "postgresql"


class DatabaseUnavailable(Problem):
    """The database cannot be reached or dropped the connection: a 503 the caller may retry."""

    def __init__(self) -> None:
        super().__init__(
            503,
            "database-unavailable",
            "The database is unavailable right now; retry shortly.",
            headers={"Retry-After": "1"},
        )


def is_database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` is the database being down, restarting or out of connections, not a bug.

    psycopg reports a refused or lost connection, a server shutting down or starting up as an
    ``OperationalError``; a closed connection as an ``InterfaceError``; the pool's wait as a timeout.
    """
    if isinstance(error, (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


def _database_error(error: Exception) -> Response:
    # One place for every service: a database outage is a 503 problem with Retry-After, never a 500.
    if not is_database_unavailable(error):
        return internal_error_response(error)
    log.warning("database unavailable", extra={"error": str(getattr(error, "orig", None) or error)})
    problem = DatabaseUnavailable()
    return problem_response(problem.status, problem.body(), problem.headers)


@contextmanager
def standalone_session(url: str) -> Iterator[Session]:
    """A session outside any request (command-line tasks); the engine is closed afterwards."""
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


def insert_ignoring_conflicts(session: Session, model: type[Any] | Table) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` into ``model``'s table, in the session's dialect.

    Add ``.values(...)`` and, to learn whether the row went in, ``.returning(...)``: a conflict
    returns no row.
    """
    dialect = session.get_bind().dialect.name
    statement = postgresql_insert(model) if dialect == "postgresql" else sqlite_insert(model)
    return statement.on_conflict_do_nothing()


def insert_if_absent(session: Session, model: type[Any], values: dict[str, Any]) -> None:
    """Insert a row unless its primary key exists already (safe under concurrency)."""
    session.execute(insert_ignoring_conflicts(session, model).values(**values))
