"""The published path, for real on the node: `make release-local` does what the release workflow
does against the node's registry, then the release is installed from that registry as a user
installs it from ghcr.io (`helm install oci://...`), upgraded and rolled back, with Helm 4's
status-aware wait; the pods run images the node's containerd pulled from the registry."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from kubernetes import client
from kubernetes.client import ApiClient

from tests.support.kube import BIN, ROOT, temporary_namespace, tool
from tests.support.node import (
    GROUP,
    PLURAL,
    REGISTRY,
    SERVICES,
    VERSION,
    helm,
)

CONTAINERD = ROOT / ".cluster" / "node" / "run" / "containerd.sock"
MANIFEST_TYPES = ", ".join(
    ("application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json")
)


@dataclass(frozen=True)
class Release:
    """What `make release-local` printed: the version, the chart's OCI reference, and the local
    PostgreSQL image (not part of a release)."""

    version: str
    chart: str
    postgresql: str


@pytest.fixture(scope="module")
def release(real_node: str) -> Release:
    result = subprocess.run(
        ["make", "--no-print-directory", "release-local"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    printed = dict(line.split("=", 1) for line in result.stdout.split())
    return Release(printed["version"], printed["chart"], printed["postgresql"])


def registry_get(path: str, **headers: str) -> requests.Response:
    response = requests.get(f"http://{REGISTRY}/v2/{path}", headers=headers, timeout=10)
    response.raise_for_status()
    return response


def microservices(kube: ApiClient, namespace: str) -> list[dict[str, Any]]:
    listed = client.CustomObjectsApi(kube).list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    return list(listed["items"])


def ready(ms: dict[str, Any]) -> bool:
    status = ms.get("status") or {}
    return status.get("observedGeneration") == ms["metadata"]["generation"] and any(
        c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])
    )


@pytest.fixture(scope="module")
def installed(kube: ApiClient, release: Release) -> Iterator[tuple[str, str]]:
    """`helm install oci://...` of the release into a restricted namespace of its own, with
    --wait: (namespace, release name)."""
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    with temporary_namespace(kube, labels, fake_nodes=False) as namespace:
        name = f"rel-{namespace}"
        helm("install", name, release.chart, "--version", release.version, "--plain-http",
             "--namespace", namespace, "--wait", "--timeout", "600s",
             "--set", f"postgresql.image={release.postgresql}",
             "--set", f"operator.watchNamespace={namespace}",
             "--set", f"ingress.host={namespace}.flotilla.test",
             # One pod a service: the node's two cores also hold the session's platform.
             "--set", "serviceDefaults.replicas=1", timeout=900)  # fmt: skip
        try:
            yield namespace, name
        finally:
            helm("uninstall", name, "--namespace", namespace, "--wait", "--timeout", "180s")


def test_the_registry_holds_every_image_and_the_chart_under_the_release_version(release: Release) -> None:
    catalog = set(registry_get("_catalog?n=1000").json()["repositories"])
    for name in (*SERVICES, "operator"):
        assert f"flotilla/{name}" in catalog
        assert release.version in registry_get(f"flotilla/{name}/tags/list").json()["tags"]
    assert "charts/flotilla" in catalog and "charts/flotilla-operator" in catalog
    assert release.version in registry_get("charts/flotilla/tags/list").json()["tags"]
    # The chart the registry serves carries the version in every chart inside it.
    shown = tool("helm", "show", "chart", release.chart, "--version", release.version, "--plain-http")
    assert shown.returncode == 0, shown.stderr
    assert f"version: {release.version}" in shown.stdout


def test_helm_install_from_the_registry_waits_until_every_microservice_is_ready(
    kube: ApiClient, installed: tuple[str, str]
) -> None:
    namespace, _ = installed
    # Nothing waited after helm returned: its --wait is what made them Ready.
    listed = microservices(kube, namespace)
    assert {ms["metadata"]["name"] for ms in listed} == set(SERVICES)
    assert all(ready(ms) for ms in listed), [ms.get("status") for ms in listed]


def test_the_pods_run_images_the_node_pulled_from_the_registry(
    kube: ApiClient, installed: tuple[str, str], release: Release
) -> None:
    namespace, _ = installed
    pods = client.CoreV1Api(kube).list_namespaced_pod(namespace).items
    # The image each container was asked to run -> the digest it runs (the status's own image
    # name may be another tag of the same digest, an earlier release's).
    by_image: dict[str, set[str]] = {}
    for pod in pods:
        running = {status.name: status.image_id for status in pod.status.container_statuses or []}
        for container in pod.spec.containers:
            by_image.setdefault(container.image, set()).add(running.get(container.name, ""))
    for name in (*SERVICES, "operator"):
        reference = f"{REGISTRY}/flotilla/{name}:{release.version}"
        assert reference in by_image, sorted(by_image)
        # The digest the registry serves for that tag is the one containerd pulled and runs.
        served = registry_get(f"flotilla/{name}/manifests/{release.version}", Accept=MANIFEST_TYPES).headers[
            "Docker-Content-Digest"
        ]
        crictl = [str(BIN / "crictl"), "--runtime-endpoint", f"unix://{CONTAINERD}"]
        inspected = subprocess.run(
            [*crictl, "inspecti", "-o", "json", reference],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert inspected.returncode == 0, inspected.stderr
        repo_digests = json.loads(inspected.stdout)["status"]["repoDigests"]
        assert f"{REGISTRY}/flotilla/{name}@{served}" in repo_digests
        assert by_image[reference] == {f"{REGISTRY}/flotilla/{name}@{served}"}


def test_an_upgrade_and_a_rollback_of_the_release(
    kube: ApiClient, installed: tuple[str, str], release: Release
) -> None:
    namespace, name = installed
    apps = client.AppsV1Api(kube)
    helm("upgrade", name, release.chart, "--version", release.version, "--plain-http",
         "--namespace", namespace, "--reuse-values", "--set", "services.catalog.replicas=2",
         "--wait", "--timeout", "600s", timeout=900)  # fmt: skip
    catalog = apps.read_namespaced_deployment("catalog", namespace)
    assert (catalog.spec.replicas, catalog.status.ready_replicas) == (2, 2)
    assert all(ready(ms) for ms in microservices(kube, namespace))

    helm("rollback", name, "1", "--namespace", namespace, "--wait", "--timeout", "600s", timeout=900)
    history = json.loads(helm("history", name, "--namespace", namespace, "-o", "json"))
    assert [(entry["revision"], entry["status"]) for entry in history][-1] == (3, "deployed")
    assert "Rollback to 1" in history[-1]["description"]
    catalog = apps.read_namespaced_deployment("catalog", namespace)
    assert catalog.spec.replicas == 1
    assert all(ready(ms) for ms in microservices(kube, namespace))
