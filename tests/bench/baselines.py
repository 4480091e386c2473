"""The apps ``make bench`` measures Flotilla against, served with the kit's gunicorn settings.

``gunicorn -c python:flotilla_kit.gunicorn_conf 'tests.bench.baselines:<factory>()'``
"""

from __future__ import annotations

import os
from typing import Any

import jwt
from flask import Flask, abort, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import create_engine, text

from flotilla_kit import auth


def catalog_bare() -> Flask:
    """Plain Flask and SQLAlchemy: ``GET /products/<id>`` reads the same row, answers the same JSON."""
    app = Flask("catalog_bare")
    engine = create_engine(os.environ["DATABASE_URL"], pool_size=5, max_overflow=5)
    query = text(
        "SELECT id, name, description, price_cents, currency, stock FROM products "
        "WHERE id = :id AND deleted_at IS NULL"
    )

    @app.get("/readyz")
    def ready() -> ResponseReturnValue:
        return {"status": "ok"}

    @app.get("/products/<int:product_id>")
    def product(product_id: int) -> ResponseReturnValue:
        with engine.connect() as connection:
            row = connection.execute(query, {"id": product_id}).mappings().first()
        if row is None:
            abort(404)
        return jsonify(dict(row))

    return app


class UnverifiedTokens:
    """Reads a token's claims without checking signature, issuer, audience or times."""

    def verify(self, token: str) -> auth.Principal:
        """The principal the token names, taken on trust."""
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
        return auth.Principal(
            subject=str(claims["sub"]),
            roles=frozenset(claims.get("roles") or ()),
            scopes=frozenset(str(claims.get("scope", "")).split()),
            claims=claims,
        )


def users_unverified() -> Flask:
    """The users app, every handler the same, except that tokens are not verified."""
    from flotilla_users.app import create_app

    app = create_app()
    app.extensions[auth.EXTENSION] = UnverifiedTokens()
    return app


def orders_unchecked() -> Flask:
    """The orders app, every handler the same, except that tokens are not checked for revocation."""
    from flotilla_orders.app import create_app

    app = create_app()
    verifier: auth.TokenVerifier = app.extensions[auth.EXTENSION]
    verifier.revocations = None
    return app
