"""``flotilla-<service> db ...``: a developer's schema changes, from a model edit to a downgrade."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from flotilla_kit.cli import ServiceDefinition, service_cli
from flotilla_kit.settings import KitSettings


@dataclass
class Models:
    """The sample service's models, which the test edits between commands."""

    colour: bool = False

    def current(self) -> sa.MetaData:
        metadata = sa.MetaData()
        columns: list[sa.Column[object]] = [
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("name", sa.String(80)),
        ]
        if self.colour:
            columns.append(sa.Column("colour", sa.String(20), nullable=True))
        sa.Table("widgets", metadata, *columns)
        return metadata


@dataclass
class Sample:
    models: Models
    versions: Path
    database: Path
    runner: CliRunner
    cli: object

    def run(self, *args: str) -> Result:
        return self.runner.invoke(self.cli, ["db", *args])  # type: ignore[arg-type]

    def columns(self) -> set[str]:
        engine = sa.create_engine(f"sqlite:///{self.database}")
        try:
            inspector = sa.inspect(engine)
            if not inspector.has_table("widgets"):
                return set()
            return {column["name"] for column in inspector.get_columns("widgets")}
        finally:
            engine.dispose()

    def revisions(self) -> list[str]:
        return sorted(path.name for path in self.versions.glob("*.py"))


@pytest.fixture
def sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sample]:
    versions = tmp_path / "versions"
    versions.mkdir()
    database = tmp_path / "sample.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{database}")
    monkeypatch.setenv("DATABASE_WAIT_SECONDS", "0")
    models = Models()
    cli = service_cli(
        ServiceDefinition(
            name="sample",
            app_factory="unused:create_app()",
            load_settings=lambda: KitSettings.load("sample"),
            load_migration_settings=lambda: KitSettings.load("sample"),
            metadata=models.current,
            versions=versions,
        )
    )
    yield Sample(models, versions, database, CliRunner(), cli)


def test_a_model_change_becomes_a_numbered_revision_that_upgrades_and_downgrades(sample: Sample) -> None:
    first = sample.run("revision", "-m", "widgets", "--autogenerate")
    assert first.exit_code == 0, first.output
    assert sample.revisions() == ["0001_widgets.py"]
    assert 'op.create_table(\n        "widgets"' in (sample.versions / "0001_widgets.py").read_text()

    assert sample.run("upgrade").exit_code == 0
    assert sample.columns() == {"id", "name"}
    assert sample.run("current").output == "at 0001 (head) widgets\n"

    sample.models.colour = True
    second = sample.run("revision", "-m", "widget colour", "--autogenerate")
    assert second.exit_code == 0, second.output
    assert sample.revisions() == ["0001_widgets.py", "0002_widget_colour.py"]
    script = (sample.versions / "0002_widget_colour.py").read_text()
    assert 'down_revision: Union[str, Sequence[str], None] = "0001"' in script
    assert 'batch_op.add_column(sa.Column("colour"' in script

    upgraded = sample.run("upgrade")
    assert upgraded.output == "sample: at 0002 (head) widget colour\n"
    assert sample.columns() == {"id", "name", "colour"}

    history = sample.run("history")
    assert history.output.splitlines() == [
        "0001 -> 0002 (head) (current), widget colour",
        "<base> -> 0001, widgets",
    ]

    back = sample.run("downgrade", "-1")
    assert back.output == "sample: at 0001 widgets\n"
    assert sample.columns() == {"id", "name"}
    assert sample.run("downgrade", "base").output == "sample: no revision applied\n"
    assert sample.columns() == set()
    assert sample.run("current").output == "no revision applied\n"


def test_the_written_revision_is_formatted_and_passes_the_projects_lint(sample: Sample) -> None:
    assert sample.run("revision", "-m", "widgets", "--autogenerate").exit_code == 0
    script = str(sample.versions / "0001_widgets.py")
    for check in (["format", "--check", script], ["check", "--select", "E,F,W", script]):
        command = [sys.executable, "-m", "ruff", *check]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def test_autogenerate_writes_nothing_when_the_models_match_the_database(sample: Sample) -> None:
    sample.run("revision", "-m", "widgets", "--autogenerate")
    sample.run("upgrade")
    result = sample.run("revision", "-m", "nothing", "--autogenerate")
    assert result.exit_code == 0
    assert result.output == "no difference between the models and the database: nothing written\n"
    assert sample.revisions() == ["0001_widgets.py"]


def test_autogenerate_refuses_a_database_behind_the_head_and_writes_nothing(sample: Sample) -> None:
    sample.run("revision", "-m", "widgets", "--autogenerate")
    sample.models.colour = True
    result = sample.run("revision", "-m", "widget colour", "--autogenerate")
    assert result.exit_code == 1
    assert "error: Target database is not up to date." in result.output
    assert "Traceback" not in result.output
    assert sample.revisions() == ["0001_widgets.py"]


def test_an_empty_revision_is_written_for_hand_edits(sample: Sample) -> None:
    result = sample.run("revision", "-m", "Backfill names!")
    assert result.exit_code == 0, result.output
    assert sample.revisions() == ["0001_backfill_names.py"]
    assert result.output.endswith(f"\nwrote {sample.versions / '0001_backfill_names.py'}\n")
    assert '"""Upgrade schema."""\n    pass\n' in (sample.versions / "0001_backfill_names.py").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["downgrade", "0042"], "error: "),
        (["upgrade", "nowhere"], "error: "),
        (["revision"], "Missing option '-m' / '--message'"),
        (["downgrade"], "Missing argument 'REVISION'"),
    ],
)
def test_a_bad_revision_or_a_missing_argument_is_named_without_a_traceback(
    sample: Sample, args: list[str], message: str
) -> None:
    sample.run("revision", "-m", "widgets", "--autogenerate")
    result = sample.run(*args)
    assert result.exit_code in (1, 2)
    assert message in result.output
    assert "Traceback" not in result.output
    assert sample.revisions() == ["0001_widgets.py"]
