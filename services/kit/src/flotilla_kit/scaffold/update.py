"""``flotilla update``: the kit's newer template merged into a service made from an older one.

copier's update does the merge: it renders the template the service was made from and the
current one with the same answers, and applies the difference to the service, keeping the
developer's changes; where both changed the same lines it writes both, between conflict markers.
copier needs the template as a git repository of its own, and this one is a folder of the
Flotilla repository: the two versions are committed to a temporary repository first, and the
service is updated in a temporary copy whose result is brought back.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from flotilla_kit.scaffold.new import record_template
from flotilla_kit.scaffold.repository import (
    ANSWERS_FILE,
    TEMPLATE,
    Repository,
    ScaffoldError,
    git,
    read_answers,
    template_version,
    write_answers,
)

CONFLICT_MARKERS = ("<<<<<<< before updating", ">>>>>>> after updating")
OLD_TAG, NEW_TAG = "1", "2"


@dataclass
class UpdateReport:
    """What an update changed in the service's folder."""

    old_version: int
    new_version: int
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)


def _commit_all(folder: Path, message: str, tag: str | None = None) -> None:
    git(folder, "add", "--all")
    git(
        folder,
        "-c",
        "user.name=flotilla",
        "-c",
        "user.email=flotilla@localhost",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        message,
    )
    if tag:
        git(folder, "tag", tag)


def _template_repository(repository: Repository, old_commit: str, into: Path) -> None:
    """A git repository whose tag 1 is the template at ``old_commit`` and tag 2 today's template."""
    into.mkdir()
    git(into, "init", "-q")
    archive = subprocess.run(
        ["git", "archive", "--format=tar", old_commit, str(TEMPLATE)],
        cwd=repository.root,
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        raise ScaffoldError(
            f"the template at commit {old_commit[:12]} is not in this repository's history "
            f"({archive.stderr.decode().strip()}): fetch that commit, or update the service by hand"
        )
    subprocess.run(["tar", "-x", "--strip-components=3", "-C", str(into)], input=archive.stdout, check=True)
    _commit_all(into, "the template the service was made from", OLD_TAG)
    for entry in into.iterdir():
        if entry.name != ".git":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    shutil.copytree(
        repository.template, into, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
    )
    _commit_all(into, "the template now", NEW_TAG)


def _tracked_files(repository: Repository, folder: Path) -> list[str]:
    listed = git(repository.root, "ls-files", "-z", "--", str(folder.relative_to(repository.root)))
    prefix = f"{folder.relative_to(repository.root)}/"
    return [name.removeprefix(prefix) for name in listed.split("\0") if name]


def _files(repository: Repository, folder: Path, service: Path) -> set[str]:
    """The files under ``folder`` that the repository would keep for ``service`` (not ignored ones)."""
    found = [
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_file() and ".git" not in path.parts
    ]
    prefix = service.relative_to(repository.root)
    checked = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin", "-z"],
        cwd=repository.root,
        input="\0".join(str(prefix / name) for name in found),
        capture_output=True,
        text=True,
        check=False,
    )
    ignored = {name.removeprefix(f"{prefix}/") for name in checked.stdout.split("\0") if name}
    return set(found) - ignored


def _recorded_commit(repository: Repository, name: str, answers: dict[str, object]) -> str:
    """The template commit the service records, once it is known the update may go on."""
    folder = repository.service_folder(name)
    if not answers:
        raise ScaffoldError(f"services/{name} has no {ANSWERS_FILE}: it was not made by flotilla new")
    old_commit = answers.get("_commit")
    if not old_commit:
        raise ScaffoldError(f"services/{name}/{ANSWERS_FILE} records no template commit (_commit)")
    if repository.changed(folder):
        raise ScaffoldError(
            f"services/{name} has uncommitted changes: commit or stash them first, so that the update's "
            "changes can be reviewed and undone on their own"
        )
    return str(old_commit)


def _merged_copy(
    folder: Path, tracked: list[str], answers: dict[str, object], template: Path, into: Path
) -> None:
    """The service's committed files in a repository of their own, updated there by copier."""
    from copier import run_update  # noqa: PLC0415 - a development tool, not the services' dependency

    for relative in tracked:
        (into / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(folder / relative, into / relative)
    write_answers(into, {**answers, "_src_path": str(template), "_commit": OLD_TAG})
    git(into, "init", "-q")
    _commit_all(into, "the service as committed")
    run_update(
        into, defaults=True, overwrite=True, skip_answered=True, unsafe=True, quiet=True,
        vcs_ref=NEW_TAG, conflict="inline",
    )  # fmt: skip


def _bring_back(
    project: Path, folder: Path, after: set[str], tracked: list[str], report: UpdateReport
) -> None:
    """Copy what the update changed into the service's folder, delete what it removed, note conflicts."""
    for relative in sorted(after - {ANSWERS_FILE}):
        source, target = project / relative, folder / relative
        if not target.is_file() or source.read_bytes() != target.read_bytes():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
            report.changed.append(relative)
        if any(marker in source.read_text(errors="replace").splitlines() for marker in CONFLICT_MARKERS):
            report.conflicts.append(relative)
    for relative in sorted(set(tracked) - after):
        (folder / relative).unlink()
        report.removed.append(relative)


def update_service(repository: Repository, name: str) -> UpdateReport:
    """Merge today's template into services/<name>; conflicts are left marked in the files."""
    folder = repository.service_folder(name)
    answers = read_answers(folder)
    old_commit = _recorded_commit(repository, name, answers)
    tracked = _tracked_files(repository, folder)
    with tempfile.TemporaryDirectory(prefix="flotilla-update-") as scratch:
        template, project = Path(scratch) / "template", Path(scratch) / "project"
        _template_repository(repository, old_commit, template)
        _merged_copy(folder, tracked, answers, template, project)
        old_version = template_version(git(template, "show", f"{OLD_TAG}:copier.yml"))
        report = UpdateReport(old_version, repository.template_version())
        _bring_back(project, folder, _files(repository, project, folder), tracked, report)
        write_answers(folder, {**read_answers(project), "_src_path": str(TEMPLATE)})
    record_template(repository, folder)
    return report
