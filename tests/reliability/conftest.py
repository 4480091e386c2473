"""The reliability and security suite (`make test-reliability`): bad input, attacks, faults.

Every test here is marked ``reliability``; the main run leaves them out and `make test` runs
them as a session of their own, which prints the summary table of tests/support/cases.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.reliability)
