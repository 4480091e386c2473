"""Tokens the tests sign themselves (with the platform's own key, to bend claims) or request."""

from __future__ import annotations

import base64
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from flotilla_users.keys import thumbprint
from tests.support.platform import AUDIENCE, ISSUER, Platform


def private_key(keys_dir: Path, name: str = "key-a") -> RSAPrivateKey:
    """The private key ``<name>.pem`` of a key directory."""
    key = serialization.load_pem_private_key((keys_dir / f"{name}.pem").read_bytes(), password=None)
    assert isinstance(key, RSAPrivateKey)
    return key


def kid_of(keys_dir: Path, name: str = "key-a") -> str:
    """The kid (RFC 7638 thumbprint) the platform gives ``<name>.pem``."""
    return thumbprint(private_key(keys_dir, name).public_key())


def signed_token(
    keys_dir: Path, name: str = "key-a", *, kid: str | None = None, typ: str | None = "at+jwt", **claims: Any
) -> str:
    """An RS256 token signed with ``<name>.pem``, under its own kid unless ``kid`` is given;
    claims default to a valid RFC 9068 customer token (``None`` drops a claim)."""
    now = int(time.time())
    payload = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "someone",
        "client_id": "flotilla-login",
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        "roles": ["customer"],
        "scope": "",
        **claims,
    }
    headers = {"kid": kid or kid_of(keys_dir, name), "typ": typ}  # PyJWT drops a typ of None
    present = {claim: value for claim, value in payload.items() if value is not None}
    return jwt.encode(present, private_key(keys_dir, name), algorithm="RS256", headers=headers)


def client_token(
    platform: Platform, client_id: str, secret: str, *, in_body: bool = False, **form: str
) -> requests.Response:
    """POST /oauth/token with the client-credentials grant, the secret in HTTP Basic (or the form)."""
    if in_body:
        form = {"client_id": client_id, "client_secret": secret, **form}
        headers = {}
    else:
        basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        headers = {"Authorization": f"Basic {basic}"}
    return requests.post(
        f"{platform.users.url}/oauth/token",
        data={"grant_type": "client_credentials", **form},
        headers=headers,
        timeout=10,
    )
