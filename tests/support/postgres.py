"""Fresh PostgreSQL databases for a test session, on the server scripts/postgres.sh runs."""

from __future__ import annotations

import os

import psycopg
from sqlalchemy.engine import make_url

DEFAULT_SERVER = "postgresql+psycopg://flotilla@127.0.0.1:54329"


def server_url() -> str:
    """The PostgreSQL server the tests use (``FLOTILLA_TEST_PG_URL`` overrides)."""
    return os.environ.get("FLOTILLA_TEST_PG_URL", DEFAULT_SERVER)


def _admin_dsn(url: str) -> str:
    parsed = make_url(url)
    return parsed.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    url = server_url()
    try:
        return psycopg.connect(_admin_dsn(url), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise RuntimeError(
            f"PostgreSQL is not reachable at {url}: start it with 'scripts/postgres.sh up' "
            "('make test' does this)"
        ) from exc


def recreate_database(name: str) -> str:
    """Drop and create database ``name``; return its SQLAlchemy URL."""
    with _admin() as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return make_url(server_url()).set(database=name).render_as_string(hide_password=False)


def drop_database(name: str) -> None:
    """Remove a test database (its connections are closed first)."""
    with _admin() as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def query(url: str, sql: str, *params: object) -> list[tuple[object, ...]]:
    """Run one SQL statement against a test database and return its rows."""
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as connection:
        cursor = connection.execute(sql, params or None)
        return cursor.fetchall() if cursor.description else []
