"""Dashboards and alerts proven on a real Prometheus.

Prometheus (Debian's package) scrapes users, catalog and orders (gunicorn, two workers each, on
PostgreSQL) and the operator (on the real API server) every second and evaluates the chart's
alert rules. The tests drive traffic with client errors, then hang the catalog: orders' calls
time out (slow requests, 5xx), its circuit opens and the catalog cannot be scraped. The operator
meets a quota it cannot satisfy, and rolls back a canary aborted by hand. Then every dashboard
panel query and every alert expression must return data through Prometheus's HTTP API.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
import requests
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

from flotilla_operator.render import SCRAPE_TARGET_LABELS, labels
from tests.support.kube import temporary_namespace, wait_for
from tests.support.monitoring import (
    RULE_FILE,
    PanelQuery,
    alert_rules,
    dashboards,
    panel_queries,
    substitute,
    variable_values,
)
from tests.support.operator import GROUP, PLURAL, VERSION, OperatorProcess, create, microservice
from tests.support.platform import Platform, start_platform
from tests.support.prometheus import PrometheusServer, ScrapeJob

OPERATOR_JOB = "flotilla-operator"
# The namespace a Kubernetes Prometheus attaches to every target: the platform's (a namespace of
# the test cluster, where the operator runs a Microservice of each service's name), and the
# operator's (another: the dashboards and alerts must not mix them).
OPERATOR_NAMESPACE = "flotilla-system"
# A Microservice with pods (on kwok's nodes) and no target: FlotillaServiceDown's second part.
UNSCRAPED = "ghost"
STANDBY_JOB = "flotilla-operator-standby"  # a second replica of the session's operator
# What a Microservice's ServiceMonitor puts on its targets (targetLabels: the Service's labels,
# as Prometheus label names).
MICROSERVICE_TARGET = {
    re.sub(r"[^a-zA-Z0-9_]", "_", name): labels(microservice("x"))[name] for name in SCRAPE_TARGET_LABELS
}
# Which job each alert must name once the faults are in place.
ALERTED_JOBS = {
    "FlotillaHighErrorRatio": "orders",
    "FlotillaHighLatencyP99": "orders",
    "FlotillaServiceDown": "catalog",
    "FlotillaCircuitOpen": "orders",
    "FlotillaOperatorReconcileErrors": OPERATOR_JOB,
    "FlotillaOperatorNoLeader": STANDBY_JOB,
    "FlotillaRolloutRolledBack": OPERATOR_JOB,
}
# A canary that stays on its one step until it is aborted: a rollback with reason Aborted.
HELD_CANARY = {"strategy": "Canary", "steps": [50], "stepSeconds": 300}


@dataclass
class Observed:
    """The platform and the operator, watched by one Prometheus."""

    platform: Platform
    namespace: str  # the platform's
    prometheus: PrometheusServer
    operator: OperatorProcess
    standby: OperatorProcess

    def metrics_url(self, job: str) -> str:
        """Where ``job``'s metrics are served."""
        if job in (OPERATOR_JOB, STANDBY_JOB):
            replica = self.operator if job == OPERATOR_JOB else self.standby
            return f"http://127.0.0.1:{replica.metrics_port}/metrics"
        return f"{getattr(self.platform, job).url}/metrics"


@pytest.fixture(scope="module")
def observed(
    kube: ApiClient, operator: OperatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Observed]:
    """A platform of its own (it will be hurt), the session's operator, and Prometheus."""
    with ExitStack() as stack:
        platform = start_platform(
            tmp_path_factory.mktemp("observed-logs"),
            tmp_path_factory.mktemp("observed-keys"),
            instance="prom",
        )
        stack.callback(platform.stop)
        namespace = stack.enter_context(temporary_namespace(kube))
        jobs = [
            ScrapeJob(s.name, [f"127.0.0.1:{s.port}"], {"namespace": namespace, **MICROSERVICE_TARGET})
            for s in platform.services()
        ]
        # The operator's gauges of each service (its scrape targets, Ready, release phase).
        for name in [*(s.name for s in platform.services()), UNSCRAPED]:
            create(kube, namespace, microservice(name))
        operator_labels = {"namespace": OPERATOR_NAMESPACE}
        jobs.append(ScrapeJob(OPERATOR_JOB, [f"127.0.0.1:{operator.metrics_port}"], operator_labels))
        # The same operator's second replica, scraped as a job of its own: its only replica
        # standing by is what FlotillaOperatorNoLeader sees.
        standby = OperatorProcess(
            operator.kubeconfig,
            tmp_path_factory.mktemp("standby") / "operator.log",
            lease=operator.lease_name,
        )
        standby.start()
        stack.callback(standby.stop)
        wait_for(lambda: standby.health()[1].get("role") == "standby", timeout=30, what="the standby")
        jobs.append(ScrapeJob(STANDBY_JOB, [f"127.0.0.1:{standby.metrics_port}"], operator_labels))
        prometheus = PrometheusServer(tmp_path_factory.mktemp("prometheus"), jobs, [RULE_FILE]).start()
        stack.callback(prometheus.stop)
        healthy_namespace = stack.enter_context(temporary_namespace(kube))
        quota_namespace = stack.enter_context(temporary_namespace(kube))
        wait_for(lambda: all_targets_up(prometheus), timeout=30, what="every scrape target to be up")
        drive_traffic(platform)
        operate(kube, healthy_namespace, quota_namespace)
        prometheus.wait_for_scrapes()
        yield Observed(platform, namespace, prometheus, operator, standby)


