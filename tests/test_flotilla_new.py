"""``flotilla new``, ``flotilla update`` and ``flotilla doctor`` in a temporary copy of the repository.

Each combination of choices makes a service whose own tests, lint and type checks pass as made;
bad names are refused with nothing written; a newer template merges into a service with a local
change, and a conflicting change is reported with both versions kept.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.new_service import CHOICES, copy_of_the_repository
from tests.support.processes import BIN

GIT_USER = ["-c", "user.name=tests", "-c", "user.email=tests@localhost"]


def run(root: Path, *command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=root,
        env=env or os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def flotilla(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(root, str(BIN / "flotilla"), *args)


def commit(root: Path, message: str) -> None:
    run(root, "git", "add", "--all")
    committed = run(root, "git", *GIT_USER, "commit", "-q", "-m", message)
    assert committed.returncode == 0, committed.stderr


def status(root: Path) -> str:
    return run(root, "git", "status", "--porcelain").stdout


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository as it is now, committed (``flotilla update`` reads its history)."""
    root = copy_of_the_repository(tmp_path_factory.mktemp("repository"))
    commit(root, "the repository")
    return root


@pytest.fixture
def clean(repository: Path) -> Iterator[Path]:
    """The copy, back at the commit it was at (a test may commit) after the test."""
    base = run(repository, "git", "rev-parse", "HEAD").stdout.strip()
    yield repository
    run(repository, "git", "reset", "-q", "--hard", base)
    run(repository, "git", "clean", "-qfdx", "services", "charts")


def services_map(root: Path) -> dict[str, dict[str, object]]:
    values = yaml.safe_load((root / "charts/flotilla/values.yaml").read_text())
    return dict(values["services"])


def expected_entry(name: str) -> dict[str, object]:
    """The map entry each combination of choices makes."""
    args, database, auth = CHOICES[name]
    callees = args[args.index("--depends-on") + 1].split(",") if "--depends-on" in args else []
    entry: dict[str, object] = {"database": True, "migrate": True} if database else {}
    if auth or callees:
        entry["dependsOn"] = (["users"] if auth else []) + callees
    entry["ingress"] = {"paths": [f"/{name}"]}
    return entry


@pytest.mark.parametrize("name", list(CHOICES))
def test_each_choice_makes_a_service_whose_tests_lint_and_types_pass(clean: Path, name: str) -> None:
    args, database, _auth = CHOICES[name]
    entry = expected_entry(name)
    assert ("database" in entry) == database
    made = flotilla(clean, "new", name, *args)
    assert made.returncode == 0, made.stderr
    assert f"made services/{name}" in made.stdout
    assert services_map(clean)[name] == entry
    assert list(services_map(clean))[-1] == name  # appended; the map's other lines untouched
    changed = run(clean, "git", "diff", "--numstat", "charts/flotilla/values.yaml").stdout.split()
    assert changed[:2] == [str(1 + len(entry)), "0"]  # only added lines: its name and a line a key

    folder = clean / "services" / name
    module = f"flotilla_{name.replace('-', '_')}"
    assert (folder / "src" / module / "migrations" / "versions" / "0001_items.py").exists() == (
        "database" in entry
    )
    answers = yaml.safe_load((folder / ".copier-answers.yml").read_text())
    assert answers["_src_path"] == "services/kit/template"
    assert answers["_commit"] == run(clean, "git", "rev-parse", "HEAD").stdout.strip()

    sources = os.pathsep.join([str(folder / "src"), str(clean / "services/kit/src")])
    env = {**os.environ, "PYTHONPATH": str(folder / "src"), "MYPYPATH": sources}
    tests = run(clean, str(BIN / "pytest"), "-q", "-p", "no:cacheprovider", f"services/{name}/tests", env=env)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert " passed" in tests.stdout and "skipped" not in tests.stdout
    for check in (["ruff", "check", "--no-cache"], ["ruff", "format", "--check", "--no-cache"], ["mypy"]):
        checked = run(
            clean, str(BIN / check[0]), *check[1:], f"services/{name}/src", f"services/{name}/tests", env=env
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Stock", "'Stock' is not a DNS label"),
        ("stock_alerts", "'stock_alerts' is not a DNS label"),
        ("-stock", "'-stock' is not a DNS label"),
        ("stock-", "'stock-' is not a DNS label"),
        ("9lives", "'9lives' is not a DNS label"),
        ("a" * 41, "is not a DNS label"),
        ("users", "'users' clashes with the existing service 'users'"),
        ("kit", "'kit' is reserved"),
        ("docs", "'docs' is reserved"),
        ("class", "'class' is a Python keyword"),
        ("import", "'import' is a Python keyword"),
    ],
)
def test_a_bad_name_is_refused_with_a_reason_and_nothing_written(
    clean: Path, name: str, message: str
) -> None:
    refused = flotilla(clean, "new", "--", name)  # "--": a name starting with "-" is not an option
    assert refused.returncode == 1
    assert message in refused.stderr
    assert "nothing was written" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert status(clean) == ""


def test_an_unknown_callee_is_refused_and_nothing_written(clean: Path) -> None:
    refused = flotilla(clean, "new", "ledger", "--depends-on", "catalog,billing")
    assert refused.returncode == 1
    assert "dependsOn: no service named 'billing' in the services map" in refused.stderr
    assert status(clean) == ""


