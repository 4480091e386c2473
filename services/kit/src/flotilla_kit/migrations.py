"""Alembic migrations: one shared environment, each service's own version scripts."""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.operations.ops import MigrationScript
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import Engine, MetaData, text
from sqlalchemy.exc import OperationalError
from tenacity import Retrying, before_sleep_log, retry_if_exception_type, stop_after_delay, wait_exponential

from flotilla_kit.db import make_engine, normalise_url

ENVIRONMENT = Path(__file__).with_name("alembic")
REVISION_FILE_TEMPLATE = "%%(rev)s_%%(slug)s"
"""``0004_add_colour.py``: the services' revision files are named by number and message."""
MIGRATION_LOCK_KEY = 0x466C6F74  # "Flot"
LOG = logging.getLogger(__name__)


class DatabaseUnavailable(RuntimeError):
    """The database did not answer within the wait."""


def alembic_config(database_url: str, versions: Path, metadata: MetaData) -> Config:
    """An Alembic config for one service's database and version scripts."""
    config = Config(stdout=sys.stdout)  # Alembic's default is the stdout of its import
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


@contextmanager
def connected_config(
    database_url: str, versions: Path, metadata: MetaData, *, wait_seconds: float = 0
) -> Iterator[Config]:
    """An Alembic config holding a connection in one transaction (on PostgreSQL, holding the lock)."""
    engine = make_engine(database_url)
    try:
        wait_for_database(engine, wait_seconds)
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Replicas starting together migrate one at a time, and so does a developer's command.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            config = alembic_config(database_url, versions, metadata)
            config.attributes["connection"] = connection
            yield config
    finally:
        engine.dispose()


def upgrade(
    database_url: str, versions: Path, metadata: MetaData, *, wait_seconds: float = 0, revision: str = "head"
) -> None:
    """Bring the database to ``revision``, waiting up to ``wait_seconds`` for it to answer."""
    with connected_config(database_url, versions, metadata, wait_seconds=wait_seconds) as config:
        command.upgrade(config, revision)


def downgrade(
    database_url: str, versions: Path, metadata: MetaData, revision: str, *, wait_seconds: float = 0
) -> None:
    """Take the database back to ``revision`` (``-1``, ``base`` or an id)."""
    with connected_config(database_url, versions, metadata, wait_seconds=wait_seconds) as config:
        command.downgrade(config, revision)


def describe(script: Script) -> str:
    """``0003 (head) revoked subjects``: a revision's id, place and message."""
    place = " (head)" if script.is_head else ""
    return f"{script.revision}{place} {script.doc}"


def current(database_url: str, versions: Path, metadata: MetaData, *, wait_seconds: float = 0) -> list[str]:
    """The revisions the database is at, described; empty when none is applied."""
    with connected_config(database_url, versions, metadata, wait_seconds=wait_seconds) as config:
        heads = MigrationContext.configure(config.attributes["connection"]).get_current_heads()
        scripts = ScriptDirectory.from_config(config)
        return [describe(scripts.get_revision(head)) for head in heads]


def history(database_url: str, versions: Path, metadata: MetaData, *, wait_seconds: float = 0) -> None:
    """Print every revision, newest first, marking the database's."""
    with connected_config(database_url, versions, metadata, wait_seconds=wait_seconds) as config:
        command.history(config, indicate_current=True)


def next_revision_id(config: Config) -> str | None:
    """``0004`` after ``0003`` while every id is a number (the services' scheme); else Alembic's own."""
    ids = [script.revision for script in ScriptDirectory.from_config(config).walk_revisions()]
    if not all(revision.isdigit() for revision in ids):
        return None
    return f"{max(map(int, ids), default=0) + 1:04d}"


def _format_with_ruff(config: Config) -> None:
    # Development installs have ruff; the images do not, and nobody writes a revision there.
    if importlib.util.find_spec("ruff") is None:
        return
    config.set_section_option("post_write_hooks", "hooks", "ruff")
    config.set_section_option("post_write_hooks", "ruff.type", "module")
    config.set_section_option("post_write_hooks", "ruff.module", "ruff")
    config.set_section_option("post_write_hooks", "ruff.options", "format REVISION_SCRIPT_FILENAME")


def _write_revision(config: Config, message: str, *, autogenerate: bool) -> Path | None:
    config.set_main_option("file_template", REVISION_FILE_TEMPLATE)
    _format_with_ruff(config)

    def skip_when_nothing_changed(
        _context: object, _revision: object, directives: list[MigrationScript]
    ) -> None:
        if autogenerate and all(ops.is_empty() for ops in directives[0].upgrade_ops_list):
            directives[:] = []

    written = command.revision(
        config,
        message=message,
        autogenerate=autogenerate,
        rev_id=next_revision_id(config),
        process_revision_directives=skip_when_nothing_changed,
    )
    scripts = written if isinstance(written, list) else [written]
    return Path(scripts[0].path) if scripts and scripts[0] is not None else None


def new_revision(
    database_url: str,
    versions: Path,
    metadata: MetaData,
    message: str,
    *,
    autogenerate: bool,
    wait_seconds: float = 0,
) -> Path | None:
    """Write a revision script into ``versions``; None when autogenerate found no change.

    With ``autogenerate`` the models are compared with the database, which must be at the head.
    """
    if not autogenerate:
        return _write_revision(alembic_config(database_url, versions, metadata), message, autogenerate=False)
    with connected_config(database_url, versions, metadata, wait_seconds=wait_seconds) as config:
        return _write_revision(config, message, autogenerate=True)
