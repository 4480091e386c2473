"""The reliability suite's record: every test is a case that counts its tries and notes what it saw.

A test takes the ``case`` fixture, calls ``case.tried(n)`` for each attempt it makes and
``case.saw(text)`` for what it observed. At the end of the session a table of case, tries, outcome
and observations is printed, and written to ``.run/reliability-summary.md`` when the session ran
the reliability marker (``make test-reliability``).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUMMARY = ROOT / ".run" / "reliability-summary.md"
_KEY = pytest.StashKey[dict[str, "Case"]]()


@dataclass
class Case:
    """One case: what was tried, how often, and what came of it."""

    name: str
    tries: int = 0
    observed: list[str] = field(default_factory=list)
    outcome: str = "not run"

    def tried(self, times: int = 1) -> None:
        """Count ``times`` more attempts."""
        self.tries += times

    def saw(self, text: str) -> None:
        """Record one observation (kept short: it is a table cell)."""
        self.observed.append(" ".join(text.split()))


def case_name(item: pytest.Item) -> str:
    """A test's name as a sentence, with its parameters."""
    function = getattr(item, "originalname", item.name).removeprefix("test_").replace("_", " ")
    callspec = getattr(item, "callspec", None)
    return f"{function} [{callspec.id}]" if callspec else function


@pytest.fixture
def case(request: pytest.FixtureRequest) -> Case:
    """The record of the running test."""
    cases = request.config.stash.setdefault(_KEY, {})
    record = cases.setdefault(request.node.nodeid, Case(case_name(request.node)))
    return record


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    record = item.config.stash.get(_KEY, {}).get(item.nodeid)
    counts = report.when == "call" or report.outcome != "passed"
    if record is not None and counts and record.outcome in ("not run", "passed"):
        record.outcome = "skipped" if report.skipped else report.outcome
    return report


def table(cases: list[Case]) -> str:
    """The summary as a Markdown table."""
    lines = ["| case | tries | outcome | observed |", "|---|---:|---|---|"]
    for record in cases:
        observed = "; ".join(record.observed).replace("|", "\\|") or "-"
        lines.append(f"| {record.name} | {record.tries} | {record.outcome} | {observed} |")
    return "\n".join(lines) + "\n"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    cases = list(config.stash.get(_KEY, {}).values())
    if not cases:
        return
    text = table(cases)
    terminalreporter.write_sep("=", f"reliability summary: {len(cases)} cases")
    terminalreporter.write(text)
    # Only a session that selected the reliability marker (`-m reliability`), not one that
    # excluded it (`-m "e2e and not reliability"`), writes the suite's summary.
    selected = (config.option.markexpr or "").replace("not reliability", "")
    if "reliability" in selected:
        SUMMARY.parent.mkdir(parents=True, exist_ok=True)
        SUMMARY.write_text(f"# Reliability summary\n\n{text}")
        terminalreporter.write_line(f"written to {SUMMARY.relative_to(ROOT)}")
