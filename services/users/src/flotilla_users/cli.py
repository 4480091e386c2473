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
        load_migration_settings=UsersSettings.load_for_migration,
        metadata=metadata,
        versions=Path(__file__).with_name("migrations") / "versions",
        bootstrap=bootstrap,
    )
)


@main.command("rotate-key")
@click.option(
    "--activate/--no-activate",
    default=False,
    help="Sign with the new key at once (one replica only); by default it is published first.",
)
def rotate_key(activate: bool) -> None:
    """Add a new signing key to JWT_KEYS_DIR and print its kid and the next step of the rotation."""
    from flotilla_users.keys import (  # noqa: PLC0415
        SigningKeys,
        generate_key,
        new_key_name,
        thumbprint,
        write_private_key,
    )

    settings = load_or_exit(UsersSettings.load)
    current = SigningKeys.from_directory(settings.jwt_keys_dir, settings.jwt_active_kid).active_kid
    key = generate_key()
    name = new_key_name()
    write_private_key(settings.jwt_keys_dir / f"{name}.pem", key)
    kid = thumbprint(key.public_key())
    click.echo(f"new key {name}.pem in {settings.jwt_keys_dir}, kid {kid}")
    if activate:
        click.echo(
            "it signs from the next start (the newest file signs unless JWT_ACTIVE_KID says otherwise)"
        )
    else:
        click.echo(
            f"1. publish it: set JWT_ACTIVE_KID={current} (the current key keeps signing) and roll out\n"
            f"2. once every replica publishes it, sign with it: set JWT_ACTIVE_KID={kid} and roll out\n"
            "3. after ACCESS_TOKEN_TTL_SECONDS more, remove the old key's file and roll out"
        )