@pytest.fixture(scope="module")
def faulted(observed: Observed) -> Observed:
    """The catalog hangs: orders times out, opens its circuit, and the catalog cannot be scraped."""
    platform, prometheus = observed.platform, observed.prometheus
    expressions = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    on_orders = [expressions[name] for name, job in ALERTED_JOBS.items() if job == "orders"]
    observed.prometheus.wait_for_scrapes()  # the series of the tests before count twice
    platform.catalog.freeze()
    token = platform.customer_token()
    started = time.monotonic()
    # Failed orders (slow until the circuit opens, then fast) until orders' alerts hold.
    while not all(prometheus.query(expr) for expr in on_orders):
        response = platform.order(token, [{"product_id": 1, "quantity": 1}])
        assert response.status_code == 503, response.text
        assert response.headers["Content-Type"] == "application/problem+json"
        assert time.monotonic() - started < 180, "orders' alert expressions never held"
    # The circuit stays open while nobody calls; the other alerts need only time.
    for name, expr in expressions.items():
        wait_for(partial(prometheus.query, expr), timeout=90, what=f"{name}'s expression to hold")
    return observed


def all_targets_up(prometheus: PrometheusServer) -> bool:
    """Every configured job has a target, and each was scraped successfully."""
    targets = prometheus.targets()
    return {t["labels"]["job"] for t in targets} == {j.name for j in prometheus.jobs} and all(
        t["health"] == "up" for t in targets
    )


def drive_traffic(platform: Platform) -> None:
    """Successes and client errors on every service: the business counters get each result."""
    accounts = [platform.register() for _ in range(3)]
    duplicate = requests.post(
        f"{platform.users.url}/users/register",
        json={"email": accounts[0]["email"], "password": "another long password", "name": "Twin"},
        timeout=10,
    )
    assert duplicate.status_code == 409
    tokens = [platform.login(account["email"]) for account in accounts]
    wrong = requests.post(
        f"{platform.users.url}/auth/login",
        json={"email": accounts[0]["email"], "password": "not the password"},
        timeout=10,
    )
    assert wrong.status_code == 401
    platform.service_token("reporting")
    product = platform.create_product(stock=3)
    key = uuid.uuid4().hex
    for token in tokens:
        confirmed = platform.order(token, [{"product_id": product["id"], "quantity": 1}], key=key)
        assert confirmed.status_code == 201, confirmed.text
        key = uuid.uuid4().hex
    replayed = platform.order(tokens[-1], [{"product_id": product["id"], "quantity": 1}], key=key)
    assert replayed.status_code == 409, replayed.text  # sold out: rejected
    assert (
        platform.order(tokens[-1], [{"product_id": product["id"], "quantity": 1}], key=key).status_code == 409
    )
    assert requests.get(f"{platform.catalog.url}/products/2000000000", timeout=10).status_code == 404
    assert requests.get(f"{platform.orders.url}/orders", timeout=10).status_code == 401


def operate(kube: ApiClient, healthy_namespace: str, quota_namespace: str) -> None:
    """A Microservice served, a drifted child, one a quota makes fail, and a canary rolled back."""
    create(kube, healthy_namespace, microservice("watched"))
    apps = client.AppsV1Api(kube)
    wait_for(
        lambda: _exists(apps.read_namespaced_deployment, "watched", healthy_namespace),
        timeout=60,
        what="the operator to create the Deployment",
    )
    apps.delete_namespaced_deployment("watched", healthy_namespace)
    client.CoreV1Api(kube).create_namespaced_resource_quota(
        quota_namespace,
        client.V1ResourceQuota(
            metadata=client.V1ObjectMeta(name="nothing"),
            spec=client.V1ResourceQuotaSpec(hard={"count/deployments.apps": "0", "services": "0"}),
        ),
    )
    create(kube, quota_namespace, microservice("refused"))
    roll_back(kube, healthy_namespace, "aborted")


