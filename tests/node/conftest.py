"""The end-to-end suite: the platform's real images on the real node (`make node-up`), reached
through the Traefik ingress. It runs in a pytest session of its own (`pytest -m e2e tests/node`),
so that no operator of the kwok tests shares the cluster with the one installed here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from kubernetes import client
from kubernetes.client import ApiClient

from tests.support.kube import ROOT, wait_for
from tests.support.node import INGRESS_URL, NODE_NAME, REGISTRY, Platform, installed_platform, platform_images

HERE = Path(__file__).parent
# The session's platform records every trace in its Jaeger, whose route is this host's: `make up`'s
# Jaeger (any host) answers at 127.0.0.1, this one at localhost, both through the same ingress.
JAEGER_HOST = "localhost"
JAEGER_PATH = "/jaeger"


def jaeger_image() -> str:
    """Jaeger's image in the node's registry (scripts/images.sh node builds it from the pinned module)."""
    versions = (ROOT / "scripts" / "cluster" / "versions.env").read_text()
    found = re.search(r"^JAEGER_VERSION=(\S+)$", versions, re.MULTILINE)
    assert found, "scripts/cluster/versions.env pins no JAEGER_VERSION"
    return f"{REGISTRY}/flotilla/jaeger:{found.group(1)}"


def tracing_values() -> dict[str, str]:
    """helm --set values: tracing on, every trace recorded, Jaeger routed under JAEGER_HOST."""
    return {
        "tracing.enabled": "true",
        "tracing.ingress.enabled": "true",
        "tracing.sampleRatio": "1",
        "tracing.jaeger.image": jaeger_image(),
        "tracing.ingress.host": JAEGER_HOST,
        "tracing.ingress.path": JAEGER_PATH,
    }


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
    that namespace) has made every Microservice Ready, and the ingress routes to them. Traces are
    on: every request's spans go to the release's Jaeger (the ``jaeger`` fixture)."""
    with installed_platform(kube, images, extra_values=tracing_values()) as platform:
        yield platform


@pytest.fixture(scope="session")
def jaeger(platform: Platform) -> str:
    """The base URL of the session platform's Jaeger query API and UI, through the ingress, such as
    http://localhost:8080/jaeger: ``{jaeger}/api/traces?service=orders`` lists orders' traces,
    ``{jaeger}/api/traces/<trace id>`` reads one (tests/support/jaeger.py). Ready: it answers."""
    url = INGRESS_URL.replace("127.0.0.1", JAEGER_HOST, 1) + JAEGER_PATH

    def answers() -> bool:
        try:
            response = requests.get(f"{url}/api/services", timeout=10)
        except requests.ConnectionError:
            return False
        return response.status_code == 200 and response.headers.get("Content-Type", "").startswith(
            "application/json"
        )

    wait_for(answers, timeout=120, interval=1, what=f"Jaeger's query API at {url}")
    return url
