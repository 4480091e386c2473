"""``flotilla-users``: migrate, serve, rotate keys."""

from __future__ import annotations

from pathlib import Path

import click

from flotilla_kit.cli import ServiceDefinition, load_or_exit, service_cli
from flotilla_kit.db import standalone_session
from flotilla_users import accounts, clients
from flotilla_users.keys import generate_key, new_kid, write_private_key
from flotilla_users.models import Base
from flotilla_users.settings import SERVICE, UsersSettings


def bootstrap(settings: UsersSettings) -> None:
    """Bring service clients in step with configuration and ensure the configured admin."""
    with standalone_session(settings.database_url) as session:
        clients.sync_clients(session, settings.oauth_clients)
        if settings.admin_email and settings.admin_password:
            accounts.ensure_admin(session, email=settings.admin_email, password=settings.admin_password)


main = service_cli(
    ServiceDefinition(
        name=SERVICE,
        app_factory="flotilla_users.app:create_app()",
        load_settings=UsersSettings.load,
        metadata=Base.metadata,
        versions=Path(__file__).with_name("migrations") / "versions",
        bootstrap=bootstrap,
    )
)


@main.command("rotate-key")
@click.option("--activate/--no-activate", default=True, help="Sign new tokens with the new key.")
def rotate_key(activate: bool) -> None:
    """Add a new signing key to JWT_KEYS_DIR; old keys keep verifying until removed."""
    settings = load_or_exit(UsersSettings.load)
    kid = new_kid()
    write_private_key(settings.jwt_keys_dir / f"{kid}.pem", generate_key())
    click.echo(f"new key {kid} in {settings.jwt_keys_dir}")
    if activate:
        click.echo(f"set JWT_ACTIVE_KID={kid} (or leave it unset: the newest key signs) and restart")
