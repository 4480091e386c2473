"""k8s/ manifests and examples, skaffold.yaml and the GitHub workflows, checked by the real tools;
each takes the services from the one list (scripts/services.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

from scripts.services import names
from tests.cluster.test_charts import CHARTS
from tests.support.kube import BIN, FAKE_NODE_ANNOTATIONS, ROOT, tool

K8S = ROOT / "k8s"
EXAMPLES = K8S / "examples"
WORKFLOWS = ROOT / ".github" / "workflows"


@pytest.fixture(scope="module")
def flotilla_namespace(kube: ApiClient) -> Iterator[str]:
    """The namespace of k8s/namespace.yaml, applied for real under a name of its own (a live
    `make up` platform owns "flotilla"), on the fake nodes, and removed afterwards."""
    manifest = yaml.safe_load((K8S / "namespace.yaml").read_text())
    assert manifest["metadata"]["name"] == "flotilla"
    name = f"flotilla-{uuid.uuid4().hex[:8]}"
    manifest["metadata"]["name"] = name
    manifest["metadata"].setdefault("annotations", {}).update(FAKE_NODE_ANNOTATIONS)
    applied = tool("kubectl", "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(manifest))
    assert applied.returncode == 0, applied.stderr
    yield name
    try:
        client.CoreV1Api(kube).delete_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise


def test_the_namespace_enforces_the_restricted_standard(kube: ApiClient, flotilla_namespace: str) -> None:
    labels = client.CoreV1Api(kube).read_namespace(flotilla_namespace).metadata.labels
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_the_kind_config_maps_ingress_ports_to_a_labelled_node() -> None:
    config = yaml.safe_load((K8S / "kind-config.yaml").read_text())
    assert (config["apiVersion"], config["kind"]) == ("kind.x-k8s.io/v1alpha4", "Cluster")
    control_plane = next(node for node in config["nodes"] if node["role"] == "control-plane")
    assert {m["containerPort"]: m["hostPort"] for m in control_plane["extraPortMappings"]} == {
        80: 80,
        443: 443,
    }
    assert "ingress-ready=true" in control_plane["kubeadmConfigPatches"][0]


# The examples (k8s/examples/*): kustomizations applied with `kubectl apply -k DIR -n NAMESPACE`.


def kustomize(directory: Path) -> list[dict[str, Any]]:
    rendered = tool("kubectl", "kustomize", str(directory))
    assert rendered.returncode == 0, rendered.stderr
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


def overlay(tmp_path: Path, base: Path, extra: dict[str, Any]) -> Path:
    """A kustomization of a user's own over ``base`` (kustomize wants a relative path)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    kustomization = {"resources": [os.path.relpath(base, tmp_path)], **extra}
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return tmp_path


def of_kind(documents: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == kind}


