#!/usr/bin/env python3
"""The platform's services: the one reader of the umbrella chart's ``services:`` map.

Scripts, skaffold's test and the workflows take the list from here, never from a list of their own:
  scripts/services.py names                   the enabled services, one per line, in map order
  scripts/services.py names --json            the same as a JSON list (a GitHub Actions matrix)
  scripts/services.py json                    the map of enabled services, as JSON
  scripts/services.py images [--registry R] [--tag T]
                                              N=<image> as the chart resolves it by default
``--values FILE`` (repeatable) reads more values files over the chart's, merged as helm merges
them: later files win, maps merge key by key, ``null`` removes a key. Runs on a plain ``python3``
with PyYAML as well as in the virtualenv.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from flotilla_kit.scaffold.names import DNS_LABEL

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "flotilla"
VALUES = CHART / "values.yaml"
# A service's name is a Kubernetes object name, a DNS label, a folder, a console script
# (flotilla-N) and an environment variable prefix (N_URL): the rule `flotilla new` applies.
NAME = DNS_LABEL


class ServicesError(ValueError):
    """The values do not hold a usable services map; the message says where."""


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` over ``base`` the way helm merges values files."""
    merged = dict(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_values(files: Iterable[Path | str] = (), *, chart_values: Path = VALUES) -> dict[str, Any]:
    """The chart's values.yaml with each of ``files`` merged over it, in order."""
    values: dict[str, Any] = {}
    for path in [chart_values, *(Path(f) for f in files)]:
        try:
            document = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise ServicesError(f"cannot read the values file {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ServicesError(f"{path} is not valid YAML: {exc}") from exc
        if not isinstance(document, Mapping):
            raise ServicesError(f"{path}: the values must be a map, not {type(document).__name__}")
        values = merge(values, document)
    return values


def services(
    values_files: Iterable[Path | str] = (), *, chart_values: Path = VALUES
) -> dict[str, dict[str, Any]]:
    """``{name: entry}`` of every enabled service, in the map's order."""
    return enabled_services(load_values(values_files, chart_values=chart_values))


def enabled_services(values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The enabled entries of merged values' ``services:`` map, each name checked."""
    table = values.get("services") or {}
    if not isinstance(table, Mapping):
        raise ServicesError("services: must be a map of service name to its settings")
    enabled: dict[str, dict[str, Any]] = {}
    for name, entry in table.items():
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ServicesError(
                f"services.{name}: a service name is lower-case letters, digits and '-', "
                "starts with a letter and has at most 40 characters"
            )
        settings = {} if entry is None else entry
        if not isinstance(settings, Mapping):
            raise ServicesError(f"services.{name}: must be a map of settings")
        if settings.get("enabled", True) is not False:
            enabled[name] = dict(settings)
    return enabled


def names(values_files: Iterable[Path | str] = (), *, chart_values: Path = VALUES) -> list[str]:
    """The enabled services' names, in the map's order."""
    return list(services(values_files, chart_values=chart_values))


def images(
    values_files: Iterable[Path | str] = (),
    registry: str | None = None,
    tag: str | None = None,
    *,
    chart_values: Path = VALUES,
) -> dict[str, str]:
    """``{name: image}`` as the chart renders it by default.

    ``services.N.image`` when set, else ``[<registry>/]flotilla/N:<tag>`` with
    ``global.imageRegistry`` and ``global.imageTag`` (default: the chart's appVersion).
    """
    values = load_values(values_files, chart_values=chart_values)
    global_values = values.get("global") or {}
    if registry is None:
        registry = str(global_values.get("imageRegistry") or "")
    if tag is None:
        tag = global_values.get("imageTag") or ""
        if not tag:
            chart = yaml.safe_load((chart_values.parent / "Chart.yaml").read_text())
            tag = str(chart.get("appVersion") or chart["version"])
    prefix = f"{registry.rstrip('/')}/" if registry else ""
    return {
        name: str(entry.get("image") or f"{prefix}flotilla/{name}:{tag}")
        for name, entry in enabled_services(values).items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (see the module's docstring)."""
    values_option = argparse.ArgumentParser(add_help=False)
    values_option.add_argument(
        "--values",
        "-f",
        action="append",
        default=[],
        metavar="FILE",
        help="a values file over the chart's (repeatable; later files win)",
    )
    parser = argparse.ArgumentParser(
        prog="scripts/services.py", description="The platform's services, from charts/flotilla/values.yaml."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    names_command = commands.add_parser("names", parents=[values_option], help="the names, one per line")
    names_command.add_argument("--json", action="store_true", help="a JSON list instead")
    commands.add_parser("json", parents=[values_option], help="the map of enabled services as JSON")
    images_command = commands.add_parser(
        "images", parents=[values_option], help="N=<image> as the chart renders it by default"
    )
    images_command.add_argument("--registry", help="instead of global.imageRegistry")
    images_command.add_argument("--tag", help="instead of global.imageTag (default: appVersion)")
    arguments = parser.parse_args(argv)
    try:
        if arguments.command == "names":
            listed = names(arguments.values)
            if arguments.json:
                print(json.dumps(listed))
            elif listed:
                print("\n".join(listed))
        elif arguments.command == "json":
            print(json.dumps(services(arguments.values), indent=2))
        else:
            for name, image in images(arguments.values, arguments.registry, arguments.tag).items():
                print(f"{name}={image}")
    except ServicesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
