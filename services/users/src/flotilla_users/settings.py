"""The users service's configuration."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marshmallow.validate import Length, Range

from flotilla_kit.settings import ConfigError, KitSettings, finish, read_env

SERVICE = "users"


@dataclass(frozen=True)
class ServiceClientConfig:
    """A service allowed the client-credentials grant, with its secret and scopes."""

    client_id: str
    secret: str
    scopes: frozenset[str]


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
            secret = env.str(f"{prefix}_SECRET", None, validate=Length(min=16))
            scopes = env.str(f"{prefix}_SCOPES", "")
            clients.append((client_id, secret, scopes, prefix))
        extra: dict[str, Any] = {
            "jwt_active_kid": env.str("JWT_ACTIVE_KID", None),
            "access_token_ttl_seconds": env.int(
                "ACCESS_TOKEN_TTL_SECONDS", 900, validate=Range(min=30, max=86400)
            ),
            "admin_email": env.str("ADMIN_EMAIL", None),
            "admin_password": env.str("ADMIN_PASSWORD", None, validate=Length(min=8)),
            "login_max_failures": env.int("LOGIN_MAX_FAILURES", 5, validate=Range(min=1)),
            "login_lockout_seconds": env.int("LOGIN_LOCKOUT_SECONDS", 60, validate=Range(min=1)),
        }
        finish(env)
        if keys_dir is None and fields["environment"] != "development":
            raise ConfigError("invalid configuration: JWT_KEYS_DIR: required in production")
        for client_id, secret, _scopes, prefix in clients:
            if not secret:
                raise ConfigError(
                    f"invalid configuration: {prefix}_SECRET: required for OAuth client {client_id!r}"
                )
        if bool(extra["admin_email"]) != bool(extra["admin_password"]):
            raise ConfigError("invalid configuration: ADMIN_EMAIL and ADMIN_PASSWORD: set both or neither")
        return cls(
            **fields,
            jwt_keys_dir=Path(keys_dir) if keys_dir else fields["data_dir"] / "jwt-keys",
            oauth_clients=tuple(
                ServiceClientConfig(client_id, str(secret), frozenset(scopes.split()))
                for client_id, secret, scopes, _prefix in clients
            ),
            **extra,
        )
