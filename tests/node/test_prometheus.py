"""The node's Prometheus (scripts/cluster/node-up.sh), read through its HTTP API.

It runs on the node as a host process and scrapes every pod the operator runs as the
Microservices' and the operator chart's ServiceMonitors would, with their target labels. The
services' NetworkPolicies admit metrics from Prometheus' namespace only; the scrapes come from
the node itself, which every policy admits (kube-router lets the pods' own node through, as
Kubernetes' NetworkPolicy semantics require for the kubelet's probes): these tests see them
succeed. The operator's pod connects to Prometheus through its own NetworkPolicy, only once the
chart is given Prometheus' URL and address (as `make up` gives them).
"""

from __future__ import annotations

import json
import os
import time
import tomllib
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import client
from kubernetes.client import ApiClient

from flotilla_operator import MANAGED_BY
from flotilla_operator.render import SCRAPE_TARGET_LABELS
from tests.support.kube import ROOT, tool, wait_for
from tests.support.monitoring import dashboards, query_panels, substitute, variable_values
from tests.support.node import RELEASE, SERVICES, Platform, exec_in, helm

# Where node-up.sh writes Prometheus' URL (scripts/cluster/lib.sh: PROMETHEUS_URL_FILE).
URL_FILE = Path(os.environ.get("FLOTILLA_CLUSTER_DIR") or ROOT / ".cluster") / "prometheus-url"
# The pod label the ServiceMonitors' podTargetLabels will copy, as a Prometheus label name.
REVISION_LABEL = "flotilla.dev/revision"
OPERATOR_DEPLOYMENT = "flotilla-operator"  # the umbrella chart's operator.nameOverride
# A product id that exists nowhere: catalog's 404, counted by catalog under its route.
MISSING_PRODUCT = "/products/987654321"
# Panels that show faults (5xx, failed calls, reconcile errors, drift, stalled watches): a healthy
# platform gives them nothing to show; their queries must still run.
FAULT_PANELS = {
    "Error ratio (5xx)",
    "5xx ratio by route",
    "Failed outbound calls (5xx, errors, timeouts, open circuit)",
    "Reconcile errors by kind",
    "Drift corrections (children restored) by kind",
    "Watch stalls by kind, and watch restarts, per hour",
}


def label_name(name: str) -> str:
    """A Kubernetes label as a Prometheus label name (prometheus-operator's sanitizeLabelName)."""
    return "".join(c if c.isalnum() else "_" for c in name)


@pytest.fixture(scope="module")
def prometheus(real_node: str) -> str:
    """Prometheus' URL, as node-up.sh wrote it; it is ready."""
    assert URL_FILE.is_file(), f"no {URL_FILE}: run 'make node-up' (make test does)"
    url = URL_FILE.read_text().strip()
    response = requests.get(f"{url}/-/ready", timeout=5)
    assert response.status_code == 200, f"Prometheus at {url} is not ready: {response.text}"
    return url


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    """An instant query's series: each ``{"metric": {...}, "value": [time, "value"]}``."""
    response = requests.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def expected_targets(kube: ApiClient, namespace: str, service: str) -> dict[str, dict[str, str]]:
    """pod -> the labels of its ``up`` series, as a Microservice's ServiceMonitor gives them."""
    core = client.CoreV1Api(kube)
    found = core.read_namespaced_service(service, namespace)
    port = found.spec.ports[0]  # http, or https with spec.tls: the endpoint
    selector = ",".join(f"{key}={value}" for key, value in found.spec.selector.items())
    targets = {}
    for pod in core.list_namespaced_pod(namespace, label_selector=selector).items:
        if pod.status.phase != "Running" or pod.metadata.deletion_timestamp:
            continue
        container = next(
            c for c in pod.spec.containers if any(p.name == port.target_port for p in c.ports or [])
        )
        number = next(p.container_port for p in container.ports if p.name == port.target_port)
        labels = {
            "__name__": "up",
            "job": service,
            "namespace": namespace,
            "service": service,
            "pod": pod.metadata.name,
            "container": container.name,
            "endpoint": port.name,
            "instance": f"{pod.status.pod_ip}:{number}",
        }
        # targetLabels: the Service's labels; podTargetLabels: the revision, when the pod has one.
        labels |= {label_name(name): found.metadata.labels[name] for name in SCRAPE_TARGET_LABELS}
        if REVISION_LABEL in (pod.metadata.labels or {}):
            labels[label_name(REVISION_LABEL)] = pod.metadata.labels[REVISION_LABEL]
        targets[pod.metadata.name] = labels
    return targets


