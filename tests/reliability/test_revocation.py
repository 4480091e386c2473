"""Revocation: a deleted account's tokens and a removed client's tokens stop working everywhere.

catalog and orders verify tokens on their own (JWKS), so a revocation reaches them through the
list they fetch from users every ``REVOCATION_REFRESH_SECONDS``: the bound these tests measure.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import requests

from tests.support.cases import Case
from tests.support.platform import REVOCATION_REFRESH_SECONDS, Platform
from tests.support.processes import ServiceProcess

# The bound: one refresh interval, plus the fetch and the test's own polling.
BOUND_SECONDS = REVOCATION_REFRESH_SECONDS + 1.0
POLL_SECONDS = 0.05


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def seconds_until_refused(send: Callable[[], requests.Response], within: float) -> float:
    """Poll ``send`` until it answers 401 ``revoked`` (twice in a row, so both workers), or fail."""
    started = time.monotonic()
    refused_in_a_row = 0
    while time.monotonic() - started < within + 2:
        response = send()
        if response.status_code == 401:
            assert response.json()["detail"] == "The token has been revoked.", response.text
            assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
            refused_in_a_row += 1
            if refused_in_a_row == 4:  # a few connections: every worker has seen the list
                return time.monotonic() - started
        else:
            assert response.status_code in (200, 201), response.text
            refused_in_a_row = 0
        time.sleep(POLL_SECONDS)
    raise AssertionError(f"still admitted after {within + 2:.1f} s")


def test_a_deleted_accounts_token_stops_working_at_every_service_within_the_bound(
    platform: Platform, case: Case
) -> None:
    gone, kept = platform.register(), platform.register()
    gone_token, kept_token = platform.login(gone["email"]), platform.login(kept["email"])
    orders = f"{platform.orders.url}/orders"
    assert requests.get(orders, headers=bearer(gone_token), timeout=10).status_code == 200  # remembered
    deleted = requests.delete(f"{platform.users.url}/users/me", headers=bearer(gone_token), timeout=10)
    assert deleted.status_code == 204
    case.tried()
    elapsed = seconds_until_refused(
        lambda: requests.get(orders, headers=bearer(gone_token), timeout=10), BOUND_SECONDS
    )
    case.tried()
    assert elapsed <= BOUND_SECONDS, elapsed
    me = requests.get(f"{platform.users.url}/users/me", headers=bearer(gone_token), timeout=10)
    assert me.status_code == 401
    # The control: another customer's token goes on working.
    assert requests.get(orders, headers=bearer(kept_token), timeout=10).status_code == 200
    case.saw(f"orders refused it {elapsed:.2f} s after the delete (bound {BOUND_SECONDS} s)")


@pytest.fixture
def billing_removed(
    platform: Platform, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[], None]]:
    """Removes the billing client (as a new configuration's `migrate` does); puts it back after."""
    env = {name: value for name, value in platform.users.env.items() if "_BILLING_" not in name}
    env["OAUTH_CLIENTS"] = "orders,reporting"
    log_dir = tmp_path_factory.mktemp("revocation")

    def remove() -> None:
        ServiceProcess("users", env, log_dir, port=platform.users.port).migrate()

    yield remove
    platform.users.migrate()


def test_a_removed_clients_token_stops_working_at_catalog_within_the_bound(
    platform: Platform, billing_removed: Callable[[], None], case: Case
) -> None:
    product = platform.create_product(stock=100)
    billing, orders = platform.service_token("billing"), platform.service_token("orders")

    def reserve(token: str) -> requests.Response:
        body = {"key": uuid.uuid4().hex, "items": [{"product_id": product["id"], "quantity": 1}]}
        return requests.post(
            f"{platform.catalog.url}/reservations", json=body, headers=bearer(token), timeout=10
        )

    assert reserve(billing).status_code == 201
    billing_removed()
    case.tried()
    elapsed = seconds_until_refused(lambda: reserve(billing), BOUND_SECONDS)
    case.tried()
    assert elapsed <= BOUND_SECONDS, elapsed
    assert reserve(orders).status_code == 201  # the control: another client is untouched
    case.saw(f"catalog refused it {elapsed:.2f} s after the migrate (bound {BOUND_SECONDS} s)")


def test_the_revocation_list_holds_only_what_a_live_token_could_need(platform: Platform, case: Case) -> None:
    account = platform.register()
    token = platform.login(account["email"])
    assert (
        requests.delete(f"{platform.users.url}/users/me", headers=bearer(token), timeout=10).status_code
        == 204
    )
    response = requests.get(f"{platform.users.url}/internal/revocations", timeout=10)
    case.tried()
    assert response.status_code == 200
    revoked = {entry["sub"]: entry["revoked_at"] for entry in response.json()["revoked"]}
    assert account["id"] in revoked
    assert abs(revoked[account["id"]] - time.time()) < 30
    assert "orders" not in revoked  # a configured client is not revoked
    case.saw(f"{len(revoked)} entries, the deleted account among them, no configured client")