def bootstrap_module() -> ModuleType:
    """k8s/examples/shop/bootstrap.py, the Job's script, imported as a module."""
    spec = importlib.util.spec_from_file_location("shop_bootstrap", EXAMPLES / "shop" / "bootstrap.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pod_specs(documents: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for doc in documents:
        if doc["kind"] in {"Deployment", "Job", "StatefulSet"}:
            yield doc["spec"]["template"]["spec"]


def test_the_examples_are_namespace_free_and_set_every_image_in_their_kustomization() -> None:
    for example in ("hello", "shop"):
        documents = kustomize(EXAMPLES / example)
        assert all("namespace" not in d["metadata"] for d in documents), example
        kustomization = yaml.safe_load((EXAMPLES / example / "kustomization.yaml").read_text())
        assert "namespace" not in kustomization
        listed = {f"{i['newName']}:{i['newTag']}" for i in kustomization["images"]}
        used = {m["spec"]["image"] for m in of_kind(documents, "Microservice").values()}
        used |= {c["image"] for spec in pod_specs(documents) for c in spec["containers"]}
        assert used == listed, example
    assert list(of_kind(kustomize(EXAMPLES / "hello"), "Microservice")) == ["hello"]


def test_one_overlay_points_every_shop_image_at_a_registry_and_gives_every_route_a_host(
    tmp_path: Path,
) -> None:
    shop = yaml.safe_load((EXAMPLES / "shop" / "kustomization.yaml").read_text())
    images = [
        {"name": i["name"], "newName": f"registry.example/acme/{i['name']}", "newTag": "9.9.9"}
        for i in shop["images"]
    ]
    host_patch = '[{"op": "add", "path": "/spec/ingress/host", "value": "shop.test"}]'
    documents = kustomize(
        overlay(
            tmp_path,
            EXAMPLES / "shop",
            {"images": images, "patches": [{"target": {"kind": "Microservice"}, "patch": host_patch}]},
        )
    )
    microservices = of_kind(documents, "Microservice")
    assert {n: m["spec"]["image"] for n, m in microservices.items()} == {
        n: f"registry.example/acme/flotilla/{n}:9.9.9" for n in ("users", "catalog", "orders")
    }
    assert {m["spec"]["ingress"]["host"] for m in microservices.values()} == {"shop.test"}
    containers = {c["name"]: c["image"] for spec in pod_specs(documents) for c in spec["containers"]}
    assert containers == {
        "bootstrap": "registry.example/acme/flotilla/users:9.9.9",
        "postgresql": "registry.example/acme/postgres:9.9.9",
    }


def test_the_shop_routes_migrates_and_isolates_its_database() -> None:
    documents = kustomize(EXAMPLES / "shop")
    microservices = of_kind(documents, "Microservice")
    assert set(microservices) == {"users", "catalog", "orders"}
    spec = {name: m["spec"] for name, m in microservices.items()}
    assert spec["users"]["ingress"]["paths"] == ["/users", "/auth", "/oauth", "/.well-known"]
    assert spec["catalog"]["ingress"]["paths"] == ["/products"]
    assert spec["orders"]["ingress"]["paths"] == ["/orders"]
    assert all("className" not in s["ingress"] and "host" not in s["ingress"] for s in spec.values())
    assert (spec["catalog"]["dependsOn"], spec["orders"]["dependsOn"]) == (["users"], ["users", "catalog"])
    assert all(s["migrate"] is True and s["disruptionBudget"] == {"minAvailable": 1} for s in spec.values())
    policy = of_kind(documents, "NetworkPolicy")["shop-postgresql"]["spec"]
    database = of_kind(documents, "Deployment")["shop-postgresql"]["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= database.items()
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"port": "postgresql", "protocol": "TCP"}]
    assert rule["from"] == [
        {
            "podSelector": {
                "matchExpressions": [
                    {
                        "key": "app.kubernetes.io/name",
                        "operator": "In",
                        "values": ["users", "catalog", "orders"],
                    }
                ]
            }
        }
    ]


def test_every_pod_of_the_shop_meets_the_restricted_standard_with_requests() -> None:
    for spec in pod_specs(kustomize(EXAMPLES / "shop")):
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert container["resources"]["requests"]


def test_the_shop_reads_only_secrets_and_keys_its_bootstrap_job_makes() -> None:
    bootstrap = bootstrap_module()
    made = {"shop-secrets": set(bootstrap.shop_secrets()), "shop-jwt-keys": set(bootstrap.jwt_keys())}
    documents = kustomize(EXAMPLES / "shop")
    text = yaml.safe_dump_all(documents)
    referenced = re.findall(r"secretKeyRef:\s+key: (\S+)\s+name: (\S+)", text)
    assert referenced, "no secretKeyRef found"
    for key, name in referenced:
        assert key in made.get(name, set()), (name, key)
    mounts = [
        mount for m in of_kind(documents, "Microservice").values() for mount in m["spec"]["secretMounts"]
    ]
    assert {mount["secretName"] for mount in mounts} == {"shop-secrets", "shop-jwt-keys"}
    for mount in mounts:
        for item in mount.get("items", []):
            assert item["key"] in made[mount["secretName"]], item
    # No Microservice takes a secret from its environment: files only.
    assert not any(
        "valueFrom" in entry
        for m in of_kind(documents, "Microservice").values()
        for entry in m["spec"].get("env", [])
    )
    (pem,) = bootstrap.jwt_keys().values()
    assert pem.startswith("-----BEGIN PRIVATE KEY-----")
    secrets = bootstrap.shop_secrets()
    assert secrets["orders-database-url"] == (
        f"postgresql://orders:{secrets['orders-db-password']}@shop-postgresql:5432/orders"
    )
    role = of_kind(documents, "Role")["shop-bootstrap"]
    assert {tuple(rule["verbs"]) for rule in role["rules"]} == {("create",), ("get",)}
    assert next(r for r in role["rules"] if r["verbs"] == ["get"])["resourceNames"] == sorted(
        made, reverse=True
    )


