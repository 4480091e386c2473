"""The three services wired together for tests: PostgreSQL, gunicorn, real HTTP."""

from __future__ import annotations

import os
import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from flotilla_users.keys import generate_key, write_private_key
from tests.support.postgres import drop_database, query, recreate_database
from tests.support.processes import ServiceProcess, free_port

ISSUER = "https://users.flotilla.test"
AUDIENCE = "flotilla-test"
PASSWORD = "correct horse battery"
# How often catalog and orders fetch the revocation list: the bound the revocation tests hold them to.
REVOCATION_REFRESH_SECONDS = 2


@dataclass
class Platform:
    """Running users, catalog and orders, with what tests need to talk to them."""

    users: ServiceProcess
    catalog: ServiceProcess
    orders: ServiceProcess
    database_urls: dict[str, str]
    keys_dir: Path
    admin_email: str
    admin_password: str
    clients: dict[str, str] = field(default_factory=dict)
    instance: str = "main"
    server: str | None = None  # the PostgreSQL server of its databases (None: the tests' server)

    def services(self) -> list[ServiceProcess]:
        """All three."""
        return [self.users, self.catalog, self.orders]

    def stop(self) -> None:
        """Stop every service and drop this run's databases."""
        for service in self.services():
            service.stop()
        for name in self.database_urls:
            drop_database(database_name(name, self.instance), self.server)

    # --- HTTP helpers ---------------------------------------------------------------------

    def register(self, email: str | None = None, password: str = PASSWORD) -> dict[str, Any]:
        """Register a fresh customer; returns the account plus its password."""
        email = email or f"user-{uuid.uuid4().hex[:12]}@example.com"
        response = requests.post(
            f"{self.users.url}/users/register",
            json={"email": email, "password": password, "name": "Test Customer"},
            timeout=10,
            verify=self.users.verify,
        )
        assert response.status_code == 201, response.text
        return {**response.json(), "password": password}

    def login(self, email: str, password: str = PASSWORD) -> str:
        """An access token for these credentials."""
        response = requests.post(
            f"{self.users.url}/auth/login",
            json={"email": email, "password": password},
            timeout=10,
            verify=self.users.verify,
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def customer_token(self) -> str:
        """A token of a newly registered customer."""
        return self.login(self.register()["email"])

    def service_token(self, client_id: str = "orders") -> str:
        """A client-credentials token of one of the configured service clients."""
        response = requests.post(
            f"{self.users.url}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id, self.clients[client_id]),
            timeout=10,
            verify=self.users.verify,
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def admin_token(self) -> str:
        """A token of the bootstrapped admin."""
        return self.login(self.admin_email, self.admin_password)

    def create_product(
        self, stock: int, price_cents: int = 1000, name: str | None = None, currency: str = "EUR"
    ) -> dict[str, Any]:
        """A new product, created by the admin."""
        response = requests.post(
            f"{self.catalog.url}/products",
            json={
                "name": name or f"Product {uuid.uuid4().hex[:8]}",
                "price_cents": price_cents,
                "currency": currency,
                "stock": stock,
            },
            headers={"Authorization": f"Bearer {self.admin_token()}"},
            timeout=10,
            verify=self.catalog.verify,
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    def stock_of(self, product_id: int) -> int:
        """The product's stock as the catalog API reports it."""
        response = requests.get(
            f"{self.catalog.url}/products/{product_id}", timeout=10, verify=self.catalog.verify
        )
        assert response.status_code == 200, response.text
        return int(response.json()["stock"])

    def reserved_quantities(self, product_id: int) -> dict[str, int]:
        """The product's quantities in the catalog's reservations, by reservation status (SQL)."""
        rows = query(
            self.database_urls["catalog"],
            "SELECT r.status, sum(i.quantity) FROM reservation_items i "
            "JOIN reservations r ON r.key = i.reservation_key WHERE i.product_id = %s GROUP BY r.status",
            product_id,
        )
        return {str(status): int(str(total)) for status, total in rows}

    def order(
        self,
        token: str,
        items: list[dict[str, int]],
        key: str | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """POST /orders (``headers`` adds to the token and the idempotency key)."""
        return requests.post(
            f"{self.orders.url}/orders",
            json={"items": items},
            headers={
                "Authorization": f"Bearer {token}",
                "Idempotency-Key": key or uuid.uuid4().hex,
                **(headers or {}),
            },
            timeout=kwargs.pop("timeout", 30),
            verify=kwargs.pop("verify", self.orders.verify),
            **kwargs,
        )


def database_name(service: str, instance: str = "main") -> str:
    """This test run's database of ``service`` in one platform ``instance``."""
    return f"flotilla_test_{os.getpid()}_{instance}_{service}"


def start_platform(
    log_dir: Path,
    keys_dir: Path,
    workers: int = 2,
    instance: str = "main",
    env: dict[str, str] | None = None,
    server: str | None = None,
) -> Platform:
    """Fresh databases, one signing key, the three services migrated and started.

    Each ``instance`` has databases of its own: a test may run a platform beside the session's.
    ``env`` adds to every service's environment; with ``TLS_CERT_FILE`` in it they talk HTTPS.
    ``server`` is the PostgreSQL server URL to create the databases on (default: the tests' one).
    """
    extra = env or {}
    scheme = "https" if extra.get("TLS_CERT_FILE") else "http"
    if not any(keys_dir.glob("*.pem")):
        write_private_key(keys_dir / "key-a.pem", generate_key())
    # Named after this process, so that two test runs on one server keep out of each other's way.
    databases = {
        name: recreate_database(database_name(name, instance), server)
        for name in ("users", "catalog", "orders")
    }
    ports = {name: free_port() for name in databases}
    admin_password = secrets.token_urlsafe(12)
    orders_secret = secrets.token_urlsafe(24)
    reporting_secret = secrets.token_urlsafe(24)
    billing_secret = secrets.token_urlsafe(24)
    common = {
        "FLOTILLA_ENV": "production",
        "LOG_LEVEL": "INFO",
        "WEB_CONCURRENCY": str(workers),
        "JWT_ISSUER": ISSUER,
        "JWT_AUDIENCE": AUDIENCE,
        "USERS_URL": f"{scheme}://127.0.0.1:{ports['users']}",
        "CATALOG_URL": f"{scheme}://127.0.0.1:{ports['catalog']}",
        "HTTP_TIMEOUT_SECONDS": "2",
        "CIRCUIT_RESET_SECONDS": "2",
        "REVOCATION_REFRESH_SECONDS": str(REVOCATION_REFRESH_SECONDS),
        "FLOTILLA_DATA_DIR": str(log_dir / "data"),
        **extra,
    }
    users = ServiceProcess(
        "users",
        {
            **common,
            "DATABASE_URL": databases["users"],
            "JWT_KEYS_DIR": str(keys_dir),
            "ADMIN_EMAIL": "admin@example.com",
            "ADMIN_PASSWORD": admin_password,
            "OAUTH_CLIENTS": "orders,reporting,billing",
            "OAUTH_CLIENT_BILLING_SECRET": billing_secret,
            "OAUTH_CLIENT_BILLING_SCOPES": "reservations:write",
            "OAUTH_CLIENT_ORDERS_SECRET": orders_secret,
            "OAUTH_CLIENT_ORDERS_SCOPES": "reservations:write",
            "OAUTH_CLIENT_REPORTING_SECRET": reporting_secret,
            "OAUTH_CLIENT_REPORTING_SCOPES": "reports:read",
            "LOGIN_MAX_FAILURES": "5",
            "LOGIN_LOCKOUT_SECONDS": "3",
            # Every test calls from 127.0.0.1: the per-address limits stay out of their way here,
            # and tests/reliability/test_rate_limits.py runs users with small ones.
            "LOGIN_MAX_FAILURES_PER_ADDRESS": "1000000",
            "TOKEN_REQUESTS_PER_ADDRESS": "1000000",
        },
        log_dir,
        ports["users"],
    )
    catalog = ServiceProcess(
        "catalog", {**common, "DATABASE_URL": databases["catalog"]}, log_dir, ports["catalog"]
    )
    orders = ServiceProcess(
        "orders",
        {**common, "DATABASE_URL": databases["orders"], "ORDERS_CLIENT_SECRET": orders_secret},
        log_dir,
    )
    platform = Platform(
        users=users,
        catalog=catalog,
        orders=orders,
        database_urls=databases,
        keys_dir=keys_dir,
        admin_email="admin@example.com",
        admin_password=admin_password,
        clients={"orders": orders_secret, "reporting": reporting_secret, "billing": billing_secret},
        instance=instance,
        server=server,
    )
    try:
        for service in platform.services():
            service.migrate()
            service.start()
    except BaseException:
        platform.stop()
        raise
    return platform
