"""Alembic migrations: one shared environment, each service's own version scripts."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, text

from flotilla_kit.db import make_engine, normalise_url

ENVIRONMENT = Path(__file__).with_name("alembic")
MIGRATION_LOCK_KEY = 0x466C6F74  # "Flot"


def alembic_config(database_url: str, versions: Path, metadata: MetaData) -> Config:
    """An Alembic config for one service's database and version scripts."""
    config = Config()
    config.set_main_option("script_location", str(ENVIRONMENT))
    config.set_main_option("version_locations", str(versions))
    config.set_main_option("path_separator", "os")
    config.set_main_option("sqlalchemy.url", normalise_url(database_url).replace("%", "%%"))
    config.attributes["target_metadata"] = metadata
    return config


def upgrade(database_url: str, versions: Path, metadata: MetaData) -> None:
    """Bring the database to the newest revision (a no-op when it is already there)."""
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Replicas starting together migrate one at a time.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            config = alembic_config(database_url, versions, metadata)
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()
