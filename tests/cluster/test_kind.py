"""The kind path for users with Docker (`make kind-up`, `make deploy` on kind), checked without
Docker: kind's own code on k8s/kind-config.yaml, the Traefik it installs rendered and accepted by
the real API server, skaffold's kind profile rendered by skaffold, and the scripts' commands.

What needs a Docker engine (creating the nodes, pulling images, the pods running) is not run
here: .github/workflows/e2e-kind.yml runs it on GitHub's runners. Where a test needs ``docker``,
``kind``, ``kubectl`` or ``helm`` to answer without a cluster, a recording stand-in (STUB below)
answers and logs the command line; the real kind binary talks to it as it would to Docker."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

from scripts.services import names
from tests.cluster.test_compat import MONITORING, images, pins
from tests.support.kube import BIN, ROOT, tool

KIND_CONFIG = ROOT / "k8s" / "kind-config.yaml"
KIND_SCRIPTS = ROOT / "scripts" / "kind"
TRAEFIK_ADDON = ROOT / "scripts" / "cluster" / "addons" / "traefik.yaml"
WORKFLOW = ROOT / ".github" / "workflows" / "e2e-kind.yml"

# A stand-in for docker, kind, kubectl and helm (by the name it is called as): it logs each call
# as a JSON line to $STUB_LOG (with its stdin for `-f -`), answers what kind asks Docker before
# creating a node, fails `docker run` as an engine-less machine would, and hands `kubectl
# kustomize` and `helm template` (no cluster needed) to the real tools in $STUB_REAL.
STUB = r"""#!/usr/bin/env python3
import json, os, sys
tool, args = os.path.basename(sys.argv[0]), sys.argv[1:]
entry = {"tool": tool, "args": args}
if args[-2:] == ["-f", "-"]:
    entry["stdin"] = sys.stdin.read()
with open(os.environ["STUB_LOG"], "a") as log:
    log.write(json.dumps(entry) + "\n")
real = os.path.join(os.environ.get("STUB_REAL", "/nonexistent"), tool)
if (tool, args[:1]) in [("kubectl", ["kustomize"]), ("helm", ["template"])]:
    os.execv(real, [real, *args])
if tool == "docker" and args[:1] == ["info"]:
    print(json.dumps({"CgroupDriver": "systemd", "CgroupVersion": "2", "MemoryLimit": True,
                      "PidsLimit": True, "CPUShares": True, "SecurityOptions": ["name=seccomp"]}))
elif tool == "docker" and args[:1] == ["run"]:
    sys.exit("stub: no Docker engine on this machine")
elif tool == "kind" and args[:1] == ["version"]:
    print(f"kind {os.environ['STUB_KIND_VERSION']} go linux/amd64")
elif tool == "kind" and args[:2] == ["get", "clusters"]:
    print(os.environ.get("STUB_KIND_CLUSTERS", ""))