def test_make_new_service_makes_one_with_the_default_choices(clean: Path) -> None:
    # -o venv: the copy must never reinstall the tests' virtualenv with its own folders.
    make = ["make", "-o", "venv", "new-service"]
    env = {**os.environ, "FLOTILLA_VENV": str(BIN.parent)}
    made = run(clean, *make, "NAME=wishlist", env=env)
    assert made.returncode == 0, made.stdout + made.stderr
    assert services_map(clean)["wishlist"]["database"] is True
    assert services_map(clean)["wishlist"]["dependsOn"] == ["users"]
    # make test's pytest (no paths: the configured testpaths) collects the new service's tests.
    collected = run(
        clean, str(BIN / "pytest"), "--collect-only", "-q", "-p", "no:cacheprovider",
        env={**os.environ, "PYTHONPATH": str(clean / "services/wishlist/src")},
    )  # fmt: skip
    assert (
        "services/wishlist/tests/test_wishlist_service.py::test_an_item_is_added_listed_and_read"
        in collected.stdout
    )
    usage = run(clean, *make, env=env)
    assert usage.returncode == 2
    assert "usage: make new-service NAME=<name>" in usage.stderr


def change_the_template(root: Path, version: int, old: str, new: str) -> None:
    """A new template version that changes one line of every service's settings module."""
    copier = root / "services/kit/template/copier.yml"
    questions = yaml.safe_load(copier.read_text())
    current = questions["template_version"]["default"]
    copier.write_text(
        copier.read_text().replace(
            f"template_version:\n  type: int\n  default: {current}",
            f"template_version:\n  type: int\n  default: {version}",
        )
    )
    settings = root / "services/kit/template/src/flotilla_{{module}}/settings.py.jinja"
    settings.write_text(settings.read_text().replace(old, new))
    commit(root, f"template {version}")


def test_a_newer_template_merges_with_a_local_change_and_a_conflict_keeps_both(clean: Path) -> None:
    assert flotilla(clean, "new", "ledger").returncode == 0
    commit(clean, "ledger made")
    routes = clean / "services/ledger/src/flotilla_ledger/routes.py"
    routes.write_text(
        routes.read_text().replace('"""Read an item (public)."""', '"""Read one ledger line."""')
    )
    commit(clean, "a local change")

    change_the_template(clean, 2, 'SERVICE = "{{ name }}"', 'SERVICE = "{{ name }}"\nPAGE_SIZE = 50')
    behind = flotilla(clean, "doctor")
    assert behind.returncode == 1
    assert "made from template 1, the template is 2: flotilla update ledger" in behind.stdout

    merged = flotilla(clean, "update", "ledger")
    assert merged.returncode == 0, merged.stderr
    assert "services/ledger: template 1 -> 2" in merged.stdout
    assert "changed  src/flotilla_ledger/settings.py" in merged.stdout
    assert "PAGE_SIZE = 50" in (clean / "services/ledger/src/flotilla_ledger/settings.py").read_text()
    assert '"""Read one ledger line."""' in routes.read_text()  # the developer's change kept
    assert "template-version = 2" in (clean / "services/ledger/pyproject.toml").read_text()
    assert flotilla(clean, "doctor").returncode == 0
    commit(clean, "ledger updated")

    settings = clean / "services/ledger/src/flotilla_ledger/settings.py"
    settings.write_text(settings.read_text().replace("PAGE_SIZE = 50", "PAGE_SIZE = 20  # ours"))
    commit(clean, "a conflicting change")
    change_the_template(clean, 3, "PAGE_SIZE = 50", "PAGE_SIZE = 100")
    conflicted = flotilla(clean, "update", "ledger")
    assert conflicted.returncode == 1
    assert "1 conflict(s)" in conflicted.stderr
    assert "services/ledger/src/flotilla_ledger/settings.py" in conflicted.stderr
    text = settings.read_text()
    assert (
        "<<<<<<< before updating\nPAGE_SIZE = 20  # ours\n=======\nPAGE_SIZE = 100\n>>>>>>> after updating"
        in text
    )


def test_update_refuses_uncommitted_changes_and_a_service_not_from_the_template(clean: Path) -> None:
    assert flotilla(clean, "new", "ledger").returncode == 0
    refused = flotilla(clean, "update", "ledger")  # made, not committed
    assert refused.returncode == 1
    assert "services/ledger has uncommitted changes: commit or stash them first" in refused.stderr
    not_made = flotilla(clean, "update", "catalog")
    assert not_made.returncode == 1
    assert "services/catalog has no .copier-answers.yml: it was not made by flotilla new" in not_made.stderr


def test_doctor_names_a_service_pinning_an_older_kit(clean: Path) -> None:
    assert flotilla(clean, "doctor").returncode == 0
    pyproject = clean / "services/orders/pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"flotilla-kit==0.1.0"', '"flotilla-kit==0.0.9"'))
    behind = flotilla(clean, "doctor")
    assert behind.returncode == 1
    assert "pins kit 0.0.9, the kit is 0.1.0: raise the pin" in behind.stdout
    assert "1 service(s) behind" in behind.stderr


def test_the_template_pins_the_kit_at_its_version() -> None:
    root = Path(__file__).resolve().parents[1]
    questions = yaml.safe_load((root / "services/kit/template/copier.yml").read_text())
    kit = (root / "services/kit/pyproject.toml").read_text()
    assert f'version = "{questions["kit_version"]["default"]}"' in kit
