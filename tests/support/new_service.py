"""A fourth service, added the way the README says: its folder under services/ and one entry in
the services map of the umbrella chart, in a copy of this repository."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

from tests.support.kube import ROOT

NAME = "greeter"
PATH = "/greetings"

# The smallest useful service on the kit: one endpoint, no database, no authentication.
FILES = {
    "pyproject.toml": f"""
        [build-system]
        requires = ["setuptools==84.2.1"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "flotilla-{NAME}"
        version = "0.1.0"
        requires-python = ">=3.11"
        dependencies = ["flotilla-kit==0.1.0"]

        [project.scripts]
        flotilla-{NAME} = "flotilla_{NAME}.cli:main"

        [tool.setuptools.packages.find]
        where = ["src"]
    """,
    f"src/flotilla_{NAME}/__init__.py": '"""Greetings."""\n',
    f"src/flotilla_{NAME}/app.py": f'''
        """The {NAME} app: one endpoint on the kit."""

        from flask import Flask

        from flotilla_kit.api import Blueprint
        from flotilla_kit.app import create_service_app
        from flotilla_kit.settings import KitSettings

        greetings = Blueprint("greetings", __name__, url_prefix="{PATH}")


        @greetings.route("/<string:name>")
        def greet(name: str) -> dict[str, str]:
            """A greeting for ``name``."""
            return {{"greeting": f"Hello, {{name}}!"}}


        def create_app() -> Flask:
            """The app, from the environment."""
            app, api = create_service_app(KitSettings.load("{NAME}"), title="{NAME}", version="1.0.0")
            api.register_blueprint(greetings)
            return app
    ''',
    f"src/flotilla_{NAME}/cli.py": f'''
        """``flotilla-{NAME}``: the kit's commands."""

        from pathlib import Path

        from sqlalchemy import MetaData

        from flotilla_kit.cli import ServiceDefinition, service_cli
        from flotilla_kit.settings import KitSettings

        main = service_cli(
            ServiceDefinition(
                name="{NAME}",
                app_factory="flotilla_{NAME}.app:create_app()",
                load_settings=lambda: KitSettings.load("{NAME}"),
                load_migration_settings=lambda: KitSettings.load("{NAME}"),
                metadata=MetaData(),
                versions=Path(__file__).with_name("migrations"),
            )
        )
    ''',
}

# The one map entry: a Microservice spec (routed; metrics, probes and the policy by default).
MAP_ENTRY = f"""
  {NAME}:
    replicas: 1
    ingress: {{paths: [{PATH}]}}
"""


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
    """Its folder under services/, and one entry appended to the services map."""
    folder = repository / "services" / NAME
    for relative, text in FILES.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    values = repository / "charts" / "flotilla" / "values.yaml"
    lines = values.read_text().splitlines(keepends=True)
    start = lines.index("services:\n")
    end = start + 1
    for index in range(start + 1, len(lines)):
        if lines[index].startswith(" "):
            end = index + 1  # after the last line of the map's block
        elif lines[index].strip() and not lines[index].startswith("#"):
            break
    lines.insert(end, MAP_ENTRY.lstrip("\n"))
    values.write_text("".join(lines))
