"""Alembic migrations: one shared environment, each service's own version scripts."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, MetaData, text
from sqlalchemy.exc import OperationalError
from tenacity import Retrying, before_sleep_log, retry_if_exception_type, stop_after_delay, wait_exponential

from flotilla_kit.db import make_engine, normalise_url

ENVIRONMENT = Path(__file__).with_name("alembic")
MIGRATION_LOCK_KEY = 0x466C6F74  # "Flot"
LOG = logging.getLogger(__name__)


class DatabaseUnavailable(RuntimeError):
    """The database did not answer within the wait."""


def alembic_config(database_url: str, versions: Path, metadata: MetaData) -> Config:
    """An Alembic config for one service's database and version scripts."""
    config = Config()
    config.set_main_option("script_location", str(ENVIRONMENT))
    config.set_main_option("version_locations", str(versions))
    config.set_main_option("path_separator", "os")
    config.set_main_option("sqlalchemy.url", normalise_url(database_url).replace("%", "%%"))
    config.attributes["target_metadata"] = metadata
    return config


def wait_for_database(engine: Engine, seconds: float) -> None:
    """Connect, retrying with backoff for up to ``seconds`` while the server is not answering."""
    retrying = Retrying(
        retry=retry_if_exception_type(OperationalError),
        stop=stop_after_delay(seconds),
        wait=wait_exponential(multiplier=0.5, max=5),
        before_sleep=before_sleep_log(LOG, logging.WARNING),
        reraise=True,
    )
    try:
        for attempt in retrying:
            with attempt, engine.connect() as connection:
                connection.execute(text("SELECT 1"))
    except OperationalError as exc:
        raise DatabaseUnavailable(f"the database did not answer within {seconds:g}s: {exc.orig}") from exc


def upgrade(database_url: str, versions: Path, metadata: MetaData, *, wait_seconds: float = 0) -> None:
    """Bring the database to the newest revision, waiting up to ``wait_seconds`` for it to answer."""
    engine = make_engine(database_url)
    try:
        wait_for_database(engine, wait_seconds)
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Replicas starting together migrate one at a time.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            config = alembic_config(database_url, versions, metadata)
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()
