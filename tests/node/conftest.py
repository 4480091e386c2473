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

from tests.support.kube import temporary_namespace
from tests.support.node import NODE_NAME, RELEASE, Platform, helm, platform_images

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
    """The platform's images, built from the project's Dockerfiles and imported into the node."""
    return platform_images()


def _installed(kube: ApiClient, images: dict[str, str], mode: str) -> Iterator[Platform]:
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    with temporary_namespace(kube, labels, fake_nodes=False) as namespace:
        platform = Platform(kube, namespace, host=f"{namespace}.flotilla.test", images=images)
        try:
            platform.install(mode)
            yield platform
        finally:
            if platform.installed:
                helm("uninstall", RELEASE, "--namespace", namespace, "--wait", "--timeout", "120s")


@pytest.fixture(scope="module")
def workloads_platform(kube: ApiClient, images: dict[str, str]) -> Iterator[Platform]:
    """The umbrella chart in workloads mode, every pod Ready."""
    yield from _installed(kube, images, "workloads")


@pytest.fixture(scope="module")
def operator_platform(kube: ApiClient, images: dict[str, str]) -> Iterator[Platform]:
    """The umbrella chart in operator mode: Microservice resources and the operator's own pod."""
    yield from _installed(kube, images, "operator")