def test_every_service_pod_is_up_with_its_service_monitor_labels(
    kube: ApiClient, platform: Platform, prometheus: str
) -> None:
    """Its NetworkPolicy admits only Prometheus' namespace on the metrics port: the node's own
    scrapes pass all the same."""
    namespace = platform.namespace
    expected = {service: expected_targets(kube, namespace, service) for service in SERVICES}
    assert all(expected.values()), f"a service without running pods: {expected}"
    assert {t["app_kubernetes_io_managed_by"] for ts in expected.values() for t in ts.values()} == {
        MANAGED_BY
    }

    def scraped() -> dict[str, dict[str, dict[str, str]]] | None:
        found: dict[str, dict[str, dict[str, str]]] = {service: {} for service in SERVICES}
        for series in query(prometheus, f'up{{namespace="{namespace}"}} == 1'):
            metric = series["metric"]
            if metric.get("job") in found:
                found[metric["job"]][metric.get("pod", "")] = metric
        return found if all(set(found[s]) >= set(expected[s]) for s in SERVICES) else None

    found = wait_for(scraped, timeout=60, interval=1, what=f"every service pod of {namespace} up")
    for service in SERVICES:
        for pod, labels in expected[service].items():
            assert found[service][pod] == labels, f"{service}: {pod}"


def test_the_operator_is_scraped_as_its_charts_service_monitor_would(
    kube: ApiClient, platform: Platform, prometheus: str
) -> None:
    namespace = platform.namespace
    core = client.CoreV1Api(kube)
    metrics_service = next(
        s
        for s in core.list_namespaced_service(
            namespace, label_selector="app.kubernetes.io/component=operator"
        ).items
        if any(port.name == "metrics" for port in s.spec.ports)
    )
    selector = ",".join(f"{key}={value}" for key, value in metrics_service.spec.selector.items())
    pods = {pod.metadata.name for pod in core.list_namespaced_pod(namespace, label_selector=selector).items}
    job = metrics_service.metadata.name

    def scraped() -> list[dict[str, Any]]:
        return query(prometheus, f'up{{namespace="{namespace}", job="{job}"}} == 1')

    series = wait_for(scraped, timeout=60, interval=1, what=f"the operator's {job} up")
    metric = series[0]["metric"]
    assert metric["pod"] in pods
    assert (metric["service"], metric["endpoint"], metric["container"]) == (job, "metrics", "operator")
    reconciles = query(
        prometheus, f'flotilla_operator_reconciles_total{{namespace="{namespace}", job="{job}"}}'
    )
    assert reconciles, "the operator's own metrics are not in Prometheus"


def test_the_operators_leader_alone_reports_each_microservice_under_exported_namespace(
    platform: Platform, prometheus: str
) -> None:
    """The operator's target has a namespace of its own: the Microservice's arrives renamed
    (FlotillaServiceDown and the overview read exported_namespace and name)."""
    namespace, job = platform.namespace, f"{OPERATOR_DEPLOYMENT}-metrics"
    selector = f'exported_namespace="{namespace}"'

    def reported() -> list[dict[str, Any]] | None:
        series = query(prometheus, f"flotilla_operator_microservice_scrape_targets{{{selector}}} > 0")
        return series if {s["metric"]["name"] for s in series} >= set(SERVICES) else None

    series = wait_for(reported, timeout=90, interval=2, what=f"the scrape targets of {namespace}'s services")
    assert {(s["metric"]["namespace"], s["metric"]["job"]) for s in series} == {(namespace, job)}
    leader = query(prometheus, f'flotilla_operator_leader{{namespace="{namespace}", job="{job}"}} == 1')
    pods = {s["metric"]["pod"] for s in series}
    assert pods == {s["metric"]["pod"] for s in leader}, "not the leader's alone"
    for gauge in ("flotilla_operator_microservice_ready", "flotilla_operator_microservice_rollout_phase"):

        def every_service(gauge: str = gauge) -> bool:
            names = {s["metric"]["name"] for s in query(prometheus, f"{gauge}{{{selector}}} == 1")}
            return names >= set(SERVICES)

        # Ready as each Microservice's status turns Ready (the platform may still be rolling out).
        wait_for(every_service, timeout=180, interval=2, what=f"{gauge} at 1 for every service")


