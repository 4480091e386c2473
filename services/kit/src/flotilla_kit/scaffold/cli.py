"""``flotilla``: the service developer's commands, ``new``, ``update`` and ``doctor``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from flotilla_kit.scaffold.doctor import services
from flotilla_kit.scaffold.names import BadName
from flotilla_kit.scaffold.new import Choices, new_service
from flotilla_kit.scaffold.repository import Repository, ScaffoldError
from flotilla_kit.scaffold.update import update_service


def _repository(root: Path | None) -> Repository:
    try:
        return Repository.find(root or Path.cwd())
    except ScaffoldError as exc:
        raise click.ClickException(str(exc)) from exc


def _names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


@click.group()
@click.option(
    "--root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The Flotilla repository (default: the one holding the current folder).",
)
@click.pass_context
def main(context: click.Context, root: Path | None) -> None:
    """Make services from the kit's template and keep them current."""
    context.obj = root


@main.command()
@click.argument("name")
@click.option("--database/--no-database", default=True, show_default=True, help="A database and migrations.")
@click.option("--auth/--no-auth", default=True, show_default=True, help="Writes need a bearer token.")
@click.option("--depends-on", default="", metavar="A,B", help="The services it calls (dependsOn).")
@click.pass_obj
def new(root: Path | None, name: str, database: bool, auth: bool, depends_on: str) -> None:
    """Make the service NAME under services/ and add it to the services map."""
    repository = _repository(root)
    try:
        folder = new_service(repository, name, Choices(database, auth, _names(depends_on)))
    except (BadName, ScaffoldError) as exc:
        raise click.ClickException(f"{exc}; nothing was written") from exc
    made = sorted(str(path.relative_to(repository.root)) for path in folder.rglob("*") if path.is_file())
    click.echo(
        f"made services/{name} ({'with' if database else 'without'} a database, "
        f"{'with' if auth else 'without'} authentication):"
    )
    for path in made:
        click.echo(f"  {path}")
    click.echo(f"  charts/flotilla/values.yaml: services.{name} added")
    click.echo(
        f"next: make run (it serves /{name} beside the others), make test (its tests in "
        f"services/{name}/tests), make up (built, deployed, routed, scraped)"
    )


@main.command()
@click.argument("name")
@click.pass_obj
def update(root: Path | None, name: str) -> None:
    """Merge the kit's current template into the service NAME, keeping its own changes."""
    repository = _repository(root)
    try:
        report = update_service(repository, name)
    except ScaffoldError as exc:
        raise click.ClickException(f"{exc}; nothing was changed") from exc
    click.echo(f"services/{name}: template {report.old_version} -> {report.new_version}")
    for path in report.changed:
        click.echo(f"  changed  {path}")
    for path in report.removed:
        click.echo(f"  removed  {path}")
    if not report.changed and not report.removed:
        click.echo("  nothing to change: the service is current")
    if report.conflicts:
        click.echo(
            f"{len(report.conflicts)} conflict(s): your version and the template's are both kept between "
            "'<<<<<<< before updating' and '>>>>>>> after updating' in:",
            err=True,
        )
        for path in report.conflicts:
            click.echo(f"  services/{name}/{path}", err=True)
        sys.exit(1)


@main.command()
@click.pass_obj
def doctor(root: Path | None) -> None:
    """List the services whose kit pin or template is behind this repository's (exit 1 if any)."""
    repository = _repository(root)
    kit, template = repository.kit_version(), repository.template_version()
    click.echo(f"kit {kit}, template {template}")
    behind = 0
    for state in services(repository):
        problems = state.problems(kit, template)
        behind += bool(problems)
        made = f"template {state.template}" if state.from_template else "not from the template"
        click.echo(
            f"  {state.name:<20} kit {state.kit or '-':<8} {made:<22} {'; '.join(problems) or 'current'}"
        )
    if behind:
        click.echo(f"{behind} service(s) behind", err=True)
        sys.exit(1)
