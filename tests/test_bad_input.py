"""Bad input on every write endpoint: a 4xx problem document naming the fault, never a 500."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.support.platform import Platform
from tests.support.processes import ServiceProcess

PROBLEM = "application/problem+json"


@dataclass(frozen=True)
class WriteEndpoint:
    """A write endpoint, a valid body for it, and the token it needs."""

    service: str
    method: str
    path: str
    valid_body: dict[str, object]
    token: Callable[[Platform], str | None]
    headers: tuple[tuple[str, str], ...] = ()

    def url(self, platform: Platform) -> str:
        service: ServiceProcess = getattr(platform, self.service)
        return service.url + self.path

    def send(
        self,
        platform: Platform,
        *,
        json: Any = None,
        data: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        sent = dict(self.headers)
        token = self.token(platform)
        if token:
            sent["Authorization"] = f"Bearer {token}"
        sent.update(headers or {})
        return requests.request(
            self.method, self.url(platform), headers=sent, json=json, data=data, timeout=10
        )


def _none(_: Platform) -> None:
    return None


def _customer(platform: Platform) -> str:
    return platform.customer_token()


def _admin(platform: Platform) -> str:
    return platform.admin_token()


def _service(platform: Platform) -> str:
    return platform.service_token()


ENDPOINTS = [
    WriteEndpoint(
        "users",
        "POST",
        "/users/register",
        {"email": "a@example.com", "password": "long enough", "name": "A"},
        _none,
    ),
    WriteEndpoint("users", "POST", "/auth/login", {"email": "a@example.com", "password": "x"}, _none),
    WriteEndpoint("users", "PATCH", "/users/me", {"name": "New"}, _customer),
    WriteEndpoint(
        "catalog", "POST", "/products", {"name": "P", "price_cents": 1, "currency": "EUR", "stock": 1}, _admin
    ),
    WriteEndpoint("catalog", "PATCH", "/products/1", {"stock": 1}, _admin),
    WriteEndpoint(
        "catalog",
        "POST",
        "/reservations",
        {"key": "k", "items": [{"product_id": 1, "quantity": 1}]},
        _service,
    ),
    WriteEndpoint(
        "orders",
        "POST",
        "/orders",
        {"items": [{"product_id": 1, "quantity": 1}]},
        _customer,
        (("Idempotency-Key", "bad-input"),),
    ),
]
IDS = [f"{e.method} {e.path}" for e in ENDPOINTS]

WRONG_TYPES: dict[str, dict[str, Any]] = {
    "/users/register": {"email": 42, "password": ["x"], "name": None},
    "/auth/login": {"email": True, "password": 1},
    "/users/me": {"name": 12},
    "/products": {"name": "P", "price_cents": 9.99, "currency": "euro", "stock": "5"},
    "/products/1": {"price_cents": "free"},
    "/reservations": {"key": "k", "items": [{"product_id": "1", "quantity": 1.5}]},
    "/orders": {"items": [{"product_id": "one", "quantity": -1}]},
}


def assert_problem(response: requests.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == PROBLEM
    body = response.json()
    assert {"type", "title", "status", "detail"} <= set(body)
    assert body["status"] == status
    return dict(body)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
def test_malformed_json_is_400(platform: Platform, endpoint: WriteEndpoint) -> None:
    response = endpoint.send(platform, data='{"items": [', headers={"Content-Type": "application/json"})
    assert_problem(response, 400)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
def test_missing_fields_are_named(platform: Platform, endpoint: WriteEndpoint) -> None:
    if endpoint.path in ("/users/me", "/products/1"):
        # Partial updates have no required field; an empty one is refused as a whole.
        body = assert_problem(endpoint.send(platform, json={}), 422)
        assert body["errors"]
        return
    body = assert_problem(endpoint.send(platform, json={}), 422)
    named = {error["field"] for error in body["errors"]}
    assert named == {name for name in endpoint.valid_body}


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
def test_wrong_types_are_named(platform: Platform, endpoint: WriteEndpoint) -> None:
    bad = WRONG_TYPES[endpoint.path]
    body = assert_problem(endpoint.send(platform, json=bad), 422)
    named = {str(error["field"]).split(".")[0] for error in body["errors"]}
    assert named and named <= set(bad)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
def test_a_body_that_is_not_an_object_is_422(platform: Platform, endpoint: WriteEndpoint) -> None:
    assert_problem(endpoint.send(platform, json=["not", "an", "object"]), 422)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
def test_unknown_fields_are_refused(platform: Platform, endpoint: WriteEndpoint) -> None:
    body = assert_problem(endpoint.send(platform, json={**endpoint.valid_body, "is_admin": True}), 422)
    assert "is_admin" in {error["field"] for error in body["errors"]}


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
def test_an_oversize_body_is_413(platform: Platform, endpoint: WriteEndpoint) -> None:
    huge = '{"name": "' + "x" * 200_000 + '"}'
    assert_problem(endpoint.send(platform, data=huge, headers={"Content-Type": "application/json"}), 413)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
def test_a_non_json_body_is_415(platform: Platform, endpoint: WriteEndpoint) -> None:
    response = endpoint.send(platform, data="name=x", headers={"Content-Type": "text/plain"})
    assert_problem(response, 415)


def test_token_endpoint_bad_input(platform: Platform) -> None:
    url = f"{platform.users.url}/oauth/token"
    # RFC 6749 section 5.2: a JSON body is a malformed token request, so 400 invalid_request, not 415.
    as_json = assert_problem(requests.post(url, json={"grant_type": "client_credentials"}, timeout=10), 400)
    assert as_json["error"] == "invalid_request"
    missing = assert_problem(requests.post(url, data={"scope": "x"}, timeout=10), 400)
    assert missing["error"] == "invalid_request"
    assert {e["field"] for e in missing["errors"]} == {"grant_type"}
    assert_problem(requests.post(url, data={"grant_type": "x" * 100_000}, timeout=10), 413)
    bad_basic = requests.post(
        url, data={"grant_type": "client_credentials"}, headers={"Authorization": "Basic !!!"}, timeout=10
    )
    assert_problem(bad_basic, 401)


def test_orders_need_an_idempotency_key(platform: Platform) -> None:
    response = requests.post(
        f"{platform.orders.url}/orders",
        json={"items": [{"product_id": 1, "quantity": 1}]},
        headers={"Authorization": f"Bearer {platform.customer_token()}"},
        timeout=10,
    )
    body = assert_problem(response, 422)
    assert body["errors"] == [
        {"field": "Idempotency-Key", "location": "headers", "message": "Missing data for required field."}
    ]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/nowhere", 404), ("DELETE", "/users/register", 405), ("PUT", "/products", 405)],
)
def test_unknown_routes_and_methods_are_problems(
    platform: Platform, method: str, path: str, status: int
) -> None:
    service = platform.catalog if path.startswith("/products") else platform.users
    response = requests.request(method, service.url + path, timeout=10)
    assert_problem(response, status)
    if status == 405:
        assert "Allow" in response.headers
