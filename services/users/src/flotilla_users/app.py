"""The users service app."""

from __future__ import annotations

from flask import Flask

from flotilla_kit import auth, health
from flotilla_kit.app import create_service_app
from flotilla_users import passwords, routes
from flotilla_users.db import database
from flotilla_users.keys import SigningKeys, ensure_development_key
from flotilla_users.settings import UsersSettings
from flotilla_users.tokens import TokenIssuer


def load_signing_keys(settings: UsersSettings) -> SigningKeys:
    """The keys of ``JWT_KEYS_DIR``; in development a key is generated when there is none."""
    if settings.is_development:
        ensure_development_key(settings.jwt_keys_dir)
    return SigningKeys.from_directory(settings.jwt_keys_dir, settings.jwt_active_kid)


def create_app(settings: UsersSettings | None = None) -> Flask:
    """Build the users app from the environment (or the given settings)."""
    settings = settings or UsersSettings.load()
    app, api = create_service_app(
        settings,
        title="Flotilla users",
        version="1.0.0",
        description="Accounts, login, service clients and the token issuer.",
        database=database,
    )
    passwords.limit_concurrent_hashes(settings.password_hash_concurrency)
    keys = load_signing_keys(settings)
    app.extensions["flotilla_signing_keys"] = keys
    app.extensions["flotilla_token_issuer"] = TokenIssuer(
        keys,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_seconds=settings.access_token_ttl_seconds,
    )
    auth.init_app(
        app,
        auth.TokenVerifier(
            auth.StaticKeyResolver(keys.public_keys),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        ),
    )
    health.add_readiness_check(app, "signing_keys", keys.check_usable)
    for blueprint in (routes.users, routes.auth, routes.oauth, routes.jwks, routes.internal):
        api.register_blueprint(blueprint)
    return app
