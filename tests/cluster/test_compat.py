"""The charts under both Helm majors, and the release's images agreeing with its charts.

Users run Helm 4 and Helm 3: every chart lints strictly and renders under the pinned Helm 3
(``helm3``), and renders the same objects as under Helm 4 (``helm``). ``release.yml`` pushes the
images its ``tags:`` expressions name and packages the charts with ``scripts/release-charts.sh``:
the packaged charts render exactly those images by default, under either major."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.services import names
from tests.support.kube import BIN, ROOT, tool

CHARTS = ROOT / "charts"
WORKFLOWS = ROOT / ".github" / "workflows"
VERSIONS = ROOT / "scripts" / "cluster" / "versions.env"
# The umbrella last: it packs the operator chart, built with its own dependencies.
APPLICATION_CHARTS = ["flotilla-operator", "flotilla"]
LIBRARY_CHART = "flotilla-lib"
HELMS = ["helm", "helm3"]
# kube-prometheus-stack's CRDs: with them the charts render their ServiceMonitors and rules too.
MONITORING = [
    "--api-versions",
    "monitoring.coreos.com/v1/ServiceMonitor",
    "--api-versions",
    "monitoring.coreos.com/v1/PrometheusRule",
]
# Secrets of the user's own: nothing is generated, so two renders are byte for byte comparable.
OWN_SECRETS = ["--set", "secrets.existingSecret=fl-own", "--set", "secrets.existingJwtKeysSecret=fl-keys"]
# What a release tag and a repository owner give the workflow (upper case: registries want lower).
TAG, OWNER = "v1.4.0-rc.1", "Flotilla-Dev"

Documents = list[dict[str, Any]]


def pins() -> dict[str, str]:
    """scripts/cluster/versions.env as NAME -> value."""
    lines = VERSIONS.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if re.match(r"^[A-Z0-9_]+=", line))


@pytest.fixture(scope="module")
def charts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """helm and helm3 -> a copy of charts/ with its dependencies built by that Helm (from the
    committed Chart.lock files: Helm 3 must accept the ones Helm 4 writes)."""
    built = {}
    for helm in HELMS:
        copy = tmp_path_factory.mktemp(helm) / "charts"
        shutil.copytree(CHARTS, copy, ignore=shutil.ignore_patterns("charts"))
        for chart in APPLICATION_CHARTS:
            result = tool(helm, "dependency", "build", str(copy / chart))
            assert result.returncode == 0, f"{helm} dependency build {chart}: {result.stderr}"
        built[helm] = copy
    return built


def render(helm: str, chart: Path | str, *args: str) -> Documents:
    rendered = tool(helm, "template", "fl", str(chart), "--namespace", "shop", *args)
    assert rendered.returncode == 0, f"{helm} template {chart}: {rendered.stderr}"
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


def identity(doc: dict[str, Any]) -> str:
    metadata = doc["metadata"]
    return f"{doc['apiVersion']}/{doc['kind']} {metadata.get('namespace', '')}/{metadata['name']}"


def by_identity(documents: Documents) -> dict[str, dict[str, Any]]:
    found = {identity(doc): doc for doc in documents}
    assert len(found) == len(documents), "two objects of the same kind and name"
    return found


def images(node: Any) -> Iterator[str]:
    """Every ``image`` in a document: containers, init containers, a Microservice's spec."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "image" and isinstance(value, str):
                yield value
            else:
                yield from images(value)
    elif isinstance(node, list):
        for item in node:
            yield from images(item)


# --- Helm 3 -----------------------------------------------------------------------------------


@pytest.mark.parametrize("chart", [LIBRARY_CHART, *APPLICATION_CHARTS])
def test_every_chart_lints_strictly_under_helm3(charts: dict[str, Path], chart: str) -> None:
    result = tool("helm3", "lint", "--strict", str(charts["helm3"] / chart))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_the_library_chart_is_lint_only() -> None:
    """A library chart renders nothing of its own: both majors refuse to template it."""
    assert yaml.safe_load((CHARTS / LIBRARY_CHART / "Chart.yaml").read_text())["type"] == "library"
    for helm in HELMS:
        refused = tool(helm, "template", "fl", str(CHARTS / LIBRARY_CHART))
        assert refused.returncode != 0 and "library charts are not installable" in refused.stderr, helm


