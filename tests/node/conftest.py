"""The end-to-end suite: the platform's real images on the real node (`make node-up`), reached
through the Traefik ingress. It runs in a pytest session of its own (`pytest -m e2e tests/node`),
so that no operator of the kwok tests shares the cluster with the one installed here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from tests.support.node import NODE_NAME, Platform, installed_platform, platform_images

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def real_node(kube: ApiClient) -> str:
    """The real node, Ready; a clear failure when `make node-up` has not run."""
    try:
        node = client.CoreV1Api(kube).read_node(NODE_NAME)
    except client.ApiException as exc:
        pytest.fail(f"no node {NODE_NAME} ({exc.status}): run 'make node-up' (make test does)")
    ready = [c.status for c in node.status.conditions or [] if c.type == "Ready"]
    assert ready == ["True"], f"node {NODE_NAME} is not Ready: {node.status.conditions}"
    return NODE_NAME


@pytest.fixture(scope="session")
def images(real_node: str) -> dict[str, str]:
    """The platform's images, built from the project's Dockerfiles and pushed to the node's registry."""
    return platform_images()


@pytest.fixture(scope="session")
def platform(kube: ApiClient, images: dict[str, str]) -> Iterator[Platform]:
    """The umbrella chart in a restricted namespace of its own: the operator's pod (watching
    that namespace) has made every Microservice Ready, and the ingress routes to them."""
    with installed_platform(kube, images) as platform:
        yield platform
