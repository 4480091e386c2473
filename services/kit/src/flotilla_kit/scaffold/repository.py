"""The Flotilla repository a command works on: its services map, its kit, its template, its git."""

from __future__ import annotations

import subprocess
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

VALUES = Path("charts/flotilla/values.yaml")
SERVICES = Path("services")
KIT = SERVICES / "kit"
TEMPLATE = KIT / "template"
ANSWERS_FILE = ".copier-answers.yml"


class ScaffoldError(RuntimeError):
    """A command cannot go on; the message says why and nothing was written."""


def git(root: Path, *args: str, check: bool = True) -> str:
    """Run git in ``root``; its standard output."""
    result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise ScaffoldError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file, parsed."""
    with path.open("rb") as file:
        return tomllib.load(file)


@dataclass(frozen=True)
class Repository:
    """A checkout of Flotilla (or of a project made from it)."""

    root: Path

    @classmethod
    def find(cls, start: Path) -> Repository:
        """The repository holding ``start``: the nearest folder with the services map and the template."""
        for folder in (start.resolve(), *start.resolve().parents):
            if (folder / VALUES).is_file() and (folder / TEMPLATE / "copier.yml").is_file():
                return cls(folder)
        raise ScaffoldError(
            f"no Flotilla repository here: neither {start.resolve()} nor a folder above it has "
            f"{VALUES} and {TEMPLATE}/copier.yml (run it in the repository, or pass --root)"
        )

    @property
    def template(self) -> Path:
        return self.root / TEMPLATE

    def service_folder(self, name: str) -> Path:
        return self.root / SERVICES / name

    def services_map(self) -> Mapping[str, Any]:
        """The ``services:`` map of the chart's values, every entry (enabled or not)."""
        values = yaml.safe_load((self.root / VALUES).read_text()) or {}
        services = values.get("services") or {}
        if not isinstance(services, Mapping):
            raise ScaffoldError(f"{VALUES}: services: is not a map")
        return services

    def taken_names(self) -> set[str]:
        """Every name in the services map and every folder under services/."""
        folders = {path.name for path in (self.root / SERVICES).iterdir() if path.is_dir()}
        return set(self.services_map()) | folders

    def token_issuer(self) -> str | None:
        """The map's entry with ``tokenIssuer: true``."""
        return next(
            (name for name, entry in self.services_map().items() if (entry or {}).get("tokenIssuer")), None
        )

    def kit_version(self) -> str:
        return str(read_toml(self.root / KIT / "pyproject.toml")["project"]["version"])

    def template_version(self) -> int:
        """The template's ``template_version``, raised with each change of the template."""
        return template_version(self.template / "copier.yml")

    def head(self) -> str | None:
        """The commit checked out, None outside git or before the first commit."""
        result = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", "HEAD"],
            cwd=self.root,
            capture_output=True,
            text=True,
            check=False,
        )
        return result.stdout.strip() or None

    def changed(self, path: Path) -> list[str]:
        """Uncommitted changes under ``path`` (``git status --porcelain`` lines)."""
        return git(self.root, "status", "--porcelain", "--", str(path.relative_to(self.root))).splitlines()

    def add_service_entry(self, name: str, lines: Sequence[str]) -> None:
        """Append ``name``'s entry to the services map, leaving every other line as it is."""
        path = self.root / VALUES
        text = path.read_text().splitlines(keepends=True)
        try:
            start = text.index("services:\n")
        except ValueError:
            raise ScaffoldError(f"{VALUES}: no block 'services:' to add {name} to") from None
        end = start + 1
        for index in range(start + 1, len(text)):
            line = text[index]
            if line.startswith((" ", "\t")):
                end = index + 1  # after the last line of the block
            elif line.strip() and not line.startswith("#"):
                break
        entry = [f"  {name}:\n", *(f"    {line}\n" for line in lines)]
        updated = "".join(text[:end] + entry + text[end:])
        if name not in (yaml.safe_load(updated).get("services") or {}):
            raise ScaffoldError(f"{VALUES}: the entry of {name} could not be added")
        path.write_text(updated)


def template_version(copier_file: Path | str) -> int:
    """``template_version``'s default in a template's copier.yml (a path or its text)."""
    text = copier_file.read_text() if isinstance(copier_file, Path) else copier_file
    questions = yaml.safe_load(text) or {}
    return int(questions["template_version"]["default"])


def read_answers(folder: Path) -> dict[str, Any]:
    """A service's recorded answers; empty when it was not made from the template."""
    path = folder / ANSWERS_FILE
    if not path.is_file():
        return {}
    answers = yaml.safe_load(path.read_text()) or {}
    return dict(answers)


def write_answers(folder: Path, answers: Mapping[str, Any]) -> None:
    """Replace a service's answers, keeping the file's comment and copier's layout (``to_nice_yaml``)."""
    path = folder / ANSWERS_FILE
    comments = [line for line in path.read_text().splitlines(keepends=True) if line.startswith("#")]
    document = yaml.safe_dump(dict(answers), default_flow_style=False, allow_unicode=True, indent=2)
    path.write_text("".join(comments) + document)
