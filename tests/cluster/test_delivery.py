"""k8s/ manifests, skaffold.yaml and the GitHub workflows, checked by the real tools."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

from tests.cluster.test_charts import CHARTS
from tests.support.kube import BIN, FAKE_NODE_ANNOTATIONS, ROOT, tool

K8S = ROOT / "k8s"


@pytest.fixture(scope="module")
def flotilla_namespace(kube: ApiClient) -> Iterator[str]:
    """The namespace of k8s/namespace.yaml, applied for real under a name of its own (a live
    `make up` platform owns "flotilla"), on the fake nodes, and removed afterwards."""
    manifest = yaml.safe_load((K8S / "namespace.yaml").read_text())
    assert manifest["metadata"]["name"] == "flotilla"
    name = f"flotilla-{uuid.uuid4().hex[:8]}"
    manifest["metadata"]["name"] = name
    manifest["metadata"].setdefault("annotations", {}).update(FAKE_NODE_ANNOTATIONS)
    applied = tool("kubectl", "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(manifest))
    assert applied.returncode == 0, applied.stderr
    yield name
    try:
        client.CoreV1Api(kube).delete_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise


def test_the_namespace_enforces_the_restricted_standard(kube: ApiClient, flotilla_namespace: str) -> None:
    labels = client.CoreV1Api(kube).read_namespace(flotilla_namespace).metadata.labels
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.usefixtures("microservice_crd")
def test_example_microservices_are_accepted_by_the_api_server(flotilla_namespace: str) -> None:
    examples = list(yaml.safe_load_all((K8S / "examples" / "microservices.yaml").read_text()))
    assert {doc["metadata"]["namespace"] for doc in examples} == {"flotilla"}
    for doc in examples:
        doc["metadata"]["namespace"] = flotilla_namespace
    checked = tool("kubectl", "apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(examples))
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.count("created (server dry run)") == 3


def test_the_kind_config_maps_ingress_ports_to_a_labelled_node() -> None:
    config = yaml.safe_load((K8S / "kind-config.yaml").read_text())
    assert (config["apiVersion"], config["kind"]) == ("kind.x-k8s.io/v1alpha4", "Cluster")
    control_plane = next(node for node in config["nodes"] if node["role"] == "control-plane")
    assert {m["containerPort"]: m["hostPort"] for m in control_plane["extraPortMappings"]} == {
        80: 80,
        443: 443,
    }
    assert "ingress-ready=true" in control_plane["kubeadmConfigPatches"][0]


def skaffold(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "skaffold"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(Path.home()), "SKAFFOLD_UPDATE_CHECK": "false"},
    )


def test_skaffold_diagnose_reads_the_config_and_its_profiles() -> None:
    for profile in ([], ["--profile", "kind"], ["--profile", "operator"]):
        diagnosed = skaffold("diagnose", "--yaml-only", *profile)
        assert diagnosed.returncode == 0, diagnosed.stderr
        config = yaml.safe_load(diagnosed.stdout)
        assert [a["image"] for a in config["build"]["artifacts"]] == [
            "flotilla/users",
            "flotilla/catalog",
            "flotilla/orders",
            "flotilla/operator",
        ]
    operator = yaml.safe_load(skaffold("diagnose", "--yaml-only", "--profile", "operator").stdout)
    values = operator["manifests"]["helm"]["releases"][0]["setValues"]
    assert values["global.mode"] == "operator"


@pytest.mark.usefixtures("microservice_crd")
def test_skaffold_renders_the_umbrella_chart_offline(flotilla_namespace: str) -> None:
    tool("helm", "dependency", "build", str(CHARTS / "flotilla"))
    rendered = skaffold("render", "--offline=true", "--digest-source=tag", "--default-repo=", "--tag=test")
    assert rendered.returncode == 0, rendered.stderr
    documents = [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]
    images = {
        c["image"]
        for d in documents
        if d["kind"] == "Deployment"
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert images == {"flotilla/users:test", "flotilla/catalog:test", "flotilla/orders:test"}
    checked = tool(
        "kubectl",
        "apply",
        "--dry-run=server",
        "-n",
        flotilla_namespace,
        "-f",
        "-",
        stdin=yaml.safe_dump_all(documents),
    )
    assert checked.returncode == 0, checked.stderr


def test_the_github_workflows_pass_actionlint() -> None:
    linted = subprocess.run(
        [str(BIN / "actionlint"), "-format", "{{json .}}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert json.loads(linted.stdout or "[]") == []
