"""Metrics across gunicorn workers, request IDs and trace context across services, JSON logs."""

from __future__ import annotations

import json
import re
import uuid

import requests

from tests.support.platform import Platform


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}\{{(.*)\}} (\S+)$", line)
        if not match:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(found.get(key) == value for key, value in labels.items()):
            total += float(match.group(2))
    return total


def scrape(url: str) -> str:
    response = requests.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return response.text


def test_metrics_count_every_request_across_two_workers(platform: Platform) -> None:
    product = platform.create_product(stock=1)
    route = "/products/{product_id}"
    before = metric_value(scrape(platform.catalog.url), "http_requests_total", route=route, status="200")
    marker = f"metrics-{uuid.uuid4().hex}"
    sent = 0
    # Separate connections spread over the workers; go on until both have served some.
    while sent < 40 or len(_serving_pids(platform, marker)) < 2:
        response = requests.get(
            f"{platform.catalog.url}/products/{product['id']}",
            headers={"X-Request-ID": f"{marker}-{sent}"},
            timeout=10,
        )
        assert response.status_code == 200
        sent += 1
        assert sent < 400, "one worker served every request"
    for _ in range(5):  # each scrape may land on either worker; each must see every request
        after = metric_value(scrape(platform.catalog.url), "http_requests_total", route=route, status="200")
        assert after - before == sent
    text = scrape(platform.catalog.url)
    assert metric_value(text, "http_request_duration_seconds_count", route=route, method="GET") >= sent


def _serving_pids(platform: Platform, marker: str) -> set[object]:
    records = _log_records(platform.catalog.log_lines())
    return {r["pid"] for r in records if str(r.get("request_id", "")).startswith(marker)}


def test_metrics_label_the_route_template_never_the_raw_path(platform: Platform) -> None:
    requests.get(f"{platform.catalog.url}/products/{uuid.uuid4().int % 10**9 + 10**9}", timeout=10)
    text = scrape(platform.catalog.url)
    assert 'route="/products/{product_id}"' in text
    assert not re.search(r'route="/products/\d+"', text)


def test_outbound_calls_are_counted_by_target(platform: Platform) -> None:
    product = platform.create_product(stock=5)
    assert (
        platform.order(platform.customer_token(), [{"product_id": product["id"], "quantity": 1}]).status_code
        == 201
    )
    text = scrape(platform.orders.url)
    assert (
        metric_value(text, "http_client_requests_total", target="catalog", method="POST", outcome="201") >= 1
    )
    assert metric_value(text, "http_client_circuit_state", target="catalog") == 0
    assert metric_value(text, "flotilla_orders_total", outcome="confirmed") >= 1


def _log_records(lines: list[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_request_id_and_trace_follow_an_order_into_the_catalog(platform: Platform) -> None:
    product = platform.create_product(stock=5)
    token = platform.customer_token()
    request_id = f"test-{uuid.uuid4().hex}"
    trace_id = uuid.uuid4().hex
    response = requests.post(
        f"{platform.orders.url}/orders",
        json={"items": [{"product_id": product["id"], "quantity": 1}]},
        headers={
            "Authorization": f"Bearer {token}",
            "Idempotency-Key": uuid.uuid4().hex,
            "X-Request-ID": request_id,
            "traceparent": f"00-{trace_id}-{'ab' * 8}-01",
        },
        timeout=10,
    )
    assert response.status_code == 201
    assert response.headers["X-Request-ID"] == request_id
    catalog_lines = [
        r for r in _log_records(platform.catalog.log_lines()) if r.get("request_id") == request_id
    ]
    # One call: orders takes the stock with a reservation committed at once.
    assert {r["route"] for r in catalog_lines} == {"/reservations"}
    assert {r["trace_id"] for r in catalog_lines} == {trace_id}
    orders_lines = [r for r in _log_records(platform.orders.log_lines()) if r.get("request_id") == request_id]
    assert orders_lines and {r["trace_id"] for r in orders_lines} == {trace_id}


def test_a_generated_request_id_is_echoed(platform: Platform) -> None:
    response = requests.get(f"{platform.catalog.url}/products", timeout=10)
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])
    unsafe = requests.get(
        f"{platform.catalog.url}/products", headers={"X-Request-ID": "bad id\twith spaces"}, timeout=10
    )
    assert unsafe.headers["X-Request-ID"] != "bad id\twith spaces"


