"""Secrets: passwords stored as salted argon2id, never logged, no timing oracle, guesses throttled."""

from __future__ import annotations

import base64
import secrets
import statistics
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import argon2
import pytest
import requests

from tests.support.cases import Case
from tests.support.platform import Platform
from tests.support.postgres import query
from tests.support.tokens import client_token

# flotilla_users.passwords: argon2id with RFC 9106's low-memory profile.
ARGON2_MEMORY_KIB = 65536
ARGON2_TIME_COST = 3
ARGON2_PARALLELISM = 4
MAX_FAILURES = 5  # LOGIN_MAX_FAILURES of the test platform
LOCKOUT_SECONDS = 3  # LOGIN_LOCKOUT_SECONDS of the test platform


def fresh_password() -> str:
    return f"pw-{secrets.token_urlsafe(18)}"


def login(
    platform: Platform, email: str, password: str, session: requests.Session | None = None
) -> requests.Response:
    return (session or requests).post(
        f"{platform.users.url}/auth/login", json={"email": email, "password": password}, timeout=30
    )


def stored_hash(platform: Platform, email: str) -> str:
    rows = query(platform.database_urls["users"], "SELECT password_hash FROM users WHERE email = %s", email)
    assert len(rows) == 1, email
    return str(rows[0][0])


def test_passwords_are_stored_as_salted_argon2id(platform: Platform, case: Case) -> None:
    password = fresh_password()
    accounts = [platform.register(password=password) for _ in range(2)]
    case.tried(2)
    hashes = [stored_hash(platform, account["email"]) for account in accounts]
    for stored in hashes:
        parameters = argon2.extract_parameters(stored)
        assert parameters.type is argon2.Type.ID
        assert parameters.memory_cost == ARGON2_MEMORY_KIB
        assert parameters.time_cost == ARGON2_TIME_COST
        assert parameters.parallelism == ARGON2_PARALLELISM
        assert parameters.salt_len >= 16
        assert password not in stored
        assert argon2.PasswordHasher().verify(stored, password)
    assert hashes[0] != hashes[1], "the same password must hash differently (salted)"
    assert hashes[0].split("$")[4] != hashes[1].split("$")[4], "each hash needs its own salt"
    case.saw(f"{hashes[0].split('$')[1]} {hashes[0].split('$')[3]}; one password, two salts, two hashes")


def test_no_password_client_secret_or_token_is_logged(platform: Platform, case: Case) -> None:
    password, wrong, changed = fresh_password(), fresh_password(), fresh_password()
    account = platform.register(password=password)
    users = platform.users.url
    rejected = requests.post(  # the error path sees the password too
        f"{users}/users/register",
        json={"email": "not-an-email", "password": password, "name": "X"},
        timeout=10,
    )
    assert rejected.status_code == 422
    assert login(platform, account["email"], wrong).status_code == 401
    token = platform.login(account["email"], password)
    patched = requests.patch(
        f"{users}/users/me",
        json={"password": changed, "current_password": password},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert patched.status_code == 200
    changed_token = platform.login(account["email"], changed)
    product = platform.create_product(stock=5)  # the admin logs in
    for client_id in platform.clients:
        assert client_token(platform, client_id, platform.clients[client_id]).status_code == 200
    assert client_token(platform, "orders", wrong).status_code == 401
    assert client_token(platform, "reporting", platform.clients["reporting"], in_body=True).status_code == 200
    # orders fetches its own client-credentials token from users to reserve the stock
    placed = platform.order(changed_token, [{"product_id": product["id"], "quantity": 1}])
    assert placed.status_code == 201, placed.text
    case.tried(15)  # the requests of the flow above

    secret_values = {
        "customer password": password,
        "wrong password": wrong,
        "new password": changed,
        "access token": token,
        "second access token": changed_token,
        "admin password": platform.admin_password,
        **{f"{client_id} client secret": secret for client_id, secret in platform.clients.items()},
        **{
            f"{client_id} Basic credentials": base64.b64encode(f"{client_id}:{secret}".encode()).decode()
            for client_id, secret in platform.clients.items()
        },
    }
    lines = {service.name: service.log_lines() for service in platform.services()}
    assert any('"/auth/login"' in line for line in lines["users"]), "the flow is not in the users log"
    assert any('"/orders"' in line for line in lines["orders"]), "the flow is not in the orders log"
    for service, service_lines in lines.items():
        for what, value in secret_values.items():
            leaks = [line for line in service_lines if value in line]
            assert not leaks, f"{what} in the {service} log: {leaks[0]}"
    count = sum(len(service_lines) for service_lines in lines.values())
    case.saw(f"{len(secret_values)} secrets absent from {count} log lines of 3 services")


def test_a_failed_login_costs_the_same_whether_or_not_the_email_exists(
    platform: Platform, case: Case
) -> None:
    # Below the throttle: each account takes MAX_FAILURES - 1 wrong passwords, each unknown email one.
    per_account = MAX_FAILURES - 1
    accounts = [platform.register()["email"] for _ in range(4)]
    known: list[float] = []
    unknown: list[float] = []
    with requests.Session() as session:

        def timed(email: str) -> float:
            started = time.perf_counter()
            response = login(platform, email, "not the password", session)
            elapsed = time.perf_counter() - started
            assert response.status_code == 401, response.text
            return elapsed

        timed(f"warm-up-{uuid.uuid4().hex}@example.com")
        for n, email in enumerate(email for email in accounts for _ in range(per_account)):
            missing = f"nobody-{uuid.uuid4().hex}@example.com"
            # Interleaved, in alternating order, so that a change in the machine's load hits both.
            if n % 2:
                known.append(timed(email))
                unknown.append(timed(missing))
            else:
                unknown.append(timed(missing))
                known.append(timed(email))
    case.tried(len(known) + len(unknown))
    ratio = statistics.median(unknown) / statistics.median(known)
    case.saw(
        f"median {statistics.median(known) * 1000:.0f} ms known vs "
        f"{statistics.median(unknown) * 1000:.0f} ms unknown email (ratio {ratio:.2f})"
    )
    # Without the dummy hash an unknown email answers in a small fraction of the time.
    assert 0.5 <= ratio <= 2.0


@pytest.mark.parametrize("email_kind", ["registered", "unknown"])
def test_repeated_failed_logins_are_throttled_then_released(
    platform: Platform, email_kind: str, case: Case
) -> None:
    if email_kind == "registered":
        account = platform.register()
        email, password = account["email"], account["password"]
    else:  # throttled alike, so the throttle does not tell which emails have accounts
        email, password = f"nobody-{uuid.uuid4().hex}@example.com", fresh_password()
    attempts = [login(platform, email, "wrong password").status_code for _ in range(MAX_FAILURES + 1)]
    assert attempts == [401] * MAX_FAILURES + [429]
    throttled = login(platform, email, password)
    assert throttled.status_code == 429, "the right password is refused too while locked"
    wait = int(throttled.headers["Retry-After"])
    assert 1 <= wait <= LOCKOUT_SECONDS + 1
    time.sleep(wait)
    released = login(platform, email, password)
    case.tried(len(attempts) + 2)
    assert released.status_code == (200 if email_kind == "registered" else 401)
    case.saw(f"{MAX_FAILURES} x 401, then 429 (Retry-After {wait}), then {released.status_code}")


def test_parallel_wrong_guesses_cannot_pass_the_limit(platform: Platform, case: Case) -> None:
    account = platform.register()
    guesses = 20

    def guess(n: int) -> int:
        return login(platform, account["email"], f"guess-{n}").status_code

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=guesses) as pool:
        outcomes = Counter(pool.map(guess, range(guesses)))
    elapsed = time.monotonic() - started
    case.tried(guesses)
    assert set(outcomes) <= {401, 429}
    # Each lockout that ended during the burst lets MAX_FAILURES more through; usually none ends.
    allowed = MAX_FAILURES * (1 + int(elapsed // LOCKOUT_SECONDS))
    assert outcomes[401] <= allowed
    case.saw(f"{outcomes[401]} x 401, {outcomes[429]} x 429 in {elapsed:.1f}s (at most {allowed} may fail)")