def roll_back(kube: ApiClient, namespace: str, name: str) -> None:
    """Release ``name``, start a canary of a new image and abort it: the operator rolls it back."""
    create(kube, namespace, microservice(name, rollout=HELD_CANARY))

    def released() -> bool:
        status = _status(kube, namespace, name)
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])
        return ready and (status.get("rollout") or {}).get("phase") == "Stable"

    def phase() -> str:
        return str((_status(kube, namespace, name).get("rollout") or {}).get("phase", ""))

    wait_for(released, timeout=60, what=f"{name}'s first release")
    _patch(kube, namespace, name, {"spec": {"image": "registry.example/flotilla/service:2.0"}})
    # The operator acts on the annotation only while the canary is Progressing (else drops it).
    wait_for(lambda: phase() == "Progressing", timeout=30, what=f"{name}'s canary to start")
    _patch(kube, namespace, name, {"metadata": {"annotations": {"flotilla.dev/rollout": "abort"}}})
    wait_for(lambda: phase() == "RolledBack", timeout=30, what=f"{name}'s canary to be rolled back")


def _status(kube: ApiClient, namespace: str, name: str) -> dict[str, Any]:
    found = client.CustomObjectsApi(kube).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    return dict(found.get("status") or {})


def _patch(kube: ApiClient, namespace: str, name: str, body: dict[str, Any]) -> None:
    client.CustomObjectsApi(kube).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, body, _content_type="application/merge-patch+json"
    )


