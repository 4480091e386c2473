"""Dashboards and alert rules: generated dashboards are current, promtool accepts and tests the rules."""

from __future__ import annotations

import shutil
import subprocess
import sys
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

from flotilla_operator import metrics
from tests.support.monitoring import ROOT, RULES, alert_rules, dashboards, panel_queries, query_panels


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
    exported = {
        family.name
        for value in vars(metrics).values()
        if isinstance(value, MetricWrapperBase)
        for family in value.collect()
    }
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
    anchor = rule["alert"].lower()
    assert annotations["runbook_url"].endswith(f"charts/flotilla/README.md#{anchor}")
    readme = (ROOT / "charts" / "flotilla" / "README.md").read_text()
    section = readme.split(f"### {rule['alert']}\n", 1)
    assert len(section) == 2, f"charts/flotilla/README.md has no runbook section for {rule['alert']}"
    assert len(section[1].split("\n### ", 1)[0].strip()) > 100, "the runbook section is too thin"
