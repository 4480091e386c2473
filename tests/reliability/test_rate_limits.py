"""Rate limits per client address: failed logins and token requests, shared by every worker and replica."""

from __future__ import annotations

import random
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from requests.adapters import HTTPAdapter

from tests.support.cases import Case
from tests.support.platform import Platform
from tests.support.processes import ServiceProcess

LOGIN_LIMIT = 4  # below LOGIN_MAX_FAILURES (5): the address limit comes first
LOGIN_WINDOW_SECONDS = 30  # longer than any test's failed logins (argon2, two cores) take
TOKEN_LIMIT = 5
TOKEN_WINDOW_SECONDS = 4  # short: one test waits for a window to end
PROXY = "127.0.0.1"  # the trusted proxy: the tests' own connections
STRANGER = "127.0.0.2"  # another loopback address, not trusted
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def replicas(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServiceProcess]]:
    """Two users replicas (two workers each) on the platform's database, behind a proxy at 127.0.0.1."""
    env = {
        **platform.users.env,
        "TRUSTED_PROXIES": f"{PROXY}/32",
        "LOGIN_MAX_FAILURES_PER_ADDRESS": str(LOGIN_LIMIT),
        "LOGIN_ADDRESS_WINDOW_SECONDS": str(LOGIN_WINDOW_SECONDS),
        "TOKEN_REQUESTS_PER_ADDRESS": str(TOKEN_LIMIT),
        "TOKEN_ADDRESS_WINDOW_SECONDS": str(TOKEN_WINDOW_SECONDS),
    }
    assert int(env["WEB_CONCURRENCY"]) >= 2
    log_dir = tmp_path_factory.mktemp("rate-limits")
    started: list[ServiceProcess] = []
    try:
        for _ in range(2):
            started.append(ServiceProcess("users", env, log_dir).start())
        yield started
    finally:
        for replica in started:
            replica.stop()


def fresh_address() -> str:
    """A client address no other test uses (IPv6 documentation range)."""
    return f"2001:db8::{random.getrandbits(16):x}:{random.getrandbits(16):x}:{random.getrandbits(16):x}"


class FromAddress(HTTPAdapter):
    """Connections from a chosen local address: a client the proxy list does not name."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def connect_from(address: str) -> requests.Session:
    """A session whose connections leave from ``address``."""
    session = requests.Session()
    session.mount("http://", FromAddress(address))
    return session


def login(
    replica: ServiceProcess,
    email: str,
    password: str,
    forwarded_for: str | None = None,
    http: requests.Session | None = None,
) -> requests.Response:
    """POST /auth/login, through the proxy for ``forwarded_for`` when given."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return (http or requests.Session()).post(
        f"{replica.url}/auth/login", json={"email": email, "password": password}, headers=headers, timeout=30
    )


def wrong_login(
    replica: ServiceProcess, forwarded_for: str | None = None, **kwargs: Any
) -> requests.Response:
    """A failed login for an email of its own (so no per-email lockout interferes)."""
    return login(
        replica, f"nobody-{uuid.uuid4().hex[:12]}@example.com", "wrong password!", forwarded_for, **kwargs
    )


def token(
    replica: ServiceProcess, platform: Platform, forwarded_for: str, secret: str | None = None
) -> requests.Response:
    """POST /oauth/token for the orders client, through the proxy for ``forwarded_for``."""
    return requests.post(
        f"{replica.url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=("orders", secret or platform.clients["orders"]),
        headers={"X-Forwarded-For": forwarded_for},
        timeout=30,
    )


def assert_throttled(response: requests.Response, problem: str, window_seconds: int) -> int:
    """A 429 problem of type ``problem`` with a Retry-After inside the window; returns it."""
    assert response.status_code == 429, f"{response.status_code} {response.text}"
    assert response.headers["Content-Type"] == PROBLEM
    body = response.json()
    assert body["type"].endswith(f"/{problem}"), body
    assert body["status"] == 429 and body["title"] and body["detail"], body
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= window_seconds, retry_after
    return retry_after


