"""A fourth service, added the way the README says: ``flotilla new`` makes its folder under
services/ and its entry in the services map of the umbrella chart, in a copy of this repository."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support.kube import ROOT
from tests.support.processes import BIN

NAME = "greeter"
PATH = f"/{NAME}/greetings"
"""The sample resource of a service made without a database: ``POST`` a name, get a greeting."""

# Every combination of `flotilla new`'s choices: name -> (arguments, database, auth).
CHOICES: dict[str, tuple[list[str], bool, bool]] = {
    "stock-alerts": ([], True, True),
    "ledger": (["--no-auth", "--depends-on", "catalog,orders"], True, False),
    "notices": (["--no-database", "--depends-on", "catalog"], False, True),
    "echo": (["--no-database", "--no-auth"], False, False),
}


def copy_of_the_repository(destination: Path) -> Path:
    """The files git knows of (committed or not, as they are now), links kept as links."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source, target = ROOT / name, destination / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the working tree
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
    subprocess.run(["git", "init", "-q", str(destination)], check=True)
    return destination


def add_the_service(repository: Path) -> None:
    """``flotilla new`` in the copy, as the README says: no database, no authentication."""
    made = subprocess.run(
        [str(BIN / "flotilla"), "--root", str(repository), "new", NAME, "--no-database", "--no-auth"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert made.returncode == 0, made.stdout + made.stderr