ACCESS_FIELDS = {
    "time",
    "level",
    "service",
    "request_id",
    "trace_id",
    "method",
    "route",
    "status",
    "duration_ms",
}


def test_a_full_flow_logs_json_with_the_fields_and_no_secrets(platform: Platform) -> None:
    """Register, log in, read the profile, create a product, order it, read the order."""
    request_id = f"flow-{uuid.uuid4().hex}"
    headers = {"X-Request-ID": request_id}
    account = platform.register()
    token = platform.login(account["email"])
    admin_token = platform.admin_token()
    service_token = platform.service_token("reporting")
    me = requests.get(
        f"{platform.users.url}/users/me", headers={**headers, "Authorization": f"Bearer {token}"}, timeout=10
    )
    assert me.status_code == 200
    product = platform.create_product(stock=2)
    placed = platform.order(token, [{"product_id": product["id"], "quantity": 1}], headers=headers)
    assert placed.status_code == 201, placed.text
    order = requests.get(
        f"{platform.orders.url}/orders/{placed.json()['id']}",
        headers={**headers, "Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert order.status_code == 200
    marker = f"single-{uuid.uuid4().hex}"
    requests.get(f"{platform.users.url}/livez", headers={"X-Request-ID": marker}, timeout=10)
    secrets = {
        "the customer's password": account["password"],
        "the admin's password": platform.admin_password,
        "a customer token": token,
        "an admin token": admin_token,
        "a service token": service_token,
        **{f"{client}'s client secret": secret for client, secret in platform.clients.items()},
    }
    for service in platform.services():
        lines = [line for line in service.log_lines() if line.strip()]
        records = _log_records(lines)
        assert len(records) == len(lines), f"{service.name}: every log line is one JSON object"
        access = [r for r in records if r.get("logger") == "flotilla.access"]
        assert access, f"{service.name} logged no requests"
        for record in access:
            assert set(record) >= ACCESS_FIELDS, record
            assert record["service"] == service.name
            assert isinstance(record["status"], int) and isinstance(record["duration_ms"], float | int)
        whole_log = "\n".join(lines)
        for what, secret in secrets.items():
            assert secret not in whole_log, f"{what} appears in {service.name}'s log"
        assert "PRIVATE KEY" not in whole_log
    flow = {
        (r["service"], r["route"])
        for service in platform.services()
        for r in _log_records(service.log_lines())
        if r.get("request_id") == request_id
    }
    assert {
        ("users", "/users/me"),
        ("orders", "/orders"),
        ("catalog", "/reservations"),
        ("orders", "/orders/{order_id}"),
    } <= flow
    lines_for_marker = [line for line in platform.users.log_lines() if marker in line]
    assert len(lines_for_marker) == 1, "exactly one log line per request (no duplicate handlers)"


def test_health_endpoints(platform: Platform) -> None:
    for service in platform.services():
        assert requests.get(f"{service.url}/livez", timeout=10).json() == {"status": "ok", "kit": "0.1.0"}
        # What the operator reads, through Prometheus, for the Microservice's status.kitVersion.
        assert (
            'flotilla_kit_info{version="0.1.0"} 1.0'
            in requests.get(f"{service.url}/metrics", timeout=10).text
        )
        ready = requests.get(f"{service.url}/readyz", timeout=10).json()
        assert ready["status"] == "ok"
        assert ready["checks"]["database"] == "ok"


def test_openapi_documents_every_route_and_the_problem_type(platform: Platform) -> None:
    expected = {
        "users": {"/users/register", "/users/me", "/auth/login", "/oauth/token", "/.well-known/jwks.json"},
        "catalog": {"/products", "/products/{product_id}", "/reservations", "/reservations/{key}/commit"},
        "orders": {"/orders", "/orders/{order_id}"},
    }
    for service in platform.services():
        spec = requests.get(f"{service.url}/openapi.json", timeout=10).json()
        assert spec["openapi"].startswith("3.")
        assert expected[service.name] <= set(spec["paths"])
        assert "application/problem+json" in json.dumps(spec["components"]["responses"])
