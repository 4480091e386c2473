"""A database outage answers a 503 problem with Retry-After, in every service, never a 500."""

from __future__ import annotations

import socket

import pytest
from flask import Flask
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from flotilla_kit import problems
from flotilla_kit.db import Database


def dead_postgresql_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"postgresql+psycopg://flotilla@127.0.0.1:{port}/gone"


def make_app(url: str, error: Exception | None = None) -> Flask:
    app = Flask("db-test")
    problems.init_app(app)
    database = Database()
    database.init_app(app, url)

    @app.get("/query")
    def run_query() -> dict[str, bool]:
        if error is not None:
            raise error
        database.session.execute(text("SELECT 1"))
        return {"ok": True}

    return app


def test_a_database_nobody_listens_on_answers_503_with_retry_after() -> None:
    response = make_app(dead_postgresql_url()).test_client().get("/query")
    assert response.status_code == 503
    assert response.content_type == "application/problem+json"
    assert response.json is not None
    assert response.json["type"].endswith("/database-unavailable")
    assert response.headers["Retry-After"] == "1"


@pytest.mark.parametrize(
    "error",
    [
        OperationalError("SELECT 1", {}, Exception("terminating connection due to administrator command")),
        ProgrammingError("SELECT 1", {}, Exception("the connection is lost"), connection_invalidated=True),
        PoolTimeout("QueuePool limit of size 5 overflow 5 reached"),
    ],
    ids=["connection-lost", "invalidated", "pool-exhausted"],
)
def test_a_lost_connection_or_an_exhausted_pool_is_503(error: Exception) -> None:
    response = make_app("sqlite:///:memory:", error).test_client().get("/query")
    assert response.status_code == 503
    assert response.json is not None
    assert response.json["type"].endswith("/database-unavailable")
    assert response.headers["Retry-After"] == "1"


def test_other_database_errors_are_still_500s_that_reveal_nothing() -> None:
    error = IntegrityError("INSERT", {}, Exception("duplicate key value violates unique constraint"))
    response = make_app("sqlite:///:memory:", error).test_client().get("/query")
    assert response.status_code == 500
    assert response.json is not None
    assert "duplicate" not in response.get_data(as_text=True)


def test_a_working_database_answers() -> None:
    response = make_app("sqlite:///:memory:").test_client().get("/query")
    assert response.status_code == 200
