"""Session fixtures: the services under gunicorn on a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes.client import ApiClient

from tests.support.kube import connect, temporary_namespace
from tests.support.platform import Platform, start_platform

pytest_plugins = ["tests.support.cases"]


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """users, catalog and orders with two gunicorn workers each, on fresh databases."""
    running = start_platform(tmp_path_factory.mktemp("logs"), tmp_path_factory.mktemp("keys"))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def kube() -> Iterator[ApiClient]:
    """The live cluster's API (``make cluster-up``, or the cluster KUBECONFIG names)."""
    api = connect()
    yield api
    api.close()


@pytest.fixture
def namespace(kube: ApiClient) -> Iterator[str]:
    """A fresh namespace for one test."""
    with temporary_namespace(kube) as name:
        yield name
