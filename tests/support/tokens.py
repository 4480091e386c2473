"""Tokens made by the tests themselves, signed with the platform's own key (to bend claims)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization

from tests.support.platform import AUDIENCE, ISSUER


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
