"""A client generated from each service's OpenAPI document by a well-kept generator works as is.

openapi-python-client reads the document each running service serves beside its API page
(``/docs/<service>/openapi.json``); the generated packages then register, log in, add a product
and place an order against the real services, public operations without a token.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests

from tests.support.platform import PASSWORD, Platform
from tests.support.processes import BIN

SERVICES = ("users", "catalog", "orders")


def generate(service: str, url: str, into: Path) -> None:
    """The generator's own command, as a developer would run it, from the served document."""
    document = into / f"{service}.json"
    response = requests.get(f"{url}/docs/{service}/openapi.json", timeout=10)
    assert response.status_code == 200, response.text
    document.write_bytes(response.content)
    result = subprocess.run(
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(document),
            "--meta",
            "none",
            "--output-path",
            str(into / f"{service}_client"),
        ],
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},  # its ruff hooks
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The only warning allowed is none at all: a skipped operation or model would be one.
    assert "Warning" not in result.stdout, result.stdout


@pytest.fixture(scope="module")
def clients(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ModuleType]]:
    """Each service's generated package, imported."""
    into = tmp_path_factory.mktemp("clients")
    for service in SERVICES:
        generate(service, getattr(platform, service).url, into)
    sys.path.insert(0, str(into))
    try:
        for service in SERVICES:
            importlib.import_module(f"{service}_client.models")  # the package's attribute from here on
        yield {service: importlib.import_module(f"{service}_client") for service in SERVICES}
    finally:
        sys.path.remove(str(into))


def call(package: ModuleType, operation: str, **kwargs: Any) -> Any:
    """``sync_detailed`` of one generated operation module, found by its operationId."""
    matches = list(Path(package.__path__[0], "api").glob(f"*/{operation}.py"))
    assert len(matches) == 1, f"{package.__name__} has no operation {operation}"
    tag = matches[0].parent.name
    module = importlib.import_module(f"{package.__name__}.api.{tag}.{operation}")
    return module.sync_detailed(**kwargs)


def test_generated_clients_register_log_in_add_a_product_and_order(
    platform: Platform, clients: dict[str, ModuleType]
) -> None:
    users, catalog, orders = (clients[name] for name in SERVICES)
    users_public = users.Client(base_url=platform.users.url)

    email = f"generated-{uuid.uuid4().hex[:10]}@example.com"
    registration = users.models.Registration(email=email, password=PASSWORD, name="Generated Client")
    registered = call(users, "post_registration", client=users_public, body=registration)
    assert registered.status_code == 201
    assert registered.parsed.email == email

    login = call(
        users, "post_login", client=users_public, body=users.models.Login(email=email, password=PASSWORD)
    )
    assert login.status_code == 200
    me = call(
        users,
        "get_me",
        client=users.AuthenticatedClient(base_url=platform.users.url, token=login.parsed.access_token),
    )
    assert (me.status_code, me.parsed.id) == (200, registered.parsed.id)

    admin = catalog.AuthenticatedClient(base_url=platform.catalog.url, token=platform.admin_token())
    product = catalog.models.Product(name="Generated widget", price_cents=250, currency="EUR", stock=3)
    created = call(catalog, "post_products", client=admin, body=product)
    assert created.status_code == 201
    public = call(
        catalog,
        "get_product_by_id",
        client=catalog.Client(base_url=platform.catalog.url),
        product_id=created.parsed.id,
    )
    assert (public.status_code, public.parsed.stock) == (200, 3)

    customer = orders.AuthenticatedClient(base_url=platform.orders.url, token=login.parsed.access_token)
    request = orders.models.OrderRequest(
        items=[orders.models.OrderLine(product_id=created.parsed.id, quantity=2)]
    )
    placed = call(orders, "post_orders", client=customer, body=request, idempotency_key=str(uuid.uuid4()))
    assert placed.status_code == 201
    assert placed.parsed.total == 500
    assert platform.stock_of(created.parsed.id) == 1


def test_a_refusal_reaches_the_generated_client_as_its_problem_model(
    platform: Platform, clients: dict[str, ModuleType]
) -> None:
    users = clients["users"]
    anonymous = users.AuthenticatedClient(base_url=platform.users.url, token="not-a-token")
    refused = call(users, "get_me", client=anonymous)
    assert refused.status_code == 401
    assert isinstance(refused.parsed, users.models.Problem)
    assert refused.parsed.status == 401