def _exists(read: Callable[..., Any], name: str, namespace: str) -> bool:
    try:
        read(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def test_prometheus_scraped_every_service_and_the_operator(observed: Observed) -> None:
    jobs = {t["labels"]["job"]: t for t in observed.prometheus.targets()}
    assert set(jobs) == {"users", "catalog", "orders", OPERATOR_JOB, STANDBY_JOB}
    for job in jobs:
        assert observed.prometheus.query(f'up{{job="{job}"}} == 1'), f"{job} was not scraped"


@pytest.mark.parametrize("job", ["users", "catalog", "orders", OPERATOR_JOB, STANDBY_JOB])
def test_metric_names_pass_promtool_lint(observed: Observed, job: str) -> None:
    """Prometheus's naming conventions: base units, ``_total`` counters, no type in names."""
    text = requests.get(observed.metrics_url(job), timeout=10).text
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: run scripts/prometheus.sh (make test does)"
    linted = subprocess.run(
        [binary, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_business_counters_carry_each_result(observed: Observed) -> None:
    prometheus = observed.prometheus
    expected = {
        "flotilla_registrations_total": ("result", {"created", "duplicate"}),
        "flotilla_logins_total": ("result", {"success", "failure"}),
        "flotilla_orders_total": ("outcome", {"confirmed", "rejected", "replayed"}),
        "flotilla_stock_reservations_total": ("result", {"reserved", "committed", "insufficient_stock"}),
        "flotilla_client_tokens_issued_total": ("client", {"orders", "reporting"}),
    }
    for metric, (label, values) in expected.items():
        assert values <= prometheus.label_values(label, metric), metric


def test_dashboard_variables_list_the_namespaces_and_jobs(observed: Observed) -> None:
    expected = {
        "overview.json": (observed.namespace, {"users", "catalog", "orders"}),
        "service.json": (observed.namespace, {"users", "catalog", "orders"}),
        "calls.json": (observed.namespace, {"catalog", "orders"}),  # the catalog fetches users' JWKS
        "operator.json": (OPERATOR_NAMESPACE, {OPERATOR_JOB}),  # the standby has reconciled nothing
    }
    for name, dashboard in dashboards().items():
        values = variable_values(dashboard, observed.prometheus.label_values)
        assert (values["namespace"], set(values["service"])) == ([expected[name][0]], expected[name][1]), name
        # Another namespace selected: its services only (here, none).
        other = variable_values(dashboard, observed.prometheus.label_values, {"namespace": ["elsewhere"]})
        assert other["service"] == [], name


def with_variables(query: PanelQuery, prometheus: PrometheusServer) -> str:
    """The query as Grafana sends it with every value of its variables selected."""
    values = variable_values(dashboards()[query.dashboard], prometheus.label_values)
    expr = substitute(query.expr, values)
    assert not re.search(r"\$\w", expr), f"an unsupported variable is left in {expr}"
    return expr


@pytest.mark.parametrize("query", panel_queries(), ids=str)
def test_every_dashboard_panel_query_returns_data(faulted: Observed, query: PanelQuery) -> None:
    result = faulted.prometheus.query(with_variables(query, faulted.prometheus))
    assert result, f"no data for {query}"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_expression_returns_data(faulted: Observed, rule: dict[str, Any]) -> None:
    result = faulted.prometheus.query(rule["expr"])
    job = ALERTED_JOBS[rule["alert"]]
    namespace = OPERATOR_NAMESPACE if job in (OPERATOR_JOB, STANDBY_JOB) else faulted.namespace
    assert (namespace, job) in {(s["metric"].get("namespace"), s["metric"].get("job")) for s in result}, (
        result
    )


MICROSERVICE_GAUGES = (
    "flotilla_operator_microservice_scrape_targets",
    "flotilla_operator_microservice_ready",
    "flotilla_operator_microservice_rollout_phase",
)


def test_the_leader_alone_exports_each_microservices_gauges_as_exported_namespace_and_name(
    observed: Observed,
) -> None:
    """The operator's target has a namespace label of its own: the Microservice's is renamed."""
    prometheus, expected = observed.prometheus, {"users", "catalog", "orders", UNSCRAPED}
    for gauge in MICROSERVICE_GAUGES:

        def found(gauge: str = gauge) -> list[dict[str, Any]] | None:
            series = prometheus.query(f'{gauge}{{exported_namespace="{observed.namespace}"}}')
            return series if {s["metric"]["name"] for s in series} == expected else None

        series = wait_for(found, timeout=30, what=f"{gauge} of every Microservice in Prometheus")
        assert {(s["metric"]["namespace"], s["metric"]["job"]) for s in series} == {
            (OPERATOR_NAMESPACE, OPERATOR_JOB)
        }
    selector = f'exported_namespace="{observed.namespace}"'
    targets = prometheus.query(f"flotilla_operator_microservice_scrape_targets{{{selector}}}")
    assert {s["metric"]["name"]: s["value"][1] for s in targets} == dict.fromkeys(expected, "1")
    phases = prometheus.query(f"flotilla_operator_microservice_rollout_phase{{{selector}}} == 1")
    assert {s["metric"]["phase"] for s in phases} == {"Stable"}
    # The standby leads nothing: none of its own, so none of a Microservice deleted meanwhile.
    assert not prometheus.query(f'{{__name__=~"flotilla_operator_microservice_.+", job="{STANDBY_JOB}"}}')


def test_service_down_names_a_microservice_expected_to_have_pods_and_without_a_target(
    faulted: Observed,
) -> None:
    (down,) = [rule["expr"] for rule in alert_rules() if rule["alert"] == "FlotillaServiceDown"]
    named = {(s["metric"]["namespace"], s["metric"]["job"]) for s in faulted.prometheus.query(down)}
    assert (faulted.namespace, UNSCRAPED) in named  # its pods run; nothing scrapes them
    assert (faulted.namespace, "users") not in named  # scraped


def test_prometheus_evaluates_every_rule_and_the_alerts_are_pending(faulted: Observed) -> None:
    prometheus = faulted.prometheus
    rules = prometheus.rules()
    assert {rule["name"] for rule in rules} == set(ALERTED_JOBS)
    for rule in rules:
        assert rule["health"] == "ok", rule
    wait_for(
        lambda: {alert["labels"]["alertname"] for alert in prometheus.alerts()} >= set(ALERTED_JOBS),
        timeout=30,
        what="every alert to be pending or firing ('for' durations keep most from firing yet)",
    )


def test_orders_recovers_by_itself_when_the_catalog_answers_again(faulted: Observed) -> None:
    platform, prometheus = faulted.platform, faulted.prometheus
    platform.catalog.thaw()
    product = platform.create_product(stock=1)
    token = platform.customer_token()

    def confirmed() -> bool:
        response = platform.order(token, [{"product_id": product["id"], "quantity": 1}])
        return response.status_code == 201

    wait_for(confirmed, timeout=30, interval=0.5, what="orders to close its circuit and confirm an order")
    wait_for(
        lambda: prometheus.query('up{job="catalog"} == 1'), timeout=30, what="the catalog to be scraped again"
    )
