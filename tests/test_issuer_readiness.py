"""A service's /readyz waits for the token issuer only when it declares one (USERS_URL, as the
operator sets for dependsOn: [users]): catalog alone (the hello example) is ready without it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flotilla_catalog.app import create_app
from flotilla_catalog.settings import CatalogSettings


def readiness(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, users_url: str | None
) -> tuple[int, dict[str, Any]]:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'catalog.db'}")
    monkeypatch.setenv("POD_NAMESPACE", "nowhere")  # users.nowhere.svc... is not declared, only guessed
    monkeypatch.delenv("JWKS_URL", raising=False)
    monkeypatch.delenv("REVOCATIONS_URL", raising=False)
    if users_url:
        monkeypatch.setenv("USERS_URL", users_url)
    else:
        monkeypatch.delenv("USERS_URL", raising=False)
    settings = CatalogSettings.load()
    response = create_app(settings).test_client().get("/readyz")
    return response.status_code, response.get_json()


def test_without_a_declared_issuer_readiness_does_not_wait_for_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, body = readiness(tmp_path, monkeypatch, users_url=None)
    assert status == 200, body
    assert set(body["checks"]) == {"database"}


def test_a_declared_issuer_that_cannot_be_reached_keeps_the_service_unready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, body = readiness(tmp_path, monkeypatch, users_url="http://127.0.0.1:9")  # nothing listens
    assert status == 503, body
    assert body["checks"]["signing_keys"] == "failing" and body["checks"]["revocations"] == "failing"
