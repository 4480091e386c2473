"""``flotilla-<service> db ...``: Alembic's commands on the service's database and version scripts.

Every command takes the database from the same settings as ``migrate`` (``DATABASE_URL``, or the
development SQLite file) and imports Alembic and the models only when it runs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from flotilla_kit.settings import KitSettings

if TYPE_CHECKING:
    from flotilla_kit.cli import ServiceDefinition


@contextmanager
def _reported() -> Iterator[None]:
    """Alembic's and the database's refusals as one ``error:`` line and exit 1, not a traceback."""
    from alembic.util import CommandError  # noqa: PLC0415 - Alembic: these commands only

    from flotilla_kit.migrations import DatabaseUnavailable  # noqa: PLC0415

    try:
        yield
    except (CommandError, DatabaseUnavailable) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


def db_group(service: ServiceDefinition[Any, Any], load_settings: Callable[[], KitSettings]) -> click.Group:
    """The ``db`` commands of one service; ``load_settings`` exits with a message on bad settings."""

    def where() -> dict[str, Any]:
        settings = load_settings()
        return {
            "database_url": settings.database_url,
            "versions": service.versions,
            "metadata": service.target_metadata(),
            "wait_seconds": settings.database_wait_seconds,
        }

    db = click.Group("db", help=f"The {service.name} database's schema: revisions, upgrade, downgrade.")

    @db.command()
    @click.option("-m", "--message", required=True, help="What the revision changes (it names the file).")
    @click.option(
        "--autogenerate",
        is_flag=True,
        help="Compare the models with the database (which must be at the head) and write the difference.",
    )
    def revision(message: str, autogenerate: bool) -> None:
        """Write a new revision script into the service's migrations."""
        from flotilla_kit import migrations  # noqa: PLC0415

        with _reported():
            path = migrations.new_revision(message=message, autogenerate=autogenerate, **where())
        if path is None:
            click.echo("no difference between the models and the database: nothing written")
            return
        click.echo(f"wrote {path}")

    @db.command()
    @click.argument("revision", default="head")
    def upgrade(revision: str) -> None:
        """Upgrade the schema to REVISION (the newest by default, like `migrate` without its data)."""
        from flotilla_kit import migrations  # noqa: PLC0415

        with _reported():
            database = where()
            migrations.upgrade(revision=revision, **database)
            click.echo(f"{service.name}: {_current_line(migrations.current(**database))}")

    @db.command(context_settings={"ignore_unknown_options": True})  # -1 is a revision, not an option
    @click.argument("revision")
    def downgrade(revision: str) -> None:
        """Take the schema back to REVISION: an id, -1 for one step, or base for none."""
        from flotilla_kit import migrations  # noqa: PLC0415

        with _reported():
            database = where()
            migrations.downgrade(revision=revision, **database)
            click.echo(f"{service.name}: {_current_line(migrations.current(**database))}")

    @db.command()
    def current() -> None:
        """Print the revision the database is at."""
        from flotilla_kit import migrations  # noqa: PLC0415

        with _reported():
            click.echo(_current_line(migrations.current(**where())))

    @db.command()
    def history() -> None:
        """List every revision, newest first, marking the database's."""
        from flotilla_kit import migrations  # noqa: PLC0415

        with _reported():
            migrations.history(**where())

    return db


def _current_line(revisions: list[str]) -> str:
    return "at " + ", ".join(revisions) if revisions else "no revision applied"
