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


def recreate_database(name: str) -> str:
    """Drop and create database ``name``; return its SQLAlchemy URL."""
    url = server_url()
    try:
        connection = psycopg.connect(_admin_dsn(url), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise RuntimeError(
            f"PostgreSQL is not reachable at {url}: start it with 'scripts/postgres.sh up' "
            "('make test' does this)"
        ) from exc
    with connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def query(url: str, sql: str, *params: object) -> list[tuple[object, ...]]:
    """Run one SQL statement against a test database and return its rows."""
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as connection:
        cursor = connection.execute(sql, params or None)
        return cursor.fetchall() if cursor.description else []
