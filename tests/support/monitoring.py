"""The chart's monitoring assets as tests read them: dashboard queries and alert rules."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "charts" / "flotilla" / "rules"
RULE_FILE = RULES / "flotilla.rules.yaml"
DASHBOARDS = ROOT / "charts" / "flotilla" / "dashboards"
LABEL_VALUES = re.compile(r"^label_values\((\w+(?:\{[^}]*\})?),\s*(\w+)\)$")
# The runbooks every alert's runbook_url and every alert panel's link point to.
RUNBOOKS = ROOT / "docs" / "runbooks.md"
RUNBOOKS_URL = "https://github.com/flotilla-dev/flotilla/blob/main/docs/runbooks.md"
# What Grafana puts for $__rate_interval when the tests send a panel's query themselves: wide
# enough to hold the traffic a test drove minutes before.
RATE_INTERVAL = "5m"


@dataclass(frozen=True)
class PanelQuery:
    """One PromQL target of one dashboard panel."""

    dashboard: str
    panel: str
    expr: str

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel}: {self.expr}"


def dashboards() -> dict[str, dict[str, Any]]:
    """Every shipped dashboard by file name."""
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def query_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """The panels that query: rows are headings (a collapsed row holds its panels)."""
    found: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        found.extend(panel.get("panels", []) if panel["type"] == "row" else [panel])
    return found


def panel_queries() -> list[PanelQuery]:
    """Every target of every panel of every dashboard."""
    return [
        PanelQuery(name, panel["title"], target["expr"])
        for name, dashboard in dashboards().items()
        for panel in query_panels(dashboard)
        for target in panel["targets"]
    ]


def variable_queries(dashboard: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Each query variable's name and its ``label_values(series, label)`` arguments, in order."""
    found = {}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = LABEL_VALUES.match(variable["query"])
        assert match, f"unsupported variable query: {variable['query']}"
        found[variable["name"]] = (match.group(1), match.group(2))
    return found


def alert_rules() -> list[dict[str, Any]]:
    """Every alerting rule of the rule file the chart ships."""
    groups = yaml.safe_load(RULE_FILE.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def substitute(expr: str, values: dict[str, list[str]]) -> str:
    """``expr`` as Grafana sends it: each ``$variable`` (a regex matcher's) replaced by its values."""
    for name, chosen in values.items():
        expr = expr.replace(f"${name}", "(" + "|".join(sorted(chosen)) + ")")
    return expr.replace("$__rate_interval", RATE_INTERVAL)


def variable_values(
    dashboard: dict[str, Any],
    label_values: Callable[[str, str], set[str]],
    pinned: Mapping[str, list[str]] | None = None,
) -> dict[str, list[str]]:
    """Each query variable's values as listed on load, all selected but the ``pinned``.

    ``label_values(label, series)`` asks Prometheus.
    """
    values: dict[str, list[str]] = {}
    for name, (series, label) in variable_queries(dashboard).items():
        values[name] = list(
            (pinned or {}).get(name) or sorted(label_values(label, substitute(series, values)))
        )
    return values
