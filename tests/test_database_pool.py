"""Pooled PostgreSQL connections: dropped idle ones are replaced; a read's autocommit does not outlive it."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from flotilla_kit.db import Database, make_engine
from tests.support.postgres import drop_database, query, recreate_database


@pytest.fixture
def database() -> Iterator[str]:
    name = f"flotilla_test_{os.getpid()}_pool"
    url = recreate_database(name)
    yield url
    drop_database(name)


def backend_pid(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def terminate(database: str, pid: int) -> None:
    """What a database restart does to a pooled connection."""
    query(database, "SELECT pg_terminate_backend(%s)", pid)


def test_an_idle_connection_the_server_dropped_is_replaced_before_use(database: str) -> None:
    engine = make_engine(database, idle_ping_seconds=0.2)
    try:
        dropped = backend_pid(engine)
        terminate(database, dropped)
        time.sleep(0.3)  # idle in the pool past the threshold
        assert backend_pid(engine) != dropped  # no error: the ping found it dead
    finally:
        engine.dispose()


def test_a_connection_in_steady_use_is_not_pinged(database: str) -> None:
    """The control: without the idle ping, the dropped connection reaches the caller once."""
    engine = make_engine(database, idle_ping_seconds=3600)
    try:
        dropped = backend_pid(engine)
        terminate(database, dropped)
        with pytest.raises(OperationalError):
            backend_pid(engine)
        assert backend_pid(engine) != dropped  # the pool recovers by itself
    finally:
        engine.dispose()


def test_a_read_runs_outside_a_transaction_and_its_connection_returns_transactional(database: str) -> None:
    query(database, "CREATE TABLE marks (id integer PRIMARY KEY)")
    app = Flask("read-test")
    db = Database()
    db.init_app(app, database)
    assert db.engine is not None
    try:
        with db.read() as connection:
            read_pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            # In autocommit every statement is the first of its own transaction, where PostgreSQL's
            # now() is the statement's start; inside one transaction a later statement starts later.
            assert connection.exec_driver_sql("SELECT now() = statement_timestamp()").scalar_one()
            assert connection.exec_driver_sql("SELECT txid_current_if_assigned()").scalar_one() is None
        with app.app_context():
            session = db.session
            assert session.execute(text("SELECT pg_backend_pid()")).scalar_one() == read_pid  # pooled
            session.execute(text("INSERT INTO marks VALUES (1)"))
            assert session.execute(text("SELECT now() = statement_timestamp()")).scalar_one() is False
            session.rollback()
        assert query(database, "SELECT count(*) FROM marks") == [(0,)]
    finally:
        db.engine.dispose()
