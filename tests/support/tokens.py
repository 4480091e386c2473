"""Tokens the tests sign themselves (with the platform's own key, to bend claims) or request."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives import serialization

from tests.support.platform import AUDIENCE, ISSUER, Platform


def signed_token(keys_dir: Path, kid: str = "key-a", **claims: Any) -> str:
    """An RS256 token signed with ``<kid>.pem``; claims default to a valid customer token."""
    key = serialization.load_pem_private_key((keys_dir / f"{kid}.pem").read_bytes(), password=None)
    now = int(time.time())
    payload = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "someone",
        "iat": now,
        "exp": now + 300,
        "roles": ["customer"],
        "scope": "",
        **claims,
    }
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})  # type: ignore[arg-type]


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
