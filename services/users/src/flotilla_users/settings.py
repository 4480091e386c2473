"""The users service's configuration."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from marshmallow.validate import Length, Range

from flotilla_kit.settings import PRODUCTION, ConfigError, KitSettings, finish, read_env, secret

SERVICE = "users"


@dataclass(frozen=True)
class ServiceClientConfig:
    """A service allowed the client-credentials grant, with its secret and scopes."""

    client_id: str
    secret: str | None  # only the migration, which registers the clients, is given it
    scopes: frozenset[str]


@dataclass(frozen=True)
class RateLimit:
    """At most ``limit`` counted requests per client address in a window of ``window_seconds``."""

    name: str
    limit: int
    window_seconds: int


@dataclass(frozen=True)
class UsersSettings(KitSettings):
    """Shared settings plus keys, token lifetime, service clients and the first admin."""

    jwt_keys_dir: Path
    jwt_active_kid: str | None
    access_token_ttl_seconds: int
    oauth_clients: tuple[ServiceClientConfig, ...]
    admin_email: str | None
    admin_password: str | None
    login_max_failures: int
    login_lockout_seconds: int
    login_address_limit: RateLimit
    token_address_limit: RateLimit
    # argon2 hashes a process runs at once (64 MiB each): see flotilla_users.passwords.
    password_hash_concurrency: int = 1

    @classmethod
    def load(cls, service_name: str = SERVICE) -> UsersSettings:
        """Read and validate the environment; every bad variable is named."""
        env = read_env()
        fields = KitSettings.fields_from(env, service_name)
        keys_dir = env.str("JWT_KEYS_DIR", None)
        client_ids = env.list("OAUTH_CLIENTS", [], subcast=str)
        clients = []
        for client_id in client_ids:
            prefix = f"OAUTH_CLIENT_{client_id.upper().replace('-', '_')}"
            client_secret = secret(env, f"{prefix}_SECRET", validate=Length(min=16))
            scopes = env.str(f"{prefix}_SCOPES", "")
            clients.append((client_id, client_secret, scopes, prefix))
        extra: dict[str, Any] = {
            "jwt_active_kid": env.str("JWT_ACTIVE_KID", None),
            "access_token_ttl_seconds": env.int(
                "ACCESS_TOKEN_TTL_SECONDS", 900, validate=Range(min=30, max=86400)
            ),
            "admin_email": env.str("ADMIN_EMAIL", None),
            "admin_password": secret(env, "ADMIN_PASSWORD", validate=Length(min=8)),
            "password_hash_concurrency": env.int(
                "PASSWORD_HASH_CONCURRENCY", 1, validate=Range(min=1, max=64)
            ),
            "login_max_failures": env.int("LOGIN_MAX_FAILURES", 5, validate=Range(min=1)),
            "login_lockout_seconds": env.int("LOGIN_LOCKOUT_SECONDS", 60, validate=Range(min=1)),
            "login_address_limit": RateLimit(
                "login-failures-per-address",
                env.int("LOGIN_MAX_FAILURES_PER_ADDRESS", 20, validate=Range(min=1)),
                env.int("LOGIN_ADDRESS_WINDOW_SECONDS", 300, validate=Range(min=1, max=86400)),
            ),
            "token_address_limit": RateLimit(
                "token-requests-per-address",
                env.int("TOKEN_REQUESTS_PER_ADDRESS", 60, validate=Range(min=1)),
                env.int("TOKEN_ADDRESS_WINDOW_SECONDS", 60, validate=Range(min=1, max=86400)),
            ),
        }
        finish(env)
        problems = []
        if keys_dir is None and fields["environment"] != "development":
            problems.append("JWT_KEYS_DIR: required in production")
        if fields["environment"] == PRODUCTION and not is_issuer_identifier(fields["jwt_issuer"]):
            problems.append(
                f"JWT_ISSUER: {fields['jwt_issuer']!r} is not an issuer identifier: in production an "
                "https URL without query or fragment (RFC 8414), e.g. https://shop.example.com"
            )
        if problems:
            raise ConfigError(f"invalid configuration: {'; '.join(problems)}")
        return cls(
            **fields,
            jwt_keys_dir=Path(keys_dir) if keys_dir else fields["data_dir"] / "jwt-keys",
            oauth_clients=tuple(
                ServiceClientConfig(client_id, client_secret, frozenset(scopes.split()))
                for client_id, client_secret, scopes, _prefix in clients
            ),
            **extra,
        )

    @classmethod
    def load_for_migration(cls, service_name: str = SERVICE) -> UsersSettings:
        """The settings ``migrate`` needs: also every client's secret and the admin's password.

        Only the migration registers clients and the admin, so only it is given their secrets.
        """
        settings = cls.load(service_name)
        problems = [
            f"OAUTH_CLIENT_{client.client_id.upper().replace('-', '_')}_SECRET: "
            f"required for OAuth client {client.client_id!r}"
            for client in settings.oauth_clients
            if not client.secret
        ]
        if bool(settings.admin_email) != bool(settings.admin_password):
            problems.append("ADMIN_EMAIL and ADMIN_PASSWORD: set both or neither")
        if problems:
            raise ConfigError(f"invalid configuration: {'; '.join(problems)}")
        return settings


def is_issuer_identifier(value: str) -> bool:
    """Whether ``value`` is an RFC 8414 issuer: an https URL with a host, no query, no fragment."""
    if "?" in value or "#" in value or any(char.isspace() for char in value):
        return False
    try:
        parts = urlsplit(value)
        return parts.scheme == "https" and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a malformed port or IPv6 literal
        return False
