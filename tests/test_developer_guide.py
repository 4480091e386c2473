"""docs/developer-guide.md, run as written: every ``sh`` block, in order, in one shell, in a copy of
the repository; a ``python`` block after ``<!-- file: PATH -->`` is written to PATH at that point.

The commands that serve until Ctrl-C or need the real node are named in the guide's prose with
the test that runs them; ``test_the_guides_long_running_commands_are_run_by_the_tests_it_names``
holds the guide to that.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.new_service import copy_of_the_repository

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "developer-guide.md"
BLOCK = re.compile(r"(?:<!-- file: (?P<file>\S+) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```", re.DOTALL)


@dataclass(frozen=True)
class Step:
    """A block of the guide: commands to run, or a file's new content."""

    commands: list[str]
    file: str | None = None
    content: str = ""


def steps(text: str) -> list[Step]:
    """The guide's runnable blocks, in order."""
    found = []
    for match in BLOCK.finditer(text):
        if match["lang"] == "sh":
            lines = [line for line in match["body"].splitlines() if line.strip() and not line.startswith("#")]
            found.append(Step(lines))
        elif match["file"]:
            found.append(Step([], match["file"], match["body"]))
    return found


def script(guide: list[Step]) -> str:
    """One bash script: each command echoed, then run; a file block written with a here-document."""
    lines = ["set -euo pipefail"]
    for step in guide:
        if step.file:
            lines += [
                f"cat > {step.file} <<'FLOTILLA_GUIDE_EOF'",
                step.content.rstrip("\n"),
                "FLOTILLA_GUIDE_EOF",
            ]
        for command in step.commands:
            lines += [f"echo {command!r} | sed 's/^/$ /'", command]
    return "\n".join(lines) + "\n"


def test_the_guide_has_commands_and_a_file_step() -> None:
    guide = steps(GUIDE.read_text())
    assert sum(len(step.commands) for step in guide) >= 15
    assert [step.file for step in guide if step.file] == ["services/wishlist/src/flotilla_wishlist/models.py"]


def test_every_command_of_the_guide_runs_as_written(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = copy_of_the_repository(tmp_path_factory.mktemp("repository"))
    identity = {"GIT_AUTHOR_NAME": "Guide", "GIT_AUTHOR_EMAIL": "guide@localhost"}
    identity |= {"GIT_COMMITTER_NAME": "Guide", "GIT_COMMITTER_EMAIL": "guide@localhost"}
    subprocess.run(["git", "add", "--all"], cwd=root, check=True)
    subprocess.run(
        ["git", "commit", "-q", "-m", "the repository"], cwd=root, env={**os.environ, **identity}, check=True
    )
    # The copy makes its own virtualenv, as a new user's clone does; the tests' own is left alone.
    env = {key: value for key, value in os.environ.items() if key not in {"FLOTILLA_VENV", "VIRTUAL_ENV"}}
    ran = subprocess.run(
        ["bash", "-c", script(steps(GUIDE.read_text()))],
        cwd=root,
        env={**env, **identity},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert ran.returncode == 0, (ran.stdout + ran.stderr)[-5000:]
    output = ran.stdout
    assert "configuration ok" in output
    assert " passed" in output
    assert "wrote " in output and "0002_item_note.py" in output
    assert "wishlist: at 0002 (head) item note" in output
    assert "wishlist: at 0001 items" in output  # the downgrade
    assert "services/wishlist: template" in output and "nothing to change" in output
    revision = root / "services/wishlist/src/flotilla_wishlist/migrations/versions/0002_item_note.py"
    assert 'sa.Column("note", sa.String(length=500), nullable=True)' in revision.read_text()


def make_recipe(target: str) -> str:
    """The command line a Makefile target runs."""
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(rf"^{target}:.*\n\t@?(?P<recipe>.+)$", makefile, re.MULTILINE)
    assert match, target
    return match["recipe"]


@pytest.mark.parametrize(
    ("command", "test", "runs"),
    [
        ("make run", "tests/test_make_run.py", "os.execvp('make', ['make', 'run'])"),
        # make dev's recipe is scripts/dev/dev.sh, which the dev loop's driver starts.
        ("make dev", "tests/node/test_dev_loop.py", '"scripts" / "dev" / "dev.sh"'),
    ],
)
def test_the_guides_long_running_commands_are_run_by_the_tests_it_names(
    command: str, test: str, runs: str
) -> None:
    guide = GUIDE.read_text()
    assert f"`{command}` (run by `{test}`" in guide
    source = (ROOT / test).read_text()
    if command == "make dev":
        assert make_recipe("dev").startswith("scripts/dev/dev.sh")
        assert "from tests.support.dev_loop import DevLoop" in source
        source = (ROOT / "tests/support/dev_loop.py").read_text()
    assert runs in source