def test_a_request_through_the_ingress_is_counted_for_its_service_within_30s(
    platform: Platform, prometheus: str
) -> None:
    selector = f'namespace="{platform.namespace}", job="catalog", method="GET", status="404"'

    def total() -> float:
        return sum(float(s["value"][1]) for s in query(prometheus, f"sum(http_requests_total{{{selector}}})"))

    before = total()
    requests_made = 3
    for _ in range(requests_made):
        response = platform.get(MISSING_PRODUCT)
        assert response.status_code == 404, response.text
        assert response.headers["Content-Type"].startswith("application/problem+json")
    sent = time.monotonic()
    wait_for(lambda: total() >= before + requests_made, timeout=30, interval=0.5,
             what=f"{requests_made} more catalog 404s in Prometheus")  # fmt: skip
    counted = query(prometheus, f"http_requests_total{{{selector}}}")
    assert {s["metric"]["route"] for s in counted} == {"/products/{product_id}"}, counted
    print(f"counted by Prometheus {time.monotonic() - sent:.1f}s after the requests")


def label_values(prometheus: str, label: str, series: str) -> set[str]:
    """Grafana's ``label_values(series, label)``, from Prometheus' API."""
    response = requests.get(
        f"{prometheus}/api/v1/label/{label}/values", params={"match[]": series}, timeout=10
    )
    assert response.status_code == 200, response.text
    return set(response.json()["data"])


def test_every_dashboard_query_runs_on_the_node_for_the_platforms_namespace_and_services(
    platform: Platform, prometheus: str
) -> None:
    """The dashboards as Grafana shows them over this Prometheus: the namespace variable lists the
    platform's, the service variable its Microservices (the jobs of their targets), and every panel
    query, with both filled in, runs; every panel but those of faults shows data."""
    platform.customer_flow()  # registrations, logins, reservations, orders, calls between services
    assert platform.get(MISSING_PRODUCT).status_code == 404
    namespace = platform.namespace
    expected = {
        "overview.json": set(SERVICES),
        "service.json": set(SERVICES),
        "calls.json": {"catalog", "orders"},  # catalog calls users (JWKS), orders users and catalog
        "operator.json": {f"{OPERATOR_DEPLOYMENT}-metrics"},  # the operator chart's metrics Service
    }
    for name, dashboard in dashboards().items():
        listed = variable_values(dashboard, partial(label_values, prometheus))
        assert namespace in listed["namespace"], (name, listed)
        values = variable_values(dashboard, partial(label_values, prometheus), {"namespace": [namespace]})
        assert expected[name] <= set(values["service"]), (name, values)
        for panel in query_panels(dashboard):
            exprs = [substitute(target["expr"], values) for target in panel["targets"]]

            def shown(exprs: list[str] = exprs) -> bool:
                results = [query(prometheus, expr) for expr in exprs]  # query() asserts each runs
                return any(results)

            if panel["title"] in FAULT_PANELS:
                shown()
            else:
                wait_for(shown, timeout=30, interval=1, what=f"data for {name} / {panel['title']}")


