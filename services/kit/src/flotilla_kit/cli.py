"""The command line each service ships: ``migrate``, ``serve``, ``check-config`` and ``db``.

``serve`` replaces this process with gunicorn, so what a module here imports only slows every
start: Alembic and a service's models are imported by the commands that use them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

import click

from flotilla_kit.db_commands import db_group
from flotilla_kit.server import ServerSettings
from flotilla_kit.settings import CRASH_AT_START_MESSAGE, ConfigError, KitSettings

if TYPE_CHECKING:
    from sqlalchemy import MetaData

T = TypeVar("T")
S = TypeVar("S", bound=KitSettings)
M = TypeVar("M", bound=KitSettings)


@dataclass(frozen=True)
class ServiceDefinition(Generic[S, M]):
    """What the kit needs to know to migrate and serve one service.

    ``load_settings`` reads what ``serve`` needs, ``load_migration_settings`` what ``migrate``
    and ``bootstrap`` need: each container is given only its own secrets. ``metadata`` may be a
    function that imports the models and returns theirs, so that only ``migrate`` imports them.
    """

    name: str
    app_factory: str
    load_settings: Callable[[], S]
    load_migration_settings: Callable[[], M]
    metadata: MetaData | Callable[[], MetaData]
    versions: Path
    bootstrap: Callable[[M], None] | None = None

    def target_metadata(self) -> MetaData:
        """The tables the migrations are checked against."""
        return self.metadata() if callable(self.metadata) else self.metadata


def load_or_exit(load: Callable[[], T]) -> T:
    """Settings, or exit 2 with a message that names each bad variable."""
    try:
        return load()
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


def service_cli(service: ServiceDefinition[S, M]) -> click.Group:
    """A click group with the commands every service has; services may add their own."""

    @click.group(help=f"Flotilla {service.name} service.")
    def group() -> None:
        os.environ.setdefault("FLOTILLA_SERVICE", service.name)

    @group.command("check-config")
    def check_config() -> None:
        """Validate the environment of every command (serve and migrate) and exit."""
        settings = load_or_exit(service.load_settings)
        load_or_exit(service.load_migration_settings)
        load_or_exit(ServerSettings.load)
        if faults := settings.faults.describe():
            click.echo(f"warning: faults injected on purpose: {faults}", err=True)
        click.echo("configuration ok")

    @group.command()
    def migrate() -> None:
        """Upgrade the database schema to the newest revision, then bootstrap its data."""
        from flotilla_kit import migrations  # noqa: PLC0415 - Alembic: this command only

        settings = load_or_exit(service.load_migration_settings)
        try:
            migrations.upgrade(
                settings.database_url,
                service.versions,
                service.target_metadata(),
                wait_seconds=settings.database_wait_seconds,
            )
        except migrations.DatabaseUnavailable as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        if service.bootstrap is not None:
            service.bootstrap(settings)
        click.echo(f"{service.name}: database at the newest revision")

    @group.command()
    def serve() -> None:
        """Run the service under gunicorn with the shared configuration."""
        settings = load_or_exit(service.load_settings)
        load_or_exit(ServerSettings.load)
        if settings.faults.crash_at_start:
            # Before gunicorn: the container exits at once (the app factory would stop it too).
            click.echo(f"error: {CRASH_AT_START_MESSAGE}", err=True)
            sys.exit(1)
        argv = [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            "python:flotilla_kit.gunicorn_conf",
            service.app_factory,
        ]
        os.execv(sys.executable, argv)

    group.add_command(db_group(service, lambda: load_or_exit(service.load_migration_settings)))
    return group
