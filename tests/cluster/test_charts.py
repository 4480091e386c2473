"""The Helm charts, checked by helm itself and by the real API server (server-side dry run)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.kube import kubeconfig_path

ROOT = Path(__file__).resolve().parents[2]
CHARTS = ROOT / "charts"
BIN = Path(os.environ.get("FLOTILLA_CLUSTER_BIN", Path.home() / ".cache" / "flotilla" / "cluster" / "bin"))
SERVICE_CHARTS = ["users", "catalog", "orders"]


def tool(name: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the pinned helm or kubectl against the test cluster."""
    return subprocess.run(
        [str(BIN / name), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "KUBECONFIG": str(kubeconfig_path())},
    )


@pytest.fixture(scope="module", autouse=True)
def dependencies() -> None:
    for chart in SERVICE_CHARTS:
        built = tool("helm", "dependency", "build", str(CHARTS / chart))
        assert built.returncode == 0, built.stderr


@pytest.mark.parametrize("chart", ["flotilla-lib", *SERVICE_CHARTS])
def test_helm_lint_strict(chart: str) -> None:
    result = tool("helm", "lint", "--strict", str(CHARTS / chart))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("chart", SERVICE_CHARTS)
def test_service_charts_render_what_the_api_server_accepts(chart: str, namespace: str) -> None:
    rendered = tool("helm", "template", chart, str(CHARTS / chart), "--namespace", namespace)
    assert rendered.returncode == 0, rendered.stderr
    kinds = {doc["kind"] for doc in yaml.safe_load_all(rendered.stdout) if doc}
    assert kinds == {"Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"}
    checked = tool("kubectl", "apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=rendered.stdout)
    assert checked.returncode == 0, checked.stderr


def test_service_chart_values_are_validated_by_the_schema() -> None:
    result = tool("helm", "template", "x", str(CHARTS / "users"), "--set", "containerPort=70000")
    assert result.returncode != 0
    assert "containerPort" in result.stderr


def test_a_service_monitor_renders_when_the_cluster_has_its_crd() -> None:
    rendered = tool(
        "helm",
        "template",
        "users",
        str(CHARTS / "users"),
        "--api-versions",
        "monitoring.coreos.com/v1/ServiceMonitor",
        "--set",
        "serviceMonitor.labels.release=prom",
    )
    assert rendered.returncode == 0, rendered.stderr
    monitors = [d for d in yaml.safe_load_all(rendered.stdout) if d and d["kind"] == "ServiceMonitor"]
    assert len(monitors) == 1
    assert monitors[0]["metadata"]["labels"]["release"] == "prom"