@pytest.mark.usefixtures("microservice_crd")
@pytest.mark.parametrize("example", ["hello", "shop"])
def test_the_examples_are_accepted_by_the_api_server(flotilla_namespace: str, example: str) -> None:
    checked = tool(
        "kubectl", "apply", "-k", str(EXAMPLES / example), "-n", flotilla_namespace, "--dry-run=server"
    )
    assert checked.returncode == 0, checked.stderr
    created = re.findall(r"^(\S+) created \(server dry run\)$", checked.stdout, flags=re.MULTILINE)
    assert len(created) == len(kustomize(EXAMPLES / example)), checked.stdout


# skaffold: one artifact per service of the list, all from services/Dockerfile.


def skaffold(*args: str, namespace: str | None = None) -> subprocess.CompletedProcess[str]:
    """The pinned skaffold, finding `helm` as make dev's does: the Helm 4 adapter first;
    ``namespace`` is the release's (FLOTILLA_NAMESPACE)."""
    return subprocess.run(
        [str(BIN / "skaffold"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={
            "PATH": f"{ROOT / 'scripts' / 'dev' / 'bin'}:{BIN}:/usr/bin:/bin",
            "HOME": str(Path.home()),
            "SKAFFOLD_UPDATE_CHECK": "false",
            **({"FLOTILLA_NAMESPACE": namespace} if namespace else {}),
        },
    )


def diagnosed(*profile: str) -> dict[str, Any]:
    result = skaffold("diagnose", "--yaml-only", *profile)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def test_skaffold_builds_exactly_the_listed_services_and_the_operator() -> None:
    for profile in ([], ["--profile", "kind"], ["--profile", "node"]):
        config = diagnosed(*profile)
        artifacts = config["build"]["artifacts"]
        node = profile == ["--profile", "node"]
        # The node pulls nothing from outside: its PostgreSQL image is built too.
        extra = ["flotilla/operator", "flotilla/postgresql"] if node else ["flotilla/operator"]
        assert [a["image"] for a in artifacts] == [f"flotilla/{n}" for n in names()] + extra
        for artifact, name in zip(artifacts, names(), strict=False):
            assert Path(artifact["context"]) == ROOT / "services"
            if node:
                assert artifact["custom"]["buildCommand"] == f'../scripts/images.sh artifact {name} "$IMAGE"'
                dockerfile = artifact["custom"]["dependencies"]["dockerfile"]
                assert dockerfile == {
                    "path": "Dockerfile",
                    "buildArgs": {"SERVICE": name, "PYTHON_IMAGE": "scratch"},
                }
                (rule,) = artifact["sync"]["manual"]
                assert rule == {
                    "src": f"{name}/src/flotilla_{name}/*.py",
                    "dest": "/srv/dev",
                    "strip": f"{name}/src/",
                }
                assert artifact["sync"]["hooks"]["after"][0]["container"]["command"][-1].endswith(
                    "kill -HUP 1\n"
                )
            else:
                assert artifact["docker"]["dockerfile"] == "Dockerfile"
                assert artifact["docker"]["buildArgs"] == {"SERVICE": name}
        if node:
            assert config["build"]["local"]["push"] is True
            for artifact in artifacts:
                name = artifact["image"].removeprefix("flotilla/")
                assert artifact["custom"]["buildCommand"].endswith(f'images.sh artifact {name} "$IMAGE"')
        forwarded = [(p["resourceName"], p["localPort"]) for p in config["portForward"]]
        assert forwarded == [(n, 8001 + i) for i, n in enumerate(names())]
        release = config["manifests"]["helm"]["releases"][0]
        assert not any(
            "mode" in key or ("image" in key and key != "postgresql.image")
            for key in release.get("setValues", {})
        )
        # No value per service: skaffold rewrites the Microservices' spec.image itself.
        assert release["setValueTemplates"] == {
            "global.imageTag": "{{.IMAGE_TAG_flotilla_operator}}",
            "operator.watchNamespace": '{{ or (index . "FLOTILLA_NAMESPACE") "flotilla" }}',
            "ingress.host": '{{ index . "FLOTILLA_INGRESS_HOST" }}',
        }
        assert config["resourceSelector"]["allow"] == [
            {"groupKind": "Microservice.flotilla.dev", "image": [".spec.image"]}
        ]
    kind = diagnosed("--profile", "kind")["manifests"]["helm"]["releases"][0]
    assert kind["valuesFiles"] == [str(ROOT / "scripts" / "kind" / "values.yaml")]  # as make deploy's
    assert "ingress.className" not in kind["setValues"]
    node_release = diagnosed("--profile", "node")["manifests"]["helm"]["releases"][0]
    assert "operator.ingressNamespace" not in node_release["setValues"]  # the chart's default: Traefik's
    assert node_release["setValues"]["postgresql.image"] == "flotilla/postgresql"
    assert node_release["valuesFiles"] == [str(ROOT / "scripts" / "dev" / "values.yaml")]
    assert skaffold("diagnose", "--yaml-only", "--profile", "operator").returncode != 0


def rendered(namespace: str, *args: str) -> list[dict[str, Any]]:
    result = skaffold(
        "render", "--offline=true", "--digest-source=tag", "--tag=test", *args, namespace=namespace
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def dry_run_server_side(documents: list[dict[str, Any]], namespace: str) -> None:
    applied = [d for d in documents if d["kind"] != "CustomResourceDefinition"]
    checked = tool("kubectl", "apply", "--dry-run=server", "-n", namespace, "-f", "-",
                   stdin=yaml.safe_dump_all(applied))  # fmt: skip
    assert checked.returncode == 0, checked.stderr


@pytest.mark.usefixtures("microservice_crd")
def test_skaffold_renders_the_umbrella_chart_offline_with_the_built_images(flotilla_namespace: str) -> None:
    tool("helm", "dependency", "build", str(CHARTS / "flotilla"))
    documents = rendered(flotilla_namespace, "--default-repo=")
    microservices = of_kind(documents, "Microservice")
    assert {n: m["spec"]["image"] for n, m in microservices.items()} == {
        n: f"flotilla/{n}:test" for n in names()
    }
    deployments = of_kind(documents, "Deployment")
    # Only the operator is a Deployment of the chart: the services' come from the operator.
    assert [
        c["image"] for d in deployments.values() for c in d["spec"]["template"]["spec"]["containers"]
    ] == ["flotilla/operator:test"]
    dry_run_server_side(documents, flotilla_namespace)


@pytest.mark.usefixtures("microservice_crd")
def test_skaffold_renders_the_node_profile_with_the_registry_images_and_the_sync_directory(
    flotilla_namespace: str,
) -> None:
    """As `make dev` deploys on the real node: every image from the node's registry (PostgreSQL's
    too), one pod per service, /srv/dev mounted and first on PYTHONPATH for the synced modules."""
    tool("helm", "dependency", "build", str(CHARTS / "flotilla"))
    documents = rendered(flotilla_namespace, "--profile=node", "--default-repo=localhost:5000")
    # skaffold's --default-repo for a registry without nested repositories: flotilla/N -> flotilla_N.
    registry = "localhost:5000/flotilla_"
    microservices = of_kind(documents, "Microservice")
    assert {n: m["spec"]["image"] for n, m in microservices.items()} == {
        n: f"{registry}{n}:test" for n in names()
    }
    for microservice in microservices.values():
        spec = microservice["spec"]
        assert spec["replicas"] == 1
        assert {"name": "PYTHONPATH", "value": "/srv/dev"} in spec["env"]
        assert {"name": "dev-sync", "mountPath": "/srv/dev"} in spec["volumeMounts"]
        assert {"name": "dev-sync", "emptyDir": {"sizeLimit": "64Mi"}} in spec["volumes"]
    containers = [
        c for kind in ("Deployment", "StatefulSet") for d in of_kind(documents, kind).values()
        for c in d["spec"]["template"]["spec"]["containers"]
    ]  # fmt: skip
    assert {c["image"] for c in containers} == {f"{registry}operator:test", f"{registry}postgresql:test"}
    operator_env = {
        e["name"]: e.get("value")
        for d in of_kind(documents, "Deployment").values()
        for e in d["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert operator_env["WATCH_NAMESPACE"] == flotilla_namespace  # FLOTILLA_NAMESPACE
    assert operator_env["FLOTILLA_INGRESS_NAMESPACE"] == "traefik"
    dry_run_server_side(documents, flotilla_namespace)


def test_the_skaffold_helm_adapter_speaks_helm_4_for_skaffold(tmp_path: Path) -> None:
    """scripts/dev/bin/helm: `version --client` answers, and `--post-renderer EXECUTABLE` runs
    EXECUTABLE through the committed postrenderer plugin (Helm 4 takes only plugin names)."""
    adapter = ROOT / "scripts" / "dev" / "bin" / "helm"
    env = {"PATH": f"{adapter.parent}:{BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "KUBECONFIG": "/dev/null"}
    version = subprocess.run([str(adapter), "version", "--client"], capture_output=True, text=True,
                             env=env, check=False)  # fmt: skip
    assert version.returncode == 0, version.stderr
    assert re.search(r"v4\.\d+\.\d+", version.stdout), version.stdout
    tool("helm", "dependency", "build", str(CHARTS / "flotilla-operator"))
    renderer = tmp_path / "renderer"
    renderer.write_text("#!/bin/sh\nsed 's/flotilla\\/operator:/rewritten\\/operator:/'\n")
    renderer.chmod(0o755)
    templated = subprocess.run(
        [str(adapter), "template", "t", str(CHARTS / "flotilla-operator"), "--post-renderer", str(renderer)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert templated.returncode == 0, templated.stderr
    assert "image: rewritten/operator:" in templated.stdout


# The workflows: actionlint, and the release takes its images from the list.


def test_the_github_workflows_pass_actionlint() -> None:
    linted = subprocess.run(
        [str(BIN / "actionlint"), "-format", "{{json .}}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert json.loads(linted.stdout or "[]") == []


def test_the_release_builds_an_image_per_listed_service_with_the_one_dockerfile() -> None:
    release = yaml.safe_load((WORKFLOWS / "release.yml").read_text())
    jobs = release["jobs"]
    listing = "\n".join(step.get("run", "") for step in jobs["services"]["steps"])
    assert "python3 scripts/services.py names --json" in listing
    assert jobs["images"]["strategy"]["matrix"]["service"] == "${{ fromJSON(needs.services.outputs.names) }}"
    (build,) = [s for s in jobs["images"]["steps"] if str(s.get("uses", "")).startswith("docker/build-push")]
    assert (build["with"]["context"], build["with"]["file"]) == ("services", "services/Dockerfile")
    assert "SERVICE=${{ matrix.service }}" in build["with"]["build-args"]
    registry = "${{ needs.services.outputs.registry }}"
    version = "${{ needs.services.outputs.version }}"
    assert build["with"]["tags"] == f"{registry}/flotilla/${{{{ matrix.service }}}}:{version}"
    # The charts are packaged and pushed by the script `make release-local` runs too.
    packaging = "\n".join(step.get("run", "") for step in jobs["charts"]["steps"])
    assert 'scripts/release-charts.sh "$REGISTRY" "$VERSION"' in packaging


def test_no_script_makefile_or_workflow_names_a_service() -> None:
    """The list is charts/flotilla/values.yaml's: these files read it (the shop's example flow,
    scripts/demo-flow.sh, and make up's demo seeding are the shop's own, not the list)."""
    files = [ROOT / "Makefile", *WORKFLOWS.glob("*.yml"), *(ROOT / "scripts").glob("*.sh")]
    files.remove(ROOT / "scripts" / "demo-flow.sh")
    pattern = re.compile(r"\b(users|catalog|orders)\b")
    for path in files:
        text = path.read_text()
        if path.name == "up.sh":
            text = re.sub(r".*(seed-demo|_URL=\$INGRESS).*", "", text)
        assert not pattern.search(text), f"{path.relative_to(ROOT)}: {pattern.search(text)}"
