"""Every service's migrations build exactly its models, on PostgreSQL, through its own ``db`` commands.

A model changed without a revision would make ``db revision --autogenerate`` write one: this test
runs it on a database at the head and sees nothing written.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from scripts.services import names
from tests.support.postgres import drop_database, recreate_database
from tests.support.processes import BIN


def run(service: str, *args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / f"flotilla-{service}"), "db", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("service", names())
def test_the_migrations_at_the_head_match_the_models(service: str, tmp_path: Path) -> None:
    database = f"models_{service.replace('-', '_')}_{os.getpid()}"
    env = {**os.environ, "DATABASE_URL": recreate_database(database), "FLOTILLA_ENV": "development"}
    try:
        upgraded = run(service, "upgrade", env=env, cwd=tmp_path)
        assert upgraded.returncode == 0, upgraded.stderr
        assert re.fullmatch(rf"{service}: at \d{{4}} \(head\) .+\n", upgraded.stdout)

        compared = run(
            service, "revision", "-m", "unexpected model change", "--autogenerate", env=env, cwd=tmp_path
        )
        written = re.search(r"^wrote (.+)$", compared.stdout, re.MULTILINE)
        if written:  # never leave the stray revision in the source tree
            script = Path(written.group(1))
            text = script.read_text()
            script.unlink()
            pytest.fail(f"{service}'s models differ from its migrations; the difference:\n{text}")
        assert compared.returncode == 0, compared.stderr
        assert compared.stdout == "no difference between the models and the database: nothing written\n"
    finally:
        drop_database(database)
