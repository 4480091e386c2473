"""``flotilla-users``: migrate, serve, rotate keys.

The models, accounts (argon2, which hashes at import) and keys are imported by the commands
that use them: ``serve`` replaces this process with gunicorn at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from flotilla_kit.cli import ServiceDefinition, load_or_exit, service_cli
from flotilla_users.settings import SERVICE, UsersSettings

if TYPE_CHECKING:
    from sqlalchemy import MetaData


def metadata() -> MetaData:
    """The users service's tables."""
    from flotilla_users.models import Base  # noqa: PLC0415 - `migrate` only

    return Base.metadata


def bootstrap(settings: UsersSettings) -> None:
    """Bring service clients in step with configuration and ensure the configured admin."""
    from flotilla_kit.db import standalone_session  # noqa: PLC0415 - `migrate` only
    from flotilla_users import accounts, clients  # noqa: PLC0415

    with standalone_session(settings.database_url) as session:
        clients.sync_clients(session, settings.oauth_clients)
        if settings.admin_email and settings.admin_password:
            accounts.ensure_admin(session, email=settings.admin_email, password=settings.admin_password)


main = service_cli(
    ServiceDefinition(
        name=SERVICE,
        app_factory="flotilla_users.app:create_app()",
        load_settings=UsersSettings.load,
        metadata=metadata,
        versions=Path(__file__).with_name("migrations") / "versions",
        bootstrap=bootstrap,
    )
)


@main.command("rotate-key")
@click.option("--activate/--no-activate", default=True, help="Sign new tokens with the new key.")
def rotate_key(activate: bool) -> None:
    """Add a new signing key to JWT_KEYS_DIR; old keys keep verifying until removed."""
    from flotilla_users.keys import generate_key, new_kid, write_private_key  # noqa: PLC0415

    settings = load_or_exit(UsersSettings.load)
    kid = new_kid()
    write_private_key(settings.jwt_keys_dir / f"{kid}.pem", generate_key())
    click.echo(f"new key {kid} in {settings.jwt_keys_dir}")
    if activate:
        click.echo(f"set JWT_ACTIVE_KID={kid} (or leave it unset: the newest key signs) and restart")
