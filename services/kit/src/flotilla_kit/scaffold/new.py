"""``flotilla new``: a service made from the kit's template, and its entry in the services map."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flotilla_kit.scaffold.names import BadName, check_name
from flotilla_kit.scaffold.repository import TEMPLATE, Repository, ScaffoldError, read_answers, write_answers


@dataclass(frozen=True)
class Choices:
    """What ``flotilla new`` asks: the defaults are those of ``make new-service``."""

    database: bool = True
    auth: bool = True
    depends_on: Sequence[str] = ()


def dependencies(repository: Repository, name: str, choices: Choices) -> list[str]:
    """``dependsOn`` of the new entry: the token issuer first when it checks tokens, each service once."""
    known = set(repository.services_map())
    unknown = sorted(set(choices.depends_on) - known)
    if unknown:
        raise BadName(f"dependsOn: no service named {unknown[0]!r} in the services map")
    if name in choices.depends_on:
        raise BadName(f"dependsOn: {name!r} cannot call itself")
    wanted = list(choices.depends_on)
    if choices.auth:
        issuer = repository.token_issuer()
        if issuer is None:
            raise BadName("--auth needs a token issuer: no entry of the services map has tokenIssuer: true")
        wanted.insert(0, issuer)
    return list(dict.fromkeys(wanted))


def map_entry(name: str, database: bool, depends_on: Sequence[str]) -> list[str]:
    """The lines of the services map entry: a database, its callees, its route."""
    lines = ["database: true", "migrate: true"] if database else []
    if depends_on:
        lines.append(f"dependsOn: [{', '.join(depends_on)}]")
    lines.append(f"ingress: {{paths: [/{name}]}}")
    return lines


def new_service(repository: Repository, name: str, choices: Choices) -> Path:
    """Render the template into services/<name> and add the map entry; nothing is left on failure."""
    from copier import run_copy  # noqa: PLC0415 - a development tool, not the services' dependency

    check_name(name, repository.taken_names())
    depends_on = dependencies(repository, name, choices)
    folder = repository.service_folder(name)
    data = {"name": name, "database": choices.database, "auth": choices.auth, "depends_on": depends_on}
    try:
        run_copy(str(repository.template), folder, data=data, defaults=True, unsafe=True, quiet=True)
        record_template(repository, folder)
        repository.add_service_entry(name, map_entry(name, choices.database, depends_on))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def record_template(repository: Repository, folder: Path) -> None:
    """Note where the service's template is and at which commit: what ``flotilla update`` starts from."""
    answers = read_answers(folder)
    answers["_src_path"] = str(TEMPLATE)
    head = repository.head()
    if head is None:
        answers.pop("_commit", None)
    else:
        answers["_commit"] = head
    write_answers(folder, answers)


__all__ = ["Choices", "ScaffoldError", "new_service"]