def throttled_total(replicas: list[ServiceProcess], limit: str) -> float:
    """``flotilla_throttled_requests_total{limit}`` summed over the replicas."""
    total = 0.0
    for replica in replicas:
        text = requests.get(f"{replica.url}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "flotilla_throttled_requests_total" and sample.labels.get("limit") == limit:
                    total += sample.value
    return total


def test_failed_logins_from_one_address_are_limited_across_emails_and_replicas(
    platform: Platform, replicas: list[ServiceProcess], case: Case
) -> None:
    account = platform.register()
    attacker, other = fresh_address(), fresh_address()
    for attempt in range(LOGIN_LIMIT):
        response = wrong_login(replicas[attempt % 2], attacker)
        case.tried()
        assert response.status_code == 401, response.text
    refused = login(replicas[0], account["email"], account["password"], attacker)
    case.tried()
    retry_after = assert_throttled(refused, "login-throttled", LOGIN_WINDOW_SECONDS)
    admitted = login(replicas[1], account["email"], account["password"], other)
    case.tried()
    assert admitted.status_code == 200, admitted.text
    case.saw(
        f"{LOGIN_LIMIT} failed logins on {LOGIN_LIMIT} emails over 2 replicas: then 429 (Retry-After "
        f"{retry_after}) even with the right password; another address: 200"
    )


def test_a_throttled_address_costs_no_password_check_and_locks_no_account(
    platform: Platform, replicas: list[ServiceProcess], case: Case
) -> None:
    victim = platform.register()
    attacker = fresh_address()
    checked = []
    for attempt in range(LOGIN_LIMIT):
        started = time.perf_counter()
        response = login(replicas[attempt % 2], victim["email"], "wrong password!", attacker)
        checked.append(time.perf_counter() - started)
        case.tried()
        assert response.status_code == 401, response.text
    refused = []
    for attempt in range(20):
        started = time.perf_counter()
        response = login(replicas[attempt % 2], victim["email"], "wrong password!", attacker)
        refused.append(time.perf_counter() - started)
        case.tried()
        assert_throttled(response, "login-throttled", LOGIN_WINDOW_SECONDS)
    # 24 wrong passwords at the victim, over LOGIN_MAX_FAILURES (5): only the 4 checked ones counted.
    own = login(replicas[0], victim["email"], victim["password"], fresh_address())
    case.tried()
    assert own.status_code == 200, own.text
    case.saw(
        f"20 refused guesses at one account: 429 in {statistics.median(refused) * 1000:.0f} ms (median) "
        f"against {statistics.median(checked) * 1000:.0f} ms checked; the owner logs in: 200"
    )


def test_a_successful_login_does_not_reset_the_address_count(
    platform: Platform, replicas: list[ServiceProcess], case: Case
) -> None:
    account = platform.register()
    address = fresh_address()
    for attempt in range(LOGIN_LIMIT - 1):
        case.tried()
        assert wrong_login(replicas[attempt % 2], address).status_code == 401
    case.tried()
    assert login(replicas[0], account["email"], account["password"], address).status_code == 200
    # The success gave back its own attempt only: one failure left, not a fresh allowance.
    case.tried()
    assert wrong_login(replicas[1], address).status_code == 401
    case.tried(2)
    assert_throttled(wrong_login(replicas[0], address), "login-throttled", LOGIN_WINDOW_SECONDS)
    assert_throttled(
        login(replicas[1], account["email"], account["password"], address),
        "login-throttled",
        LOGIN_WINDOW_SECONDS,
    )
    case.saw(f"{LOGIN_LIMIT - 1} failures, a success, 1 failure: then 429, the right password included")


@pytest.mark.parametrize("path", ["direct from an untrusted peer", "spoofed left of the proxy's hop"])
def test_a_spoofed_x_forwarded_for_does_not_escape_the_limit(
    replicas: list[ServiceProcess], path: str, case: Case
) -> None:
    if path == "direct from an untrusted peer":
        http, real = connect_from(STRANGER), None  # counted as 127.0.0.2, whatever the header says

        def spoofed() -> str:
            return fresh_address()
    else:
        http, real = requests.Session(), fresh_address()  # the proxy appends the real hop last

        def spoofed() -> str:
            return f"{fresh_address()}, {real}"

    statuses = []
    for attempt in range(LOGIN_LIMIT + 3):
        response = wrong_login(replicas[attempt % 2], spoofed(), http=http)
        case.tried()
        statuses.append(response.status_code)
    assert statuses == [401] * LOGIN_LIMIT + [429] * 3, statuses
    case.saw(f"a new X-Forwarded-For each time: {LOGIN_LIMIT} x 401, then 429")


def test_token_requests_per_address_are_limited_with_retry_after(
    platform: Platform, replicas: list[ServiceProcess], case: Case
) -> None:
    address, other = fresh_address(), fresh_address()
    before = throttled_total(replicas, "token-requests-per-address")
    # Wrong secrets count too: guessing a client's secret is held to the same pace.
    for attempt in range(TOKEN_LIMIT):
        secret = "not-the-orders-secret" if attempt % 2 else None
        response = token(replicas[attempt % 2], platform, address, secret)
        case.tried()
        assert response.status_code == (401 if secret else 200), response.text
    refused = token(replicas[0], platform, address)
    case.tried()
    retry_after = assert_throttled(refused, "rate-limited", TOKEN_WINDOW_SECONDS)
    case.tried()
    assert token(replicas[1], platform, other).status_code == 200
    assert throttled_total(replicas, "token-requests-per-address") == before + 1
    # Knocking on keeps the window's end: the address is admitted again once it ends.
    throttled_at = time.monotonic()
    deadline = throttled_at + retry_after + 2
    while (response := token(replicas[0], platform, address)).status_code == 429:
        case.tried()
        assert time.monotonic() < deadline, "still throttled after Retry-After"
        time.sleep(0.2)
    case.tried()
    waited = time.monotonic() - throttled_at
    assert response.status_code == 200, response.text
    assert waited >= retry_after - 1.5, (waited, retry_after)
    case.saw(
        f"{TOKEN_LIMIT} requests (wrong secrets included), then 429 with Retry-After {retry_after}; "
        f"another address 200; admitted again after {waited:.1f} s"
    )


@pytest.mark.parametrize("endpoint", ["token requests", "failed logins"])
def test_parallel_requests_from_one_address_admit_exactly_the_limit(
    platform: Platform, replicas: list[ServiceProcess], endpoint: str, case: Case
) -> None:
    address = fresh_address()
    send: Callable[[ServiceProcess], requests.Response]
    if endpoint == "token requests":
        burst, limit, admitted_status = 40, TOKEN_LIMIT, 200
        metric = "token-requests-per-address"

        def send(replica: ServiceProcess) -> requests.Response:
            return token(replica, platform, address)
    else:
        burst, limit, admitted_status = 24, LOGIN_LIMIT, 401
        metric = "login-failures-per-address"

        def send(replica: ServiceProcess) -> requests.Response:
            return wrong_login(replica, address)

    before = throttled_total(replicas, metric)
    start = threading.Barrier(burst)

    def one(index: int) -> int:
        start.wait()
        return send(replicas[index % 2]).status_code

    with ThreadPoolExecutor(max_workers=burst) as pool:
        statuses = Counter(pool.map(one, range(burst)))
    case.tried(burst)
    assert statuses == {admitted_status: limit, 429: burst - limit}, statuses
    assert throttled_total(replicas, metric) == before + burst - limit
    case.saw(
        f"{burst} at once over 2 replicas x 2 workers: exactly {limit} x {admitted_status}, "
        f"{burst - limit} x 429; the throttled counter rose by {burst - limit}"
    )
