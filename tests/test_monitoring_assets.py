"""Dashboards and alert rules: generated dashboards are current, promtool accepts and tests the rules."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "charts" / "flotilla" / "rules"
DASHBOARDS = ROOT / "charts" / "flotilla" / "dashboards"


def test_checked_in_dashboards_are_what_the_code_generates() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "dashboards.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("path", sorted(DASHBOARDS.glob("*.json")), ids=lambda p: p.name)
def test_dashboards_take_the_datasource_as_a_variable(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"] and all(t["expr"] for t in panel["targets"])


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: run scripts/prometheus.sh (make test does)"
    return subprocess.run([binary, *args], cwd=RULES, capture_output=True, text=True, check=False)


def test_promtool_accepts_the_alert_rules() -> None:
    checked = promtool("check", "rules", "flotilla.rules.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 5 rules found" in checked.stdout


def test_each_alert_fires_when_it_should_and_stays_quiet_otherwise() -> None:
    tested = promtool("test", "rules", "flotilla.rules.test.yaml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout
