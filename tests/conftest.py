"""Session fixtures: the services under gunicorn on a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.platform import Platform, start_platform


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """users, catalog and orders with two gunicorn workers each, on fresh databases."""
    running = start_platform(tmp_path_factory.mktemp("logs"), tmp_path_factory.mktemp("keys"))
    yield running
    running.stop()
