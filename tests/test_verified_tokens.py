"""Verified tokens are remembered until they expire, never past it, and only byte for byte."""

from __future__ import annotations

import time

import requests

from tests.support.platform import Platform
from tests.support.tokens import signed_token

LEEWAY_SECONDS = 5  # the kit's TokenVerifier default


def get_me(platform: Platform, token: str) -> int:
    response = requests.get(
        f"{platform.users.url}/users/me", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    return response.status_code


def test_a_remembered_token_is_refused_once_it_expires(platform: Platform) -> None:
    account = platform.register()
    expires = int(time.time()) + 2
    token = signed_token(platform.keys_dir, sub=str(account["id"]), exp=expires)
    for _ in range(6):  # both workers, several times: remembered by now
        assert get_me(platform, token) == 200
    time.sleep(max(0.0, expires + LEEWAY_SECONDS + 1 - time.time()))
    for _ in range(6):
        assert get_me(platform, token) == 401


def test_a_changed_byte_is_another_token(platform: Platform) -> None:
    account = platform.register()
    token = signed_token(platform.keys_dir, sub=str(account["id"]))
    for _ in range(4):
        assert get_me(platform, token) == 200
    header, payload, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    assert get_me(platform, f"{header}.{payload}.{flipped}") == 401
    assert get_me(platform, f"{header}.{payload}x.{signature}") == 401
