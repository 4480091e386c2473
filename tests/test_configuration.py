"""Start-up configuration: every missing or bad variable is named, and nothing starts."""

from __future__ import annotations

import pytest

from tests.support.processes import run_cli

BASE = {"USERS_URL": "http://127.0.0.1:1", "CATALOG_URL": "http://127.0.0.1:1", "FLOTILLA_ENV": "development"}


def test_a_valid_environment_passes_the_check(tmp_path) -> None:
    env = {**BASE, "ORDERS_CLIENT_SECRET": "s" * 20, "FLOTILLA_DATA_DIR": str(tmp_path)}
    result = run_cli("orders", "check-config", env=env)
    assert result.returncode == 0, result.stderr
    assert "configuration ok" in result.stdout


@pytest.mark.parametrize(
    ("environment", "issuer"),
    [("development", "flotilla-users"), ("production", "https://shop.example.com/users")],
)
def test_the_issuer_must_be_an_https_url_in_production_only(environment: str, issuer: str, tmp_path) -> None:
    env = {
        **BASE,
        "FLOTILLA_DATA_DIR": str(tmp_path),
        "FLOTILLA_ENV": environment,
        "JWT_KEYS_DIR": str(tmp_path),
        "JWT_ISSUER": issuer,
        "TRUSTED_PROXIES": "10.42.0.0/16, 127.0.0.1, fd00::/8",
    }
    result = run_cli("users", "check-config", env=env)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("service", ["users", "catalog", "orders"])
def test_migrate_runs_in_a_fresh_container_with_multiprocess_metrics(service: str, tmp_path) -> None:
    """An init container's /tmp is empty: the metrics directory does not exist yet."""
    env = {
        **BASE,
        "ORDERS_CLIENT_SECRET": "s" * 20,
        "FLOTILLA_DATA_DIR": str(tmp_path),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "tmp" / "metrics"),
    }
    result = run_cli(service, "migrate", env=env)
    assert result.returncode == 0, result.stderr
    assert "database at the newest revision" in result.stdout


def test_migrate_seeds_the_demo_products_only_when_asked(tmp_path) -> None:
    """A shop example gets products to order from the migration alone (SEED_DEMO_PRODUCTS)."""
    env = {**BASE, "FLOTILLA_DATA_DIR": str(tmp_path)}
    plain = run_cli("catalog", "migrate", env=env)
    assert plain.returncode == 0, plain.stderr
    assert "demo product" not in plain.stdout

    seeded = run_cli("catalog", "migrate", env={**env, "SEED_DEMO_PRODUCTS": "true"})
    again = run_cli("catalog", "migrate", env={**env, "SEED_DEMO_PRODUCTS": "true"})

    assert seeded.returncode == 0, seeded.stderr
    assert "catalog: 5 demo product(s) added" in seeded.stdout
    assert "catalog: 0 demo product(s) added" in again.stdout  # idempotent, matched by name