def test_helm3_renders_every_application_chart(charts: dict[str, Path]) -> None:
    operator = render("helm3", charts["helm3"] / "flotilla-operator", *MONITORING)
    assert {doc["kind"] for doc in operator} >= {"Deployment", "ClusterRole", "ServiceMonitor"}
    umbrella = render("helm3", charts["helm3"] / "flotilla", *MONITORING)
    kinds = [doc["kind"] for doc in umbrella]
    assert kinds.count("Microservice") == len(names())
    assert {"Deployment", "StatefulSet", "Secret", "PrometheusRule", "ServiceMonitor"} <= set(kinds)


# Value sets of the umbrella rendered by both majors (each with the user's own Secrets).
VALUE_SETS = {
    "defaults": [],
    "monitoring": MONITORING,
    "registry-host-tls": [
        "--set",
        "global.imageRegistry=registry.example/acme",
        "--set",
        "ingress.host=shop.example.com",
        "--set",
        "ingress.tls.enabled=true",
        "--set",
        "ingress.tls.clusterIssuer=letsencrypt",
    ],
    "external-database": [
        "--set",
        "postgresql.enabled=false",
        "--set",
        "networkPolicy.enabled=false",
    ],
    "fourth-service": [
        "--set-json",
        'services.hello={"image": "registry.example/hello:1.0", "ingress": {"paths": ["/hello"]}}',
    ],
}


@pytest.mark.parametrize("values", VALUE_SETS)
def test_helm3_renders_the_same_umbrella_objects_as_helm4(charts: dict[str, Path], values: str) -> None:
    rendered = {
        helm: by_identity(render(helm, charts[helm] / "flotilla", *OWN_SECRETS, *VALUE_SETS[values]))
        for helm in HELMS
    }
    assert sorted(rendered["helm3"]) == sorted(rendered["helm"])
    for name, doc in rendered["helm"].items():
        assert rendered["helm3"][name] == doc, name


def test_helm3_renders_the_same_operator_chart_objects_as_helm4(charts: dict[str, Path]) -> None:
    operator = {
        helm: by_identity(render(helm, charts[helm] / "flotilla-operator", *MONITORING)) for helm in HELMS
    }
    assert operator["helm3"] == operator["helm"]


def test_helm3_generates_the_same_secrets_as_helm4(charts: dict[str, Path]) -> None:
    """Without Secrets of the user's own both generate them: the same Secrets with the same keys
    (their values are random), and the same objects besides."""
    keys, others = {}, {}
    for helm in HELMS:
        documents = by_identity(render(helm, charts[helm] / "flotilla"))
        keys[helm] = {
            name: sorted(doc.get("data") or doc.get("stringData") or {})
            for name, doc in documents.items()
            if doc["kind"] == "Secret"
        }
        others[helm] = {name: doc for name, doc in documents.items() if doc["kind"] != "Secret"}
    assert keys["helm3"] == keys["helm"] and keys["helm"]
    assert others["helm3"] == others["helm"]


# --- release.yml and the packaged charts ------------------------------------------------------


def release_workflow() -> dict[str, Any]:
    return yaml.safe_load((WORKFLOWS / "release.yml").read_text())


def resolve(text: str, context: dict[str, str]) -> str:
    """``text`` with each ``${{ expression }}`` replaced by its value in ``context``."""

    def value(match: re.Match[str]) -> str:
        expression = match.group(1).strip()
        assert expression in context, f"release.yml uses ${{{{ {expression} }}}}: unknown to this test"
        return context[expression]

    return re.sub(r"\$\{\{(.*?)\}\}", value, text)


def matrix_values(expression: Any, context: dict[str, str]) -> list[str]:
    """A matrix axis: a list, or ``${{ fromJSON(<expression>) }}`` of a JSON list."""
    if isinstance(expression, list):
        return [str(item) for item in expression]
    found = re.fullmatch(r"\$\{\{\s*fromJSON\((.*)\)\s*\}\}", str(expression))
    assert found, f"a matrix axis the test cannot resolve: {expression}"
    listed = json.loads(context[found.group(1).strip()])
    assert isinstance(listed, list)
    return [str(item) for item in listed]


