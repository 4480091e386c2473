"""Dashboards and alert rules: generated dashboards are current, promtool accepts and tests the rules."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

from flotilla_operator import metrics
from tests.support.monitoring import (
    ROOT,
    RULES,
    RUNBOOKS,
    RUNBOOKS_URL,
    alert_rules,
    dashboards,
    panel_queries,
    query_panels,
)

# An identifier in PromQL, with its matchers when it has any.
IDENTIFIER = re.compile(r"(?<![\w$])([a-zA-Z_:][\w:]*)\s*(\{[^}]*\})?")
PROMQL_KEYWORDS = {"offset", "unless", "or", "and", "bool"}
SERVICE_MATCHERS = ('namespace=~"$namespace"', 'job=~"$service"')
CIRCUIT_STATES = {"0": "closed", "1": "half-open", "2": "open"}


def test_checked_in_dashboards_are_what_the_code_generates() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "dashboards.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_dashboards_take_the_datasource_as_a_variable(name: str) -> None:
    dashboard = dashboards()[name]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    for panel in query_panels(dashboard):
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"] and all(t["expr"] for t in panel["targets"])


def test_the_operator_dashboard_shows_every_metric_the_operator_exports() -> None:
    # describe(): the per-Microservice collector's families are empty until its replica leads.
    exported = {
        family.name
        for value in vars(metrics).values()
        if isinstance(value, (MetricWrapperBase, metrics.MicroserviceSeries))
        for family in (value.collect() if isinstance(value, MetricWrapperBase) else value.describe())
    }
    assert "flotilla_operator_microservice_scrape_targets" in exported
    shown = " ".join(query.expr for query in panel_queries() if query.dashboard == "operator.json")
    assert exported and {name for name in exported if name not in shown} == set()


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: run scripts/prometheus.sh (make test does)"
    return subprocess.run([binary, *args], cwd=RULES, capture_output=True, text=True, check=False)


def test_promtool_accepts_the_alert_rules() -> None:
    checked = promtool("check", "rules", "flotilla.rules.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in checked.stdout


def test_each_alert_fires_when_it_should_and_stays_quiet_otherwise() -> None:
    tested = promtool("test", "rules", "flotilla.rules.test.yaml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_each_alert_explains_itself_and_has_a_runbook(rule: dict[str, Any]) -> None:
    annotations = rule["annotations"]
    assert annotations["summary"] and annotations["description"]
    assert annotations["runbook_url"] == f"{RUNBOOKS_URL}#{rule['alert'].lower()}"
    section = RUNBOOKS.read_text().split(f"### {rule['alert']}\n", 1)
    assert len(section) == 2, f"docs/runbooks.md has no runbook section for {rule['alert']}"
    assert len(section[1].split("\n### ", 1)[0].strip()) > 100, "the runbook section is too thin"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_each_alert_keeps_the_namespace_and_job_it_is_about(rule: dict[str, Any]) -> None:
    aggregations = re.findall(r"\b(?:sum|max|count|min|avg) by \(([^)]*)\)", rule["expr"])
    assert aggregations, rule["expr"]
    for grouping in aggregations:
        assert {"namespace", "job"} <= {label.strip() for label in grouping.split(",")}, rule["expr"]


def test_service_down_names_no_service_and_joins_on_namespace_and_job() -> None:
    (down,) = [rule for rule in alert_rules() if rule["alert"] == "FlotillaServiceDown"]
    for name in ("users", "catalog", "orders"):
        assert name not in down["expr"]
    assert 'app_kubernetes_io_managed_by="flotilla-operator"' in down["expr"]
    assert "unless on (namespace, job)" in down["expr"]


def metric_selectors(expr: str) -> list[tuple[str, str]]:
    """The metric selectors of ``expr``: each name and its matchers (functions, groupings left out)."""
    expr = re.sub(r"\b(?:by|on|without|ignoring)\s*\([^)]*\)|\[[^\]]*\]", "", expr)
    found = []
    for match in IDENTIFIER.finditer(expr):
        name, matchers = match.group(1), match.group(2) or ""
        if not matchers and (expr[match.end() :].startswith("(") or name in PROMQL_KEYWORDS):
            continue
        found.append((name, matchers))
    return found


@pytest.mark.parametrize("query", panel_queries(), ids=str)
def test_each_panel_query_follows_the_namespace_and_service_variables(query: Any) -> None:
    selectors = metric_selectors(query.expr)
    assert selectors, query
    for name, matchers in selectors:
        if name.startswith("flotilla_operator_") and query.dashboard != "operator.json":
            continue  # the operator's, shown on the overview: it serves every namespace
        assert all(m in matchers for m in SERVICE_MATCHERS), f"{name}{matchers} in {query}"


@pytest.mark.parametrize("query", panel_queries(), ids=str)
def test_rates_use_grafanas_rate_interval(query: Any) -> None:
    windows = re.findall(r"\[([^\]]+)\]", query.expr)
    # A window other than Grafana's only for the hourly release counts (a rare event).
    assert all(w in ("$__rate_interval", "1h") for w in windows), query
    assert "[5m]" not in query.expr


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_every_panel_says_what_it_shows(name: str) -> None:
    for panel in query_panels(dashboards()[name]):
        assert len(panel.get("description", "").strip()) > 20, f"{name}: {panel['title']}"


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_variables_name_a_namespace_and_a_service_and_refresh_on_load(name: str) -> None:
    variables = {v["name"]: v for v in dashboards()[name]["templating"]["list"]}
    assert {"datasource", "namespace", "service"} <= set(variables)
    for variable in ("namespace", "service"):
        assert variables[variable]["refresh"] == 1, "refreshed on dashboard load"
        assert variables[variable]["multi"] and variables[variable]["includeAll"]
    assert variables["namespace"]["query"].endswith(", namespace)")
    assert variables["service"]["query"].endswith(", job)")
    assert '{namespace=~"$namespace"}' in variables["service"]["query"]


def test_each_dashboard_links_to_the_others() -> None:
    found = dashboards()
    for name, dashboard in found.items():
        reached = {
            other
            for link in dashboard["links"]
            if link["type"] == "dashboards" and link["keepTime"]
            for other, candidate in found.items()
            if other != name and set(link["tags"]) <= set(candidate["tags"])
        }
        assert reached == set(found) - {name}, name
    # The services' dashboards share what their variables mean: their links keep the selection.
    services = {name for name, d in found.items() if "flotilla-services" in d["tags"]}
    assert services == {"overview.json", "service.json", "calls.json"}
    for name in services:
        (keeping,) = [link for link in found[name]["links"] if link["includeVars"]]
        assert keeping["tags"] == ["flotilla", "flotilla-services"]


def test_alert_panels_link_to_the_runbooks_of_the_alerts() -> None:
    alerts = {rule["alert"]: rule["annotations"]["runbook_url"] for rule in alert_rules()}
    linked: set[str] = set()
    for name, dashboard in dashboards().items():
        for panel in query_panels(dashboard):
            for link in panel.get("links") or []:
                alert = link["title"].removeprefix("Runbook: ")
                assert link["url"] == alerts[alert], f"{name}: {panel['title']}"
                assert alert in panel["description"], (
                    f"{name}: {panel['title']} does not say when {alert} fires"
                )
                linked.add(alert)
    assert linked == set(alerts)


def test_the_circuit_panel_shows_states_by_name() -> None:
    (panel,) = [
        p for p in query_panels(dashboards()["calls.json"]) if "circuit_state" in p["targets"][0]["expr"]
    ]
    mappings = panel["fieldConfig"]["defaults"]["mappings"]
    shown = {value: option["text"] for m in mappings for value, option in m["options"].items()}
    assert shown == CIRCUIT_STATES
    assert "0 closed" not in panel["title"]


def test_the_overview_shows_releases_and_the_operator() -> None:
    shown = " ".join(q.expr for q in panel_queries() if q.dashboard == "overview.json")
    for metric in (
        "flotilla_dev_revision",
        "flotilla_operator_rollouts_total",
        "flotilla_operator_leader",
        "flotilla_operator_reconcile_errors_total",
        'flotilla_operator_managed_resources{kind="Microservice"}',
        'flotilla_operator_microservice_ready{exported_namespace=~"$namespace"}',
        'flotilla_operator_microservice_rollout_phase{exported_namespace=~"$namespace"}',
        "flotilla_operator_microservice_scrape_targets",
    ):
        assert metric in shown


def test_every_query_of_the_request_latency_buckets_shows_their_exemplars() -> None:
    """The buckets carry sampled traces (the kit's exemplars): each latency panel shows them."""
    latency_targets = [
        (name, panel["title"], target)
        for name, dashboard in dashboards().items()
        for panel in query_panels(dashboard)
        for target in panel["targets"]
        if "http_request_duration_seconds_bucket" in target["expr"]
    ]
    assert len(latency_targets) >= 3
    assert [(name, title) for name, title, target in latency_targets if not target.get("exemplar")] == []
