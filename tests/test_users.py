"""Accounts: registration, login, the caller's profile."""

from __future__ import annotations

import uuid

import requests

from tests.support.platform import PASSWORD, Platform

PROBLEM = "application/problem+json"


def test_registration_returns_the_account_without_secrets(platform: Platform) -> None:
    email = f"New.User-{uuid.uuid4().hex[:6]}@Example.com"
    response = requests.post(
        f"{platform.users.url}/users/register",
        json={"email": email, "password": PASSWORD, "name": "New User"},
        timeout=10,
    )
    assert response.status_code == 201
    body = response.json()
    assert body["email"] == email.lower()
    assert body["name"] == "New User"
    assert body["role"] == "customer"
    assert set(body) == {"id", "email", "name", "role"}


def test_registering_a_taken_email_is_a_409_problem(platform: Platform) -> None:
    account = platform.register()
    response = requests.post(
        f"{platform.users.url}/users/register",
        json={"email": account["email"].upper(), "password": PASSWORD, "name": "Again"},
        timeout=10,
    )
    assert response.status_code == 409
    assert response.headers["Content-Type"] == PROBLEM
    assert response.json()["type"].endswith("/email-taken")


def test_login_with_a_wrong_password_is_401(platform: Platform) -> None:
    account = platform.register()
    response = requests.post(
        f"{platform.users.url}/auth/login",
        json={"email": account["email"], "password": "not the password"},
        timeout=10,
    )
    assert response.status_code == 401
    assert response.headers["Content-Type"] == PROBLEM
    assert response.json()["status"] == 401
    # RFC 9110: a 401 carries a challenge (no error code: no token was presented, RFC 6750 3.1).
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="flotilla"'


def test_login_with_an_unknown_email_is_the_same_401(platform: Platform) -> None:
    response = requests.post(
        f"{platform.users.url}/auth/login",
        json={"email": f"nobody-{uuid.uuid4().hex}@example.com", "password": "whatever1"},
        timeout=10,
    )
    assert response.status_code == 401
    assert response.json()["detail"] == "The email or password is wrong."


def test_login_token_is_a_bearer_token_that_opens_the_profile(platform: Platform) -> None:
    account = platform.register()
    response = requests.post(
        f"{platform.users.url}/auth/login",
        json={"email": account["email"], "password": PASSWORD},
        timeout=10,
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] > 0
    assert response.headers["Cache-Control"] == "no-store"
    me = requests.get(
        f"{platform.users.url}/users/me",
        headers={"Authorization": f"Bearer {body['access_token']}"},
        timeout=10,
    )
    assert me.status_code == 200
    assert me.json()["id"] == account["id"]


def test_me_without_a_token_is_401_with_a_bearer_challenge(platform: Platform) -> None:
    response = requests.get(f"{platform.users.url}/users/me", timeout=10)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.headers["Content-Type"] == PROBLEM


def test_profile_name_and_password_change(platform: Platform) -> None:
    account = platform.register()
    token = platform.login(account["email"])
    headers = {"Authorization": f"Bearer {token}"}
    renamed = requests.patch(
        f"{platform.users.url}/users/me", json={"name": "Renamed"}, headers=headers, timeout=10
    )
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "Renamed"
    wrong = requests.patch(
        f"{platform.users.url}/users/me",
        json={"password": "a new password", "current_password": "wrong one"},
        headers=headers,
        timeout=10,
    )
    assert wrong.status_code == 403
    changed = requests.patch(
        f"{platform.users.url}/users/me",
        json={"password": "a new password", "current_password": PASSWORD},
        headers=headers,
        timeout=10,
    )
    assert changed.status_code == 200
    assert platform.login(account["email"], "a new password")