def services_job_outputs(workflow: dict[str, Any], tmp_path: Path) -> dict[str, str]:
    """The services job's outputs, from running its steps' scripts as the runner would (its
    ``pip install`` aside: the virtualenv's Python has PyYAML)."""
    job = workflow["jobs"]["services"]
    github = {"github.repository_owner": OWNER, "github.ref_name": TAG}
    steps: dict[str, str] = {}
    for step in job["steps"]:
        if "run" not in step:
            continue
        output = tmp_path / f"output-{step['id']}"
        output.write_text("")
        shim = f'python3() {{ [ "$1 $2" = "-m pip" ] && return 0; "{ROOT}/.venv/bin/python" "$@"; }}\n'
        env = {key: resolve(str(value), github) for key, value in (step.get("env") or {}).items()}
        ran = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", shim + step["run"]],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "GITHUB_OUTPUT": str(output), **env},
        )
        assert ran.returncode == 0, ran.stderr
        for line in output.read_text().splitlines():
            key, _, value = line.partition("=")
            steps[f"steps.{step['id']}.outputs.{key}"] = value
    return {
        f"needs.services.outputs.{name}": resolve(str(value), steps) for name, value in job["outputs"].items()
    }


def pushed_images(workflow: dict[str, Any], needs: dict[str, str]) -> dict[str, str]:
    """Every image reference the workflow pushes -> the Dockerfile it is built from."""
    pushed = {}
    for job in workflow["jobs"].values():
        axes = {
            f"matrix.{axis}": matrix_values(values, needs)
            for axis, values in (job.get("strategy") or {}).get("matrix", {}).items()
        }
        combinations: list[dict[str, str]] = [{}]
        for axis, values in axes.items():
            combinations = [{**combination, axis: value} for combination in combinations for value in values]
        for step in job["steps"]:
            if not str(step.get("uses", "")).startswith("docker/build-push-action@"):
                continue
            assert step["with"].get("push") is True, step
            for combination in combinations:
                context = {**needs, **combination}
                for tag in re.split(r"[,\n]", resolve(step["with"]["tags"], context)):
                    if tag.strip():
                        pushed[tag.strip()] = resolve(step["with"]["file"], context)
    return pushed


