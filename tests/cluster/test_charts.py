"""The Helm charts, checked by helm itself and by the real API server (server-side dry run)."""

from __future__ import annotations

import json

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiClient

from tests.support.kube import ROOT, temporary_namespace, tool

CHARTS = ROOT / "charts"
SERVICE_CHARTS = ["users", "catalog", "orders"]
ALL_CHARTS = ["flotilla-lib", *SERVICE_CHARTS, "flotilla-operator", "flotilla"]
MONITORING_API = "monitoring.coreos.com/v1/ServiceMonitor"
RULES_API = "monitoring.coreos.com/v1/PrometheusRule"


@pytest.fixture(scope="module", autouse=True)
def dependencies() -> None:
    for chart in [*SERVICE_CHARTS, "flotilla-operator", "flotilla"]:  # the umbrella last: it packs the others
        built = tool("helm", "dependency", "build", str(CHARTS / chart))
        assert built.returncode == 0, built.stderr


@pytest.mark.parametrize("chart", ALL_CHARTS)
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


def test_no_pod_gets_docker_link_variables() -> None:
    """A Service named like a setting (flotilla-operator-metrics) would set FLOTILLA_OPERATOR_METRICS_PORT."""
    rendered = tool(
        "helm", "template", "flotilla", str(CHARTS / "flotilla"), "--set", "operator.enabled=true"
    )
    assert rendered.returncode == 0, rendered.stderr
    workloads = [
        doc
        for doc in yaml.safe_load_all(rendered.stdout)
        if doc and doc["kind"] in {"Deployment", "StatefulSet"}
    ]
    assert {doc["metadata"]["name"] for doc in workloads} >= {
        "users",
        "catalog",
        "orders",
        "flotilla-operator",
    }
    assert all(doc["spec"]["template"]["spec"]["enableServiceLinks"] is False for doc in workloads)


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


MATRIX = {
    "default": [],
    "operator-mode": ["--set", "global.mode=operator", "--set", "operator.enabled=true"],
    "monitoring-off": [
        *("--set", "users.serviceMonitor.enabled=false", "--set", "catalog.serviceMonitor.enabled=false"),
        *("--set", "orders.serviceMonitor.enabled=false", "--set", "networkPolicy.enabled=false"),
        *("--set", "monitoring.alerts.enabled=false", "--set", "monitoring.dashboards.enabled=false"),
    ],
    "tls-on": [
        *("--set", "ingress.host=shop.example.com", "--set", "ingress.tls.enabled=true"),
        *("--set", "ingress.tls.clusterIssuer=letsencrypt", "--set", "ingress.className=nginx"),
    ],
    "external-database": [
        "--set",
        "postgresql.enabled=false",
        *(
            arg
            for svc in SERVICE_CHARTS
            for arg in ("--set", f"externalDatabase.{svc}.url=postgresql://{svc}:pw@db:5432/{svc}")
        ),
    ],
}