# Run in the operator's pod: GET Prometheus' query API (its URL from the pod's environment when
# the chart set it, else the argument); print the status or the failure, as JSON.
ASK_PROMETHEUS = """
import json, os, sys, urllib.parse, urllib.request
told = "FLOTILLA_PROMETHEUS_URL" in os.environ
url = os.environ.get("FLOTILLA_PROMETHEUS_URL") or sys.argv[1]
query = urllib.parse.urlencode({"query": sys.argv[2]})
try:
    with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=3) as answer:
        print(json.dumps({"env": told, "status": answer.status, "body": json.load(answer)}))
except Exception as exc:
    print(json.dumps({"env": told, "error": str(exc) or type(exc).__name__}))
"""


def ask_from_operator(namespace: str, prometheus: str, expr: str) -> dict[str, Any]:
    result = exec_in(
        namespace, f"deploy/{OPERATOR_DEPLOYMENT}", "python", "-c", ASK_PROMETHEUS, prometheus, expr
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


@pytest.fixture
def operator_told_of_prometheus(platform: Platform, prometheus: str) -> Iterator[str]:
    """The platform's release upgraded with Prometheus' URL and address as `make up` sets them;
    rolled back afterwards."""
    status = json.loads(helm("status", RELEASE, "-n", platform.namespace, "-o", "json"))
    address = prometheus.removeprefix("http://").split(":")[0]
    helm("upgrade", RELEASE, str(platform.root / "charts" / "flotilla"), "-n", platform.namespace,
         "--reuse-values", "--set", f"operator.prometheus.url={prometheus}",
         "--set", f"operator.networkPolicy.prometheus.cidr={address}/32",
         "--wait", "--timeout", "300s")  # fmt: skip
    try:
        yield address
    finally:
        helm("rollback", RELEASE, str(status["version"]), "-n", platform.namespace,
             "--wait", "--timeout", "300s")  # fmt: skip


def test_the_operator_reaches_prometheus_only_once_the_chart_says_where_it_is(
    kube: ApiClient, platform: Platform, prometheus: str, request: pytest.FixtureRequest
) -> None:
    namespace = platform.namespace
    expr = f'up{{namespace="{namespace}"}}'
    # The control: without the values, its NetworkPolicy lets it reach only DNS and the API server.
    before = ask_from_operator(namespace, prometheus, expr)
    assert "error" in before and not before["env"], before
    print(f"the operator's pod, before: {before['error']}")

    request.getfixturevalue("operator_told_of_prometheus")
    deployment = client.AppsV1Api(kube).read_namespaced_deployment(OPERATOR_DEPLOYMENT, namespace)
    env = {e.name: e.value for e in deployment.spec.template.spec.containers[0].env}
    assert env["FLOTILLA_PROMETHEUS_URL"] == prometheus

    # kube-router writes the new rule on its next sync (event-driven).
    def answered() -> dict[str, Any] | None:
        found = ask_from_operator(namespace, prometheus, expr)
        return found if found.get("status") == 200 else None

    after = wait_for(answered, timeout=60, interval=1, what="the operator's pod answered by Prometheus")
    assert after["env"] and after["body"]["status"] == "success"
    assert {s["metric"]["job"] for s in after["body"]["data"]["result"]} >= set(SERVICES)

    # What the pods report of their kit (flotilla_kit_info) reaches each Microservice's status
    # through the operator's next resync, and `kubectl get ms -o wide` shows it.
    kit = tomllib.loads((ROOT / "services/kit/pyproject.toml").read_text())["project"]["version"]

    def reported() -> list[str] | None:
        listed = platform.microservices()
        versions = [ms.get("status", {}).get("kitVersion") for ms in listed]
        return versions if len(listed) == len(SERVICES) and set(versions) == {kit} else None

    wait_for(reported, timeout=150, interval=2, what=f"every Microservice's status.kitVersion at {kit}")
    wide = tool("kubectl", "get", "microservices", "-n", namespace, "-o", "wide")
    assert wide.returncode == 0, wide.stderr
    header, *rows = wide.stdout.splitlines()
    start, end = header.index("KIT"), header.index("URL")  # a column may be empty (CANDIDATE)
    assert {row[start:end].strip() for row in rows} == {kit}, wide.stdout
    print(wide.stdout)