def charts_in(package: Path) -> dict[str, dict[str, Any]]:
    """The Chart.yaml of a packaged chart and of every chart packed inside it, by chart name."""
    found: dict[str, dict[str, Any]] = {}

    def read(archive: tarfile.TarFile) -> None:
        for member in archive.getmembers():
            parts = member.name.split("/")
            content = archive.extractfile(member) if member.isfile() else None
            if content is None:
                continue
            if parts[-1] == "Chart.yaml" and len(parts) == 2:
                chart = yaml.safe_load(content.read())
                found[chart["name"]] = chart
            elif parts[-1].endswith(".tgz") and parts[-2] == "charts":
                with tarfile.open(fileobj=io.BytesIO(content.read())) as inner:
                    read(inner)

    with tarfile.open(package) as archive:
        read(archive)
    return found


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The release of tag TAG: the outputs of the services job, the images the workflow pushes,
    and the charts ``scripts/release-charts.sh`` packages, run as the charts job runs it (its
    push left out)."""
    workflow = release_workflow()
    work = tmp_path_factory.mktemp("release")
    needs = services_job_outputs(workflow, work)
    (step,) = [
        s for s in workflow["jobs"]["charts"]["steps"] if "scripts/release-charts.sh" in s.get("run", "")
    ]
    (command,) = [line.strip() for line in step["run"].splitlines() if "scripts/release-charts.sh" in line]
    assert command == 'scripts/release-charts.sh "$REGISTRY" "$VERSION"'
    env = {key: resolve(str(value), needs) for key, value in step["env"].items()}
    dist = work / "dist"
    packaged = subprocess.run(
        [
            str(ROOT / "scripts" / "release-charts.sh"),
            env["REGISTRY"],
            env["VERSION"],
            "--no-push",
            "--dist",
            str(dist),
        ],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"},
    )
    assert packaged.returncode == 0, packaged.stdout + packaged.stderr
    packages: dict[str, Path] = {}
    for line in packaged.stdout.splitlines():
        if line.endswith(".tgz"):
            path = Path(line)
            (chart,) = [c for name, c in charts_in(path).items() if path.name.startswith(f"{name}-")]
            packages[chart["name"]] = path
    return {
        "needs": needs,
        "registry": env["REGISTRY"],
        "version": env["VERSION"],
        "pushed": pushed_images(workflow, needs),
        "packages": packages,
    }


def test_the_release_is_named_after_the_tag_and_the_owner(release: dict[str, Any]) -> None:
    assert release["registry"] == f"ghcr.io/{OWNER.lower()}" and release["version"] == TAG.removeprefix("v")
    assert json.loads(release["needs"]["needs.services.outputs.names"]) == names()


def test_the_release_pushes_each_listed_service_and_the_operator_from_its_dockerfile(
    release: dict[str, Any],
) -> None:
    registry, version = release["registry"], release["version"]
    expected = {f"{registry}/flotilla/{name}:{version}": "services/Dockerfile" for name in names()}
    expected[f"{registry}/flotilla/operator:{version}"] = "operator/Dockerfile"
    assert release["pushed"] == expected


def test_the_packaged_charts_and_their_subcharts_carry_the_release_version(release: dict[str, Any]) -> None:
    version = release["version"]
    assert set(release["packages"]) == {"flotilla", "flotilla-operator"}
    for package in release["packages"].values():
        for name, chart in charts_in(package).items():
            assert chart["version"] == version, f"{package.name}: {name}"
            if chart.get("type", "application") == "application":
                assert chart["appVersion"] == version, f"{package.name}: {name}"
            for dependency in chart.get("dependencies", []):
                assert dependency["version"] == version, f"{package.name}: {name} -> {dependency['name']}"


@pytest.mark.parametrize("helm", HELMS)
def test_the_packaged_umbrella_renders_exactly_the_pushed_images(release: dict[str, Any], helm: str) -> None:
    """By default, under either major: every image of the platform is one the release pushed,
    and every pushed image is used; the only others are third-party (PostgreSQL)."""
    registry = release["registry"]
    rendered = set(images(render(helm, release["packages"]["flotilla"], *MONITORING)))
    pushed = set(release["pushed"])
    assert pushed <= rendered, f"pushed but not rendered: {sorted(pushed - rendered)}"
    values = yaml.safe_load((CHARTS / "flotilla" / "values.yaml").read_text())
    assert rendered - pushed == {values["postgresql"]["image"]}
    assert not any(image.startswith(f"{registry}/") for image in rendered - pushed)


@pytest.mark.parametrize("helm", HELMS)
def test_the_packaged_operator_chart_renders_the_pushed_operator_image(
    release: dict[str, Any], helm: str
) -> None:
    rendered = set(images(render(helm, release["packages"]["flotilla-operator"])))
    assert rendered == {f"{release['registry']}/flotilla/operator:{release['version']}"}
    assert rendered <= set(release["pushed"])


def test_the_charts_job_logs_in_to_the_registry_then_runs_the_release_script_with_the_pinned_helm() -> None:
    steps = release_workflow()["jobs"]["charts"]["steps"]
    (setup,) = [s for s in steps if str(s.get("uses", "")).startswith("azure/setup-helm@")]
    assert setup["with"]["version"] == pins()["HELM_VERSION"]
    assert pins()["HELM_VERSION"].startswith("v4.")
    order = [
        index
        for marker in ("azure/setup-helm@", "helm registry login", "scripts/release-charts.sh")
        for index, step in enumerate(steps)
        if marker in str(step.get("uses", "")) + step.get("run", "")
    ]
    assert order == sorted(order) and len(order) == 3, order
    (login,) = [s for s in steps if "helm registry login" in s.get("run", "")]
    assert login["env"]["REGISTRY"] == "${{ needs.services.outputs.registry }}"
    # The host part of the registry output (ghcr.io of ghcr.io/<owner>).
    assert 'helm registry login "${REGISTRY%%/*}"' in login["run"]