@pytest.mark.usefixtures("microservice_crd")
@pytest.mark.parametrize("case", MATRIX, ids=list(MATRIX))
def test_the_umbrella_chart_renders_what_the_api_server_accepts(case: str, namespace: str) -> None:
    rendered = tool(
        "helm",
        "template",
        "fl",
        str(CHARTS / "flotilla"),
        "-n",
        namespace,
        "--api-versions",
        MONITORING_API,
        "--api-versions",
        RULES_API,
        *MATRIX[case],
    )
    assert rendered.returncode == 0, rendered.stderr
    documents = [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]
    kinds = [doc["kind"] for doc in documents]
    if case == "operator-mode":
        assert kinds.count("Microservice") == 3 and "ClusterRole" in kinds
        operator = next(d for d in documents if d["kind"] == "Deployment")
        assert operator["metadata"]["name"] == "flotilla-operator"
    else:
        assert kinds.count("Deployment") == 3 and "Microservice" not in kinds
    assert ("StatefulSet" in kinds) == (case != "external-database")
    assert ("ServiceMonitor" in kinds) == (case != "monitoring-off")
    assert ("PrometheusRule" in kinds) == (case != "monitoring-off")
    dashboards = [
        d
        for d in documents
        if d["kind"] == "ConfigMap" and d["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    assert len(dashboards) == (0 if case == "monitoring-off" else 4)
    if case == "tls-on":
        ingress = next(d for d in documents if d["kind"] == "Ingress")
        assert ingress["spec"]["tls"][0]["hosts"] == ["shop.example.com"]
    cluster_scoped = [d for d in documents if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    namespaced = yaml.safe_dump_all([d for d in documents if d not in cluster_scoped])
    checked = tool("kubectl", "apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=namespaced)
    assert checked.returncode == 0, checked.stderr


def test_external_database_needs_its_urls() -> None:
    rendered = tool("helm", "template", "fl", str(CHARTS / "flotilla"), "--set", "postgresql.enabled=false")
    assert rendered.returncode != 0
    assert "externalDatabase.users.url is required" in rendered.stderr


def _secret_data(namespace: str, name: str) -> dict[str, str]:
    shown = tool("kubectl", "get", "secret", name, "-n", namespace, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    return dict(json.loads(shown.stdout)["data"])


def test_install_upgrade_and_uninstall_in_a_restricted_namespace(kube: ApiClient) -> None:
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    with temporary_namespace(kube, labels) as namespace:
        values = ["--set", "postgresql.persistence.enabled=false"]
        installed = tool(
            "helm",
            "upgrade",
            "--install",
            "fl",
            str(CHARTS / "flotilla"),
            "-n",
            namespace,
            "--wait",
            "--timeout",
            "180s",
            *values,
        )
        assert installed.returncode == 0, installed.stdout + installed.stderr
        apps = client.AppsV1Api(kube)
        deployments = apps.list_namespaced_deployment(namespace).items
        assert sorted(str(d.metadata.name) for d in deployments) == ["catalog", "orders", "users"]
        for deployment in deployments:
            conditions = {c.type: c.status for c in deployment.status.conditions}
            assert conditions["Available"] == "True", deployment.metadata.name
        assert apps.read_namespaced_stateful_set("fl-postgresql", namespace).status.ready_replicas == 1
        before = _secret_data(namespace, "fl-flotilla"), _secret_data(namespace, "fl-jwt-keys")
        upgraded = tool("helm", "upgrade", "fl", str(CHARTS / "flotilla"), "-n", namespace, "--wait", *values)
        assert upgraded.returncode == 0, upgraded.stderr
        assert (_secret_data(namespace, "fl-flotilla"), _secret_data(namespace, "fl-jwt-keys")) == before
        removed = tool("helm", "uninstall", "fl", "-n", namespace, "--wait")
        assert removed.returncode == 0, removed.stderr
        left = tool(
            "kubectl", "get", "deploy,sts,svc,secret,networkpolicy,pdb,ingress", "-n", namespace, "-o", "name"
        )
        # Only the generated secrets stay (helm.sh/resource-policy: keep), for a later reinstall.
        assert sorted(left.stdout.split()) == ["secret/fl-flotilla", "secret/fl-jwt-keys"], left.stdout


@pytest.mark.parametrize("chart", SERVICE_CHARTS)
def test_a_service_chart_can_route_its_own_ingress(chart: str, namespace: str) -> None:
    rendered = tool(
        "helm",
        "template",
        chart,
        str(CHARTS / chart),
        "-n",
        namespace,
        *("--set", "ingress.enabled=true", "--set", "ingress.host=shop.example.com"),
        *("--set", "ingress.tlsSecretName=shop-tls", "--set", "ingress.className=nginx"),
    )
    assert rendered.returncode == 0, rendered.stderr
    ingress = next(d for d in yaml.safe_load_all(rendered.stdout) if d and d["kind"] == "Ingress")
    assert ingress["spec"]["tls"] == [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}]
    checked = tool("kubectl", "apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=rendered.stdout)
    assert checked.returncode == 0, checked.stderr
