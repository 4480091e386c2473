"""What a served process imports: only what serving needs (``worker_rss_*`` in ``make bench``).

Each check runs in a fresh interpreter, the way gunicorn's master and its workers import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scripts.services import names

SERVICES = tuple(names())
SERVICE_PACKAGES = tuple(f"flotilla_{name}" for name in SERVICES)
# What only `migrate` and the other commands need: never in a worker.
CLIS = tuple(f"{package}.cli" for package in ("flotilla_kit", *SERVICE_PACKAGES))
COMMAND_ONLY = ("alembic", "flotilla_kit.migrations", *CLIS)
# The kit's client is urllib3's own: requests would add 124 modules and 3 MB to a worker.
NEVER_SERVED = (*COMMAND_ONLY, "requests")


def imported_by(code: str, tmp_path: Path) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; it prints one JSON object (module lists, mostly)."""
    env = {
        **os.environ,
        "FLOTILLA_ENV": "development",
        "FLOTILLA_DATA_DIR": str(tmp_path / "data"),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "USERS_URL": "http://127.0.0.1:1",
        "CATALOG_URL": "http://127.0.0.1:1",
        "ORDERS_CLIENT_SECRET": "s" * 20,
    }
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    found: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return found


def within(modules: list[str], packages: tuple[str, ...]) -> list[str]:
    """The modules that are one of ``packages`` or inside one."""
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in packages)]


@pytest.mark.parametrize("service", SERVICES)
def test_a_worker_imports_no_command_line_or_migration_code(service: str, tmp_path: Path) -> None:
    code = f"""
import importlib, json, sys, threading
from flotilla_kit import gunicorn_conf
for name in gunicorn_conf.PRELOADED:
    importlib.import_module(name)
master, master_threads = sorted(sys.modules), threading.active_count()
importlib.import_module("flotilla_{service}.app").create_app()
print(json.dumps({{"master": master, "threads": master_threads, "worker": sorted(sys.modules)}}))
"""
    found = imported_by(code, tmp_path)
    assert within(found["worker"], NEVER_SERVED) == []
    # A HUP makes new workers import the service's own modules afresh (the dev loop's file sync):
    # the master holds none of them, and forks with no thread running.
    assert within(found["master"], SERVICE_PACKAGES) == []
    assert found["threads"] == 1


@pytest.mark.parametrize("service", SERVICES)
def test_the_command_line_imports_no_models_before_serve_replaces_it(service: str, tmp_path: Path) -> None:
    code = f"""
import json, sys
import flotilla_{service}.cli
print(json.dumps({{"cli": sorted(sys.modules)}}))
"""
    heavy = ("alembic", "sqlalchemy", "argon2", "cryptography", f"flotilla_{service}.app")
    assert within(imported_by(code, tmp_path)["cli"], heavy) == []
