"""scripts/services.py, the one reader of the services map: merging, skipping, names, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from scripts.services import ROOT, ServicesError, images, load_values, main, merge, names, services

SCRIPT = ROOT / "scripts" / "services.py"


def write(path: Path, values: object) -> Path:
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


@pytest.fixture
def chart(tmp_path: Path) -> Path:
    """A chart folder with values.yaml and Chart.yaml, three services in a non-sorted order."""
    folder = tmp_path / "chart"
    folder.mkdir()
    write(folder / "Chart.yaml", {"apiVersion": "v2", "name": "x", "version": "1.2.3", "appVersion": "4.5.6"})
    return write(
        folder / "values.yaml",
        {
            "global": {"imageRegistry": "", "imageTag": ""},
            "services": {
                "users": {"replicas": 2, "ingress": {"paths": ["/users", "/auth"]}},
                "catalog": {"dependsOn": ["users"], "env": [{"name": "A", "value": "1"}]},
                "orders": {"dependsOn": ["users", "catalog"]},
            },
        },
    )


def test_merge_overrides_scalars_merges_maps_replaces_lists_and_null_removes() -> None:
    base = {"a": 1, "m": {"x": 1, "y": {"z": 1}}, "l": [1, 2], "gone": 3}
    override = {"a": 2, "m": {"y": {"w": 2}}, "l": [3], "gone": None, "new": {"k": "v"}}
    assert merge(base, override) == {
        "a": 2,
        "m": {"x": 1, "y": {"z": 1, "w": 2}},
        "l": [3],
        "new": {"k": "v"},
    }
    assert base == {"a": 1, "m": {"x": 1, "y": {"z": 1}}, "l": [1, 2], "gone": 3}


def test_services_keep_the_map_order_and_their_entries(chart: Path) -> None:
    listed = services(chart_values=chart)
    assert list(listed) == ["users", "catalog", "orders"]
    assert listed["catalog"] == {"dependsOn": ["users"], "env": [{"name": "A", "value": "1"}]}


def test_later_values_files_override_earlier_ones_and_add_services(chart: Path, tmp_path: Path) -> None:
    first = write(tmp_path / "first.yaml", {"services": {"orders": {"replicas": 3}, "hello": {"port": 9000}}})
    second = write(tmp_path / "second.yaml", {"services": {"orders": {"replicas": 5}}})
    listed = services([first, second], chart_values=chart)
    assert list(listed) == ["users", "catalog", "orders", "hello"]
    assert listed["orders"] == {"dependsOn": ["users", "catalog"], "replicas": 5}
    assert listed["hello"] == {"port": 9000}


def test_disabled_and_removed_services_are_skipped(chart: Path, tmp_path: Path) -> None:
    extra = write(
        tmp_path / "extra.yaml",
        {"services": {"catalog": {"enabled": False}, "orders": None, "hello": {"enabled": True}}},
    )
    assert names([extra], chart_values=chart) == ["users", "hello"]


def test_a_service_without_settings_is_listed(chart: Path, tmp_path: Path) -> None:
    extra = tmp_path / "extra.yaml"
    extra.write_text("services:\n  hello: {}\n")
    assert names([extra], chart_values=chart)[-1] == "hello"


@pytest.mark.parametrize("bad", ["Users", "1st", "a_b", "-a", "a-", "x" * 41, "a.b"])
def test_names_that_cannot_name_every_object_are_refused(chart: Path, tmp_path: Path, bad: str) -> None:
    extra = write(tmp_path / "extra.yaml", {"services": {bad: {}}})
    with pytest.raises(ServicesError, match=r"lower-case letters"):
        services([extra], chart_values=chart)


def test_a_services_value_that_is_not_a_map_is_refused(chart: Path, tmp_path: Path) -> None:
    with pytest.raises(ServicesError, match=r"services: must be a map"):
        services([write(tmp_path / "a.yaml", {"services": ["users"]})], chart_values=chart)
    with pytest.raises(ServicesError, match=r"services\.users: must be a map"):
        services([write(tmp_path / "b.yaml", {"services": {"users": "yes"}})], chart_values=chart)


def test_unreadable_and_invalid_values_files_are_named(chart: Path, tmp_path: Path) -> None:
    with pytest.raises(ServicesError, match=r"cannot read the values file .*missing\.yaml"):
        load_values([tmp_path / "missing.yaml"], chart_values=chart)
    broken = tmp_path / "broken.yaml"
    broken.write_text("services: [\n")
    with pytest.raises(ServicesError, match=r"broken\.yaml is not valid YAML"):
        load_values([broken], chart_values=chart)


def test_images_follow_the_charts_defaults_and_overrides(chart: Path, tmp_path: Path) -> None:
    assert images(chart_values=chart) == {
        "users": "flotilla/users:4.5.6",
        "catalog": "flotilla/catalog:4.5.6",
        "orders": "flotilla/orders:4.5.6",
    }
    extra = write(
        tmp_path / "extra.yaml",
        {
            "global": {"imageRegistry": "ghcr.io/acme/", "imageTag": "9.9.9"},
            "services": {"orders": {"image": "registry.local/orders@sha256:abc"}},
        },
    )
    assert images([extra], chart_values=chart) == {
        "users": "ghcr.io/acme/flotilla/users:9.9.9",
        "catalog": "ghcr.io/acme/flotilla/catalog:9.9.9",
        "orders": "registry.local/orders@sha256:abc",
    }
    assert (
        images(registry="r.example", tag="1.0.0", chart_values=chart)["users"]
        == "r.example/flotilla/users:1.0.0"
    )


def test_the_command_line_prints_names_json_and_images(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    extra = write(tmp_path / "extra.yaml", {"services": {"hello": {"port": 9000}}})
    expected = [*names(), "hello"]
    assert main(["names", "--values", str(extra)]) == 0
    assert capsys.readouterr().out.split() == expected
    assert main(["names", "--json", "-f", str(extra)]) == 0
    assert json.loads(capsys.readouterr().out) == expected
    assert main(["json", "--values", str(extra)]) == 0
    assert json.loads(capsys.readouterr().out)["hello"] == {"port": 9000}
    assert main(["images", "--values", str(extra), "--registry", "r", "--tag", "t"]) == 0
    assert "hello=r/flotilla/hello:t" in capsys.readouterr().out.split()
    assert main(["names", "--values", str(tmp_path / "missing.yaml")]) == 1
    assert "error: cannot read the values file" in capsys.readouterr().err


def test_the_script_runs_on_a_plain_python3_outside_the_repository(tmp_path: Path) -> None:
    """Workflows call it with the runner's python3 from any directory (PyYAML only)."""
    ran = subprocess.run(
        [sys.executable, "-I", str(SCRIPT), "names"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == names()


def test_the_charts_services_each_have_a_folder_with_their_console_script() -> None:
    """Each name is the folder services/N whose package installs flotilla-N (the image's entrypoint)."""
    listed = names()
    assert {"users", "catalog", "orders"} <= set(listed)
    for name in listed:
        project = tomllib.loads((ROOT / "services" / name / "pyproject.toml").read_text())["project"]
        assert f"flotilla-{name}" in project["scripts"], name