@pytest.mark.parametrize(
    ("service", "env", "named"),
    [
        ("orders", {}, "ORDERS_CLIENT_SECRET"),
        ("orders", {"ORDERS_CLIENT_SECRET": "short"}, "ORDERS_CLIENT_SECRET"),
        ("catalog", {"HTTP_TIMEOUT_SECONDS": "soon"}, "HTTP_TIMEOUT_SECONDS"),
        ("catalog", {"FLOTILLA_ENV": "staging"}, "FLOTILLA_ENV"),
        ("catalog", {"USERS_URL": ""}, "USERS_URL"),
        ("catalog", {"SEED_DEMO_PRODUCTS": "maybe"}, "SEED_DEMO_PRODUCTS"),
        ("users", {"FLOTILLA_ENV": "production"}, "JWT_KEYS_DIR"),
        ("users", {"FLOTILLA_ENV": "production", "JWT_KEYS_DIR": "/keys"}, "JWT_ISSUER"),
        (
            "users",
            {"FLOTILLA_ENV": "production", "JWT_KEYS_DIR": "/keys", "JWT_ISSUER": "http://users.example.com"},
            "JWT_ISSUER",
        ),
        (
            "users",
            {"FLOTILLA_ENV": "production", "JWT_KEYS_DIR": "/keys", "JWT_ISSUER": "https://x.example/?t=1"},
            "JWT_ISSUER",
        ),
        (
            "catalog",
            {"TRUSTED_PROXIES": "10.0.0.0/8, proxy.internal"},
            "TRUSTED_PROXIES: bad entry 'proxy.internal'",
        ),
        ("users", {"TRUSTED_PROXIES": "10.0.0.1/8"}, "TRUSTED_PROXIES: bad entry '10.0.0.1/8'"),
        ("users", {"LOGIN_MAX_FAILURES_PER_ADDRESS": "0"}, "LOGIN_MAX_FAILURES_PER_ADDRESS"),
        ("users", {"TOKEN_ADDRESS_WINDOW_SECONDS": "soon"}, "TOKEN_ADDRESS_WINDOW_SECONDS"),
        ("users", {"PORT": "http"}, "PORT"),
        ("users", {"WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY"),
    ],
)
def test_a_bad_variable_is_named_and_the_service_does_not_start(
    service: str, env: dict[str, str], named: str, tmp_path
) -> None:
    full = {**BASE, "FLOTILLA_DATA_DIR": str(tmp_path), **env}
    if service == "orders" and "ORDERS_CLIENT_SECRET" not in env:
        full.pop("ORDERS_CLIENT_SECRET", None)
    for command in ("check-config", "serve"):
        result = run_cli(service, command, env=full)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert named in result.stderr
        assert "Traceback" not in result.stderr


# What only `migrate` needs (users registers the clients and the admin): it and check-config
# refuse to start without it; `serve` is not given these secrets and does not need them.
@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OAUTH_CLIENTS": "billing"}, "OAUTH_CLIENT_BILLING_SECRET"),
        ({"OAUTH_CLIENTS": "billing", "OAUTH_CLIENT_BILLING_SECRET": "short"}, "OAUTH_CLIENT_BILLING_SECRET"),
        ({"ADMIN_EMAIL": "a@example.com"}, "ADMIN_PASSWORD"),
    ],
)
def test_a_secret_only_the_migration_needs_is_named_by_migrate_and_check_config(
    env: dict[str, str], named: str, tmp_path
) -> None:
    full = {**BASE, "FLOTILLA_DATA_DIR": str(tmp_path), **env}
    for command in ("check-config", "migrate"):
        result = run_cli("users", command, env=full)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert named in result.stderr
        assert "Traceback" not in result.stderr


def test_orders_migrates_without_the_client_secret_it_needs_to_serve(tmp_path) -> None:
    env = {name: value for name, value in BASE.items() if name != "ORDERS_CLIENT_SECRET"}
    migrated = run_cli("orders", "migrate", env={**env, "FLOTILLA_DATA_DIR": str(tmp_path)})
    assert migrated.returncode == 0, migrated.stderr
    refused = run_cli("orders", "check-config", env={**env, "FLOTILLA_DATA_DIR": str(tmp_path)})
    assert refused.returncode == 2 and "ORDERS_CLIENT_SECRET" in refused.stderr


def test_secrets_come_from_files_named_by_file_variables_or_in_the_secrets_directory(tmp_path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "ORDERS_CLIENT_SECRET").write_text("from-the-secrets-directory\n")
    database = tmp_path / "orders.db"
    (tmp_path / "database-url").write_text(f"sqlite:///{database}\n")
    env = {name: value for name, value in BASE.items() if name != "ORDERS_CLIENT_SECRET"}
    env |= {
        "FLOTILLA_DATA_DIR": str(tmp_path / "data"),
        "FLOTILLA_SECRETS_DIR": str(secrets),
        "DATABASE_URL_FILE": str(tmp_path / "database-url"),
    }
    assert run_cli("orders", "check-config", env=env).returncode == 0
    migrated = run_cli("orders", "migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert database.exists()  # the URL came from the file, its newline stripped
    (secrets / "ORDERS_CLIENT_SECRET").write_text("short")
    short = run_cli("orders", "check-config", env=env)
    assert short.returncode == 2 and "ORDERS_CLIENT_SECRET" in short.stderr  # validated like a variable
    both = run_cli("orders", "check-config", env={**env, "DATABASE_URL": f"sqlite:///{database}"})
    assert both.returncode == 2 and "DATABASE_URL and DATABASE_URL_FILE" in both.stderr
    missing = run_cli("orders", "check-config", env={**env, "DATABASE_URL_FILE": str(tmp_path / "nope")})
    assert missing.returncode == 2 and "DATABASE_URL_FILE" in missing.stderr