"""


class Stubs:
    """A directory of stand-ins, first on PATH, and the calls they logged."""

    def __init__(self, directory: Path, tools: list[str]) -> None:
        self.bin = directory / "bin"
        self.bin.mkdir(parents=True)
        self.log = directory / "calls.jsonl"
        self.log.write_text("")
        (directory / "stub").write_text(STUB)
        (directory / "stub").chmod(0o755)
        for name in tools:
            (self.bin / name).symlink_to(directory / "stub")
        self.home = directory / "home"
        self.home.mkdir()

    def run(self, command: list[str], *, path: str = "", **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env={
                "PATH": f"{self.bin}:{path or '/usr/bin:/bin'}",
                "HOME": str(self.home),
                "STUB_LOG": str(self.log),
                "STUB_REAL": str(BIN),
                "STUB_KIND_VERSION": pins().get("KIND_VERSION", ""),
                **env,
            },
        )

    def calls(self, tool: str | None = None) -> list[dict[str, Any]]:
        logged = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [call for call in logged if tool is None or call["tool"] == tool]


def kind_binary() -> Path:
    kind = BIN / "kind"
    assert kind.is_file(), f"no {kind}: scripts/cluster/build.sh builds kind ({pins().get('KIND_VERSION')})"
    return kind


def build_dependencies() -> None:
    """The charts' dependencies, as `make deploy` builds them (the umbrella packs the operator's)."""
    for chart in ("flotilla-operator", "flotilla"):
        built = tool("helm", "dependency", "build", str(ROOT / "charts" / chart))
        assert built.returncode == 0, built.stderr


def kind_config() -> dict[str, Any]:
    return yaml.safe_load(KIND_CONFIG.read_text())


def control_plane_ports() -> dict[int, int]:
    (node,) = [n for n in kind_config()["nodes"] if n["role"] == "control-plane"]
    return {m["hostPort"]: m["containerPort"] for m in node["extraPortMappings"]}


# --- kind's own code on k8s/kind-config.yaml --------------------------------------------------


def test_the_pinned_kind_is_the_one_built() -> None:
    version = subprocess.run([str(kind_binary()), "version"], capture_output=True, text=True, check=True)
    assert version.stdout.split()[:2] == ["kind", pins()["KIND_VERSION"]]


def test_kind_create_loads_validates_and_plans_the_nodes_failing_only_at_docker_run(tmp_path: Path) -> None:
    """The real `kind create cluster --config`, with a stand-in Docker: kind decodes the config
    strictly, defaults and validates it, pulls nothing (the node image is "there") and gets as far
    as `docker run` of each node, where an engine-less machine stops."""
    stubs = Stubs(tmp_path, ["docker"])
    created = stubs.run([str(kind_binary()), "create", "cluster", "--config", str(KIND_CONFIG)])
    assert created.returncode != 0
    assert "stub: no Docker engine on this machine" in created.stderr, created.stderr
    runs = {call["args"][2]: call["args"] for call in stubs.calls("docker") if call["args"][0] == "run"}
    name = kind_config()["name"]
    assert set(runs) == {f"{name}-control-plane", f"{name}-worker"}
    control_plane = runs[f"{name}-control-plane"]
    published = {a for a in control_plane if a.startswith("--publish=0.0.0.0:")}
    assert published == {f"--publish=0.0.0.0:{h}:{c}/TCP" for h, c in control_plane_ports().items()}
    assert not [a for a in runs[f"{name}-worker"] if a.startswith("--publish=0.0.0.0:")]
    # The node image kind v0.33 pins runs the Kubernetes minor the local control plane runs.
    image = control_plane[-1]
    assert image.startswith("kindest/node:") and "@sha256:" in image
    kube_minor = pins()["KUBERNETES_VERSION"].rsplit(".", 1)[0]
    assert image.split(":")[1].startswith(f"{kube_minor}."), image


def test_kind_rejects_a_bad_config_before_any_node(tmp_path: Path) -> None:
    """The two checks above are kind's: an unknown field fails decoding, an impossible port fails
    validation, and neither reaches `docker run`."""
    config = kind_config()
    unknown = {**config, "nodez": []}
    bad_port = json.loads(json.dumps(config))
    bad_port["nodes"][0]["extraPortMappings"][0]["hostPort"] = 70000
    for case, expected in ((unknown, "field nodez not found"), (bad_port, "invalid port number: 70000")):
        stubs = Stubs(tmp_path / uuid.uuid4().hex[:6], ["docker"])
        path = stubs.home / "kind-config.yaml"
        path.write_text(yaml.safe_dump(case))
        created = stubs.run([str(kind_binary()), "create", "cluster", "--config", str(path)])
        assert created.returncode != 0 and expected in created.stderr, created.stderr
        assert not [call for call in stubs.calls("docker") if call["args"][0] == "run"]


@pytest.fixture(scope="module")
def kindcheck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scripts/kind/kindcheck built inside a copy of the pinned kind module (its packages are
    internal to the module)."""
    work = tmp_path_factory.mktemp("kindcheck")
    env = {**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    module = pins()["KIND_VERSION"]

    def go(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["go", *args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False, env=env
        )

    downloaded = go("mod", "download", "-json", f"sigs.k8s.io/kind@{module}", cwd=work)
    assert downloaded.returncode == 0, downloaded.stderr
    source = work / "kind"
    shutil.copytree(json.loads(downloaded.stdout)["Dir"], source)
    for path in [source, *source.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
    (source / "pkg" / "cluster" / "kindcheck").mkdir()
    shutil.copy(KIND_SCRIPTS / "kindcheck" / "main.go", source / "pkg" / "cluster" / "kindcheck" / "main.go")
    built = go("build", "-o", str(work / "kindcheck"), "./pkg/cluster/kindcheck", cwd=source)
    assert built.returncode == 0, built.stderr
    return work / "kindcheck"


def test_the_control_plane_gets_the_ingress_ready_label_from_the_kubeadm_patch(kindcheck: Path) -> None:
    """kind's loader, validation and kubeadm config with the config's patches applied (what its
    config action writes to each node): the label Traefik's nodeSelector needs is the control
    plane's only, in kubeadm v1beta4's list form."""
    checked = subprocess.run([str(kindcheck), str(KIND_CONFIG)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    nodes = {node["role"]: node for node in json.loads(checked.stdout)}
    assert set(nodes) == {"control-plane", "worker"}

    def kubelet_args(role: str, kind: str) -> dict[str, str]:
        documents = {d["kind"]: d for d in yaml.safe_load_all(nodes[role]["kubeadm"])}
        assert documents["ClusterConfiguration"]["apiVersion"] == "kubeadm.k8s.io/v1beta4"
        extra = documents[kind]["nodeRegistration"]["kubeletExtraArgs"]
        return {arg["name"]: arg["value"] for arg in extra}

    assert kubelet_args("control-plane", "InitConfiguration")["node-labels"] == "ingress-ready=true"
    assert "ingress-ready" not in kubelet_args("worker", "JoinConfiguration").get("node-labels", "")
    mappings = nodes["control-plane"]["extraPortMappings"]
    assert {m["HostPort"]: m["ContainerPort"] for m in mappings} == control_plane_ports()


def test_kindcheck_reports_kinds_validation_errors(kindcheck: Path, tmp_path: Path) -> None:
    config = kind_config()
    config["nodes"][1]["role"] = "leader"
    path = tmp_path / "kind-config.yaml"
    path.write_text(yaml.safe_dump(config))
    checked = subprocess.run([str(kindcheck), str(path)], capture_output=True, text=True, check=False)
    assert checked.returncode == 1 and '"leader" is not a valid node role' in checked.stderr


# --- Traefik on kind: the local node's manifest, with the pod network ------------------------


def render_traefik_for_kind() -> list[dict[str, Any]]:
    rendered = subprocess.run(
        [str(KIND_SCRIPTS / "traefik.sh")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"},
    )
    assert rendered.returncode == 0, rendered.stderr
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


def node_traefik() -> list[dict[str, Any]]:
    """The node's manifest, its placeholders filled as any cluster would."""
    text = re.sub(r"@[A-Z_]+@", "0", TRAEFIK_ADDON.read_text().replace("@TRAEFIK_IMAGE@", "traefik"))
    return [doc for doc in yaml.safe_load_all(text) if doc]


def by_kind(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in documents}


def test_traefik_on_kind_is_the_nodes_manifest_in_the_pod_network_on_the_ingress_node() -> None:
    kind, node = by_kind(render_traefik_for_kind()), by_kind(node_traefik())
    assert set(kind) == set(node)
    for name in set(kind) - {"Deployment/traefik"}:
        assert kind[name] == node[name], name
    assert kind["IngressClass/traefik"]["metadata"]["annotations"] == {
        "ingressclass.kubernetes.io/is-default-class": "true"
    }
    pod = kind["Deployment/traefik"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == f"docker.io/traefik:{pins()['TRAEFIK_VERSION']}"
    assert pod["hostNetwork"] is False and pod["dnsPolicy"] == "ClusterFirst"
    # On the node k8s/kind-config.yaml labels (and maps the host's ports to), despite its taint.
    assert pod["nodeSelector"] == {"ingress-ready": "true"}
    assert {
        "key": "node-role.kubernetes.io/control-plane",
        "operator": "Exists",
        "effect": "NoSchedule",
    } in pod["tolerations"]
    listening = {}
    for arg in container["args"]:
        found = re.fullmatch(r"--entryPoints\.(\w+)\.address=(.*):(\d+)", arg)
        if found:
            assert found.group(2) == "", f"{arg}: kind's hostPort reaches the pod's address, not loopback"
            listening[int(found.group(3))] = found.group(1)
    host_ports = {p["hostPort"]: p["containerPort"] for p in container["ports"] if "hostPort" in p}
    # The pod takes on the node the ports kind maps the host's to.
    assert set(host_ports) == set(control_plane_ports().values())
    assert {host: listening.get(port) for host, port in host_ports.items()} == {80: "web", 443: "websecure"}
    for probe in ("readinessProbe", "livenessProbe"):
        check = container[probe]["httpGet"]
        assert "host" not in check and listening[check["port"]] == "traefik"
    # The rest of the container is the node's: security context, resources, the other flags.
    node_container = node["Deployment/traefik"]["spec"]["template"]["spec"]["containers"][0]
    for key in ("securityContext", "resources", "volumeMounts"):
        assert container[key] == node_container[key], key
    unchanged = [a for a in node_container["args"] if "address=" not in a]
    assert unchanged == [a for a in container["args"] if a in unchanged]


def test_the_kind_overlay_fails_when_the_nodes_arguments_move(tmp_path: Path) -> None:
    """Its replacements are guarded: reordered arguments fail the render, naming the argument."""
    addon = TRAEFIK_ADDON.read_text()
    web = re.search(
        r"^( +- --entryPoints\.web\.address=.*)\n( +- --entryPoints\.traefik\.address=.*)$", addon, re.M
    )
    assert web, "the node's manifest lists the web then the traefik entry point first"
    swapped = addon.replace(web.group(0), f"{web.group(2)}\n{web.group(1)}")
    text = swapped.replace("@TRAEFIK_IMAGE@", "traefik").replace("@INGRESS_PORT@", "8000")
    for path in (KIND_SCRIPTS / "traefik").glob("*.yaml"):
        shutil.copy(path, tmp_path)
    (tmp_path / "traefik.yaml").write_text(text)
    rendered = tool("kubectl", "kustomize", str(tmp_path))
    assert rendered.returncode != 0
    assert "testing value /spec/template/spec/containers/0/args/0 failed" in rendered.stderr


def test_traefik_serves_the_kind_entry_points_with_its_flags(tmp_path: Path) -> None:
    """The kind pod's flags, run by the same Traefik release (the node's build) in a network
    namespace of its own: /ping answers where the probes look, the web entry point answers HTTP
    and the websecure one HTTPS, on the ports the pod's hostPorts lead to (no route: 404)."""
    traefik = BIN / "traefik"
    assert traefik.is_file(), (
        f"no {traefik}: scripts/cluster/build.sh --node (make node-up, make test) builds it"
    )
    (deployment,) = [d for d in render_traefik_for_kind() if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ping", "port": ports["traefik"]}
    log = tmp_path / "traefik.log"
    script = f"""
ip link set lo up
{shlex.join([str(traefik), *container["args"]])} > {log} 2>&1 &
trap 'kill $!' EXIT
ping=http://127.0.0.1:{ports["traefik"]}/ping
for _ in $(seq 200); do curl -fs -o /dev/null "$ping" && break; sleep 0.05; done
curl -s -o /dev/null -w '%{{http_code}}\\n' "$ping"
curl -s -o /dev/null -w '%{{http_code}} %{{scheme}}\\n' http://127.0.0.1:{ports["web"]}/
curl -sk -o /dev/null -w '%{{http_code}} %{{scheme}}\\n' https://127.0.0.1:{ports["websecure"]}/
"""
    served = subprocess.run(
        ["unshare", "--net", "bash", "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert served.returncode == 0, served.stderr
    assert served.stdout.split("\n")[:3] == ["200", "404 HTTP", "404 HTTPS"], served.stdout + log.read_text()


@pytest.fixture
def renamed_traefik_namespace(kube: ApiClient) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Traefik for kind moved to a namespace of its own (a live node may run the real one in
    "traefik"), that namespace created for real, and removed afterwards."""
    name = f"traefik-{uuid.uuid4().hex[:8]}"
    text = yaml.safe_dump_all(render_traefik_for_kind())
    documents = [
        d for d in yaml.safe_load_all(re.sub(r"\bnamespace: traefik\b", f"namespace: {name}", text)) if d
    ]
    core = client.CoreV1Api(kube)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name, [d for d in documents if d["kind"] != "Namespace"]
    finally:
        try:
            core.delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


def test_traefik_on_kind_is_accepted_by_the_api_server(
    renamed_traefik_namespace: tuple[str, list[dict[str, Any]]],
) -> None:
    namespace, documents = renamed_traefik_namespace
    assert {
        d["metadata"].get("namespace") for d in documents if d["kind"] in {"Deployment", "ServiceAccount"}
    } == {namespace}
    checked = tool("kubectl", "apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(documents))
    assert checked.returncode == 0, checked.stderr
    assert len(re.findall(r"\(server dry run\)$", checked.stdout, re.M)) == len(documents), checked.stdout


# --- Flotilla's values on kind, and kube-prometheus-stack's ----------------------------------


def cluster_setting(name: str) -> str:
    """A setting of scripts/cluster/versions.env or lib.sh (NAME=value)."""
    for source in ("versions.env", "lib.sh"):
        found = re.search(rf"^{name}=(\S+)$", (ROOT / "scripts" / "cluster" / source).read_text(), re.M)
        if found:
            return found.group(1)
    raise AssertionError(f"scripts/cluster sets no {name}")


def up_setting(name: str) -> str:
    found = re.search(rf"^{name}=(\S+)$", (KIND_SCRIPTS / "up.sh").read_text(), re.M)
    assert found, f"scripts/kind/up.sh sets no {name}"
    return found.group(1)


def test_the_kind_values_admit_kinds_traefik_and_label_for_kube_prometheus_stack() -> None:
    """scripts/kind/values.yaml: routed services admit the namespace Traefik runs in on kind, and
    every ServiceMonitor and the PrometheusRule carry the release label kube-prometheus-stack
    (release MONITORING_RELEASE of up.sh) selects on; dashboards carry its Grafana's label."""
    build_dependencies()
    rendered = tool(
        "helm",
        "template",
        "fl",
        str(ROOT / "charts" / "flotilla"),
        "-f",
        str(KIND_SCRIPTS / "values.yaml"),
        *MONITORING,
    )
    assert rendered.returncode == 0, rendered.stderr
    documents = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    (traefik_namespace,) = [
        d["metadata"]["name"] for d in render_traefik_for_kind() if d["kind"] == "Namespace"
    ]
    (operator,) = [d for d in documents if d["kind"] == "Deployment"]
    env = {e["name"]: e.get("value") for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FLOTILLA_INGRESS_NAMESPACE"] == traefik_namespace
    assert env["FLOTILLA_PROMETHEUS_NAMESPACE"] == up_setting("MONITORING_NAMESPACE")
    release = {"release": up_setting("MONITORING_RELEASE")}
    labelled = [d for d in documents if d["kind"] in {"ServiceMonitor", "PrometheusRule"}]
    assert {d["kind"] for d in labelled} == {"ServiceMonitor", "PrometheusRule"}
    assert all(release.items() <= d["metadata"]["labels"].items() for d in labelled)
    microservices = [d for d in documents if d["kind"] == "Microservice"]
    assert len(microservices) == len(names())
    assert all(release.items() <= d["spec"]["metrics"]["labels"].items() for d in microservices)
    sidecar = yaml.safe_load((KIND_SCRIPTS / "monitoring-values.yaml").read_text())["grafana"]["sidecar"][
        "dashboards"
    ]
    dashboards = [d for d in documents if d["kind"] == "ConfigMap" and "dashboard" in d["metadata"]["name"]]
    assert dashboards and all(
        d["metadata"]["labels"][sidecar["label"]] == sidecar["labelValue"] for d in dashboards
    )
    assert sidecar["searchNamespace"] == "ALL"


# --- skaffold's kind profile ------------------------------------------------------------------


def skaffold(*args: str, path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "skaffold"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"PATH": path, "HOME": str(Path.home()), "SKAFFOLD_UPDATE_CHECK": "false"},
    )


def test_skaffolds_kind_profile_follows_the_kind_cluster(tmp_path: Path) -> None:
    """`skaffold diagnose -p kind`: activated by the context kind names after the cluster of
    k8s/kind-config.yaml, and rendering (`skaffold render -p kind --offline`, with Helm 3, which
    skaffold v2.16.1 drives as it is) the kind values: Traefik's namespace admitted, the release
    label for kube-prometheus-stack."""
    diagnosed = skaffold("diagnose", "--yaml-only", "--profile", "kind", path=f"{BIN}:/usr/bin:/bin")
    assert diagnosed.returncode == 0, diagnosed.stderr
    raw = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    (profile,) = [p for p in raw["profiles"] if p["name"] == "kind"]
    assert {"kubeContext": f"kind-{kind_config()['name']}"} in profile["activation"]
    helm3 = tmp_path / "bin"
    helm3.mkdir()
    (helm3 / "helm").symlink_to(BIN / "helm3")
    rendered = skaffold(
        "render",
        "--profile",
        "kind",
        "--offline=true",
        "--digest-source=tag",
        "--default-repo=",
        "--tag=test",
        path=f"{helm3}:{BIN}:/usr/bin:/bin",
    )
    assert rendered.returncode == 0, rendered.stderr
    documents = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    (operator,) = [d for d in documents if d["kind"] == "Deployment"]
    env = {e["name"]: e.get("value") for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FLOTILLA_INGRESS_NAMESPACE"] == "traefik"
    assert set(images(operator)) == {"flotilla/operator:test"}
    microservices = [d for d in documents if d["kind"] == "Microservice"]
    assert {d["spec"]["image"] for d in microservices} == {f"flotilla/{n}:test" for n in names()}
    release = {"release": up_setting("MONITORING_RELEASE")}
    assert all(release.items() <= d["spec"]["metrics"]["labels"].items() for d in microservices)


# --- the scripts' commands, with stand-ins for Docker, kind, kubectl and helm -----------------


def test_kind_up_says_plainly_when_there_is_no_docker_engine(tmp_path: Path) -> None:
    """Here `docker` is either missing or has no engine to talk to: either way kind-up stops
    first, naming Docker and what to run instead."""
    up = subprocess.run(
        [str(KIND_SCRIPTS / "up.sh")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "DOCKER_HOST": f"unix://{tmp_path}/no.sock"},
    )
    assert up.returncode == 1
    assert "Docker" in up.stderr and "make cluster-up" in up.stderr, up.stderr


def test_kind_up_creates_the_cluster_then_applies_the_namespace_traefik_and_monitoring(
    tmp_path: Path,
) -> None:
    stubs = Stubs(tmp_path, ["docker", "kind", "kubectl", "helm"])
    up = stubs.run([str(KIND_SCRIPTS / "up.sh"), "--monitoring"])
    assert up.returncode == 0, up.stdout + up.stderr
    context = f"kind-{kind_config()['name']}"
    calls = [(c["tool"], c["args"]) for c in stubs.calls() if c["tool"] in {"kind", "kubectl", "helm"}]
    steps = [
        (tool_name, args)
        for tool_name, args in calls
        if args[:1] in (["create"], ["upgrade"]) or "apply" in args or "rollout" in args
    ]
    assert [s[0] for s in steps] == ["kind", "kubectl", "kubectl", "kubectl", "kubectl", "helm"], steps
    assert steps[0][1] == ["create", "cluster", "--config", str(KIND_CONFIG), "--wait", "3m"]
    applies = [c for c in stubs.calls("kubectl") if "apply" in c["args"]]
    assert all(c["args"][:2] == ["--context", context] for c in applies)
    assert str(ROOT / "k8s" / "namespace.yaml") in applies[0]["args"]
    # Traefik's CRDs of the pinned release (the file the node applies from the same module).
    crds = applies[1]["args"][applies[1]["args"].index("-f") + 1]
    version, path = cluster_setting("TRAEFIK_VERSION"), cluster_setting("TRAEFIK_CRDS")
    assert crds == f"https://raw.githubusercontent.com/traefik/traefik/{version}/{path}"
    assert [d for d in yaml.safe_load_all(applies[2]["stdin"]) if d] == render_traefik_for_kind()
    helm = steps[-1][1]
    assert helm[:4] == [
        "upgrade",
        "--install",
        up_setting("MONITORING_RELEASE"),
        up_setting("MONITORING_CHART"),
    ]
    assert {"--kube-context", context} <= set(helm) and str(KIND_SCRIPTS / "monitoring-values.yaml") in helm
    assert helm[helm.index("--namespace") + 1] == up_setting("MONITORING_NAMESPACE")
    # Run again on a cluster that exists: reused; and without --monitoring, no kube-prometheus-stack.
    stubs.log.write_text("")
    again = stubs.run([str(KIND_SCRIPTS / "up.sh")], STUB_KIND_CLUSTERS=kind_config()["name"])
    assert again.returncode == 0, again.stderr
    assert not [c for c in stubs.calls("kind") if c["args"][:1] == ["create"]]
    assert not [c for c in stubs.calls("helm") if c["args"][:1] == ["upgrade"]]


def test_load_images_builds_every_image_the_chart_renders_and_loads_them_into_kind(tmp_path: Path) -> None:
    build_dependencies()
    rendered = tool("helm", "template", "flotilla", str(ROOT / "charts" / "flotilla"))
    assert rendered.returncode == 0, rendered.stderr
    chart_images = {
        i for d in yaml.safe_load_all(rendered.stdout) if d for i in images(d) if i.startswith("flotilla/")
    }
    stubs = Stubs(tmp_path, ["docker", "kind", "helm"])
    loaded = stubs.run([str(KIND_SCRIPTS / "load-images.sh")], STUB_KIND_CLUSTERS=kind_config()["name"])
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    builds = {}
    for call in stubs.calls("docker"):
        if call["args"][0] == "build":
            args = call["args"]
            build_args = [args[i + 1] for i, a in enumerate(args) if a == "--build-arg"]
            builds[args[args.index("-t") + 1]] = (args[args.index("-f") + 1], args[-1], build_args)
    expected = {
        f"flotilla/{n}:{i.split(':')[1]}": (
            str(ROOT / "services" / "Dockerfile"),
            str(ROOT / "services"),
            [f"SERVICE={n}"],
        )
        for i in chart_images
        for n in names()
        if i.startswith(f"flotilla/{n}:")
    }
    (operator,) = [i for i in chart_images if i.startswith("flotilla/operator:")]
    expected[operator] = (str(ROOT / "operator" / "Dockerfile"), str(ROOT / "operator"), [])
    assert builds == expected
    (load,) = [c["args"] for c in stubs.calls("kind") if c["args"][:1] == ["load"]]
    assert load[:4] == ["load", "docker-image", "--name", kind_config()["name"]]
    assert sorted(load[4:]) == sorted(chart_images)


# --- the workflow ---------------------------------------------------------------------------------


def test_the_kind_workflow_runs_make_kind_up_with_the_pinned_versions() -> None:
    """Helm 4 for `make deploy`, Helm 3 under skaffold v2.16.1 (which cannot drive Helm 4)."""
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    versions = pins()
    helm = {"deploy": versions["HELM_VERSION"], "skaffold": versions["HELM3_VERSION"]}
    assert set(jobs) == set(helm)
    for name, job in jobs.items():
        steps = job["steps"]
        uses = {str(s.get("uses", "")).split("@")[0]: s.get("with", {}) for s in steps}
        assert uses["helm/kind-action"] == {"version": versions["KIND_VERSION"], "install_only": True}
        assert uses["azure/setup-helm"] == {"version": helm[name]}
        runs = [s.get("run", "") for s in steps]
        assert "make kind-up" in runs and "helm test flotilla --namespace flotilla --logs" in runs
    assert "make deploy" in [s.get("run") for s in jobs["deploy"]["steps"]]
    install = "\n".join(s.get("run", "") for s in jobs["skaffold"]["steps"])
    assert f"/skaffold/releases/{versions['SKAFFOLD_VERSION']}/" in install
