"""NetworkPolicies enforced on the real node, with real TCP connections.

kube-router's policy controller (started by scripts/cluster/node-up.sh) turns the platform's
NetworkPolicies into iptables rules and ipsets. Probe pods run the platform's own image (users',
which has Python) under the restricted Pod Security settings. Each one carries a service's
selector labels to act as that caller, or no service's labels at all, and connects with a
timeout to pod IPs and Service names; the services' own pods connect out under their egress
rules. Every denial has a control: in the same pass, a caller the policies admit reaches the same
address and port. Every connection is recorded in the reliability summary and printed as one
table, also written to .run/network-policy-connections.md.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, NamedTuple
from urllib.parse import urlparse

import pytest
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

from tests.support.cases import Case
from tests.support.kube import ROOT, temporary_namespace, wait_for
from tests.support.node import (
    DATABASES,
    INGRESS_NAMESPACE,
    INGRESS_URL,
    NODE_NAME,
    PROMETHEUS_NAMESPACE,
    RELEASE,
    SERVICE_ENTRIES,
    SERVICES,
    Platform,
    exec_in,
)

pytestmark = pytest.mark.reliability

TABLE = ROOT / ".run" / "network-policy-connections.md"
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}
PROBE_LABEL = "flotilla.dev/network-policy-probe"
CONNECT_TIMEOUT = 2.0
# A new pod's address enters the policies' ipsets on kube-router's next sync (event-driven): the
# allowed connections are retried this long before the recorded pass.
SETTLE_TIMEOUT = 60.0
NO_ADDRESS = "no address"
PROBLEM_OR_JSON = ("application/json", "application/problem+json")
# The caller with the most dependencies (orders), impersonated from another namespace.
CALLER = max(SERVICES, key=lambda name: len(SERVICE_ENTRIES[name].get("dependsOn", [])))

# Run in a probe pod: connect to each (host, port) at once; print one outcome each, as JSON.
CONNECT = f"""
import concurrent.futures, json, socket, sys

def connect(target):
    try:
        address = socket.getaddrinfo(*target, socket.AF_INET, socket.SOCK_STREAM)[0][4]
    except OSError as exc:
        return f"{NO_ADDRESS} ({{exc}})"
    try:
        socket.create_connection(address, timeout=float(sys.argv[2])).close()
    except TimeoutError:
        return "timed out"
    except OSError as exc:
        return (exc.strerror or type(exc).__name__).lower()
    return "connected"

targets = json.loads(sys.argv[1])
with concurrent.futures.ThreadPoolExecutor(len(targets)) as pool:
    print(json.dumps(list(pool.map(connect, targets))))
"""

SLEEP = ["python", "-c", "import time; time.sleep(7200)"]
# A TCP server that only accepts (the listener: a pod that no NetworkPolicy selects).
LISTENER_PORT = 8000
LISTEN = [
    "python",
    "-c",
    "import socket\n"
    f"server = socket.create_server(('', {LISTENER_PORT}), backlog=64)\n"
    "while True:\n    server.accept()[0].close()\n",
]

# Run in a pod: the IPv4 address of each name, as JSON.
RESOLVE = f"""
import json, socket, sys

def resolve(name):
    try:
        return socket.gethostbyname(name)
    except OSError as exc:
        return f"{NO_ADDRESS} ({{exc}})"

print(json.dumps({{name: resolve(name) for name in json.loads(sys.argv[1])}}))
"""


def selector_labels(service: str) -> dict[str, str]:
    """A service's pod selector (the operator's render.selector_labels)."""
    return {"app.kubernetes.io/name": service, "app.kubernetes.io/instance": service}


def dns_name(namespace: str, name: str) -> str:
    """A Service's name in the cluster's DNS."""
    return f"{name}.{namespace}.svc.cluster.local"


def database_service(service: str) -> str:
    """The Service of ``service``'s bundled PostgreSQL (the chart's flotilla.postgresql.name)."""
    return f"{RELEASE}-{service}-postgresql"


class Row(NamedTuple):
    """One line of the connection table."""

    source: str
    target: str
    port: int
    expected: str
    observed: str
    holds: bool


@dataclass(frozen=True)
class Target:
    """An address a probe connects to (a pod's IP or a Service's DNS name) and its port."""

    label: str
    host: str
    port: int


@dataclass(frozen=True)
class Probe:
    """A pod that connects: a probe labelled as a service's pods or as none, or a service's own."""

    title: str
    namespace: str
    name: str
    ip: str = ""

    def run(self, script: str, *args: str) -> Any:
        result = exec_in(self.namespace, f"pod/{self.name}", "python", "-c", script, *args)
        assert result.returncode == 0, f"{self.title}: {result.stderr}"
        return json.loads(result.stdout)

    def connect(self, targets: Sequence[Target]) -> list[str]:
        pairs = [[target.host, target.port] for target in targets]
        return list(self.run(CONNECT, json.dumps(pairs), str(CONNECT_TIMEOUT)))


@dataclass(frozen=True)
class ShellProbe(Probe):
    """A pod whose image has bash but no Python (PostgreSQL's): connects through /dev/tcp."""

    def connect(self, targets: Sequence[Target]) -> list[str]:
        script = "\n".join(
            f"timeout {CONNECT_TIMEOUT:g} bash -c '</dev/tcp/{target.host}/{target.port}' 2>/dev/null; "
            'case $? in 0) echo connected;; 124) echo "timed out";; *) echo "connection refused";; esac'
            for target in targets
        )
        result = exec_in(self.namespace, f"pod/{self.name}", "bash", "-c", script)
        assert result.returncode == 0, f"{self.title}: {result.stderr}"
        return result.stdout.splitlines()


@dataclass
class Connection:
    """A probe's TCP connection to a target, and whether the policies should let it through."""

    source: Probe
    target: Target
    allowed: bool
    observed: str = "not tried"

    @property
    def connected(self) -> bool:
        return self.observed == "connected"

    @property
    def holds(self) -> bool:
        """Allowed: connected. Denied: refused (kube-router's REJECT) or timed out (the kernel
        rate-limits the ICMP errors a REJECT sends), the name resolved: a failed look-up would
        prove nothing about the policies."""
        if self.allowed:
            return self.connected
        return not self.connected and not self.observed.startswith(NO_ADDRESS)

    def row(self) -> Row:
        expected = "allowed" if self.allowed else "denied"
        return Row(
            self.source.title, self.target.label, self.target.port, expected, self.observed, self.holds
        )


@dataclass(frozen=True)
class Probes:
    """The probe pods, by the caller they act as."""

    caller: dict[str, Probe]  # labelled as that service's pods, in the platform's namespace
    stranger: Probe  # the platform's namespace, no service's labels
    ingress: Probe  # the ingress controller's namespace
    prometheus: Probe  # Prometheus' namespace
    outsider: Probe  # another namespace
    outsider_as_caller: Probe  # another namespace, labelled as CALLER's pods
    listener: Probe  # the platform's namespace, accepting on LISTENER_PORT, selected by no policy


def probe_pod(name: str, labels: dict[str, str], image: str, command: list[str]) -> dict[str, Any]:
    """A pod of ``image`` running ``command``, never Ready (a pod with a service's labels must not become
    an endpoint of its Service), admitted under the restricted Pod Security Standard."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {**labels, PROBE_LABEL: "true"}},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": NODE_NAME},
            "readinessGates": [{"conditionType": "flotilla.dev/never-ready"}],
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 1,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "runAsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "probe",
                    "image": image,
                    "command": command,
                    # No CPU request: the platforms' pods may have requested all of the node's.
                    "resources": {"requests": {"memory": "32Mi"}, "limits": {"memory": "128Mi"}},
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


@contextmanager
def namespace_present(kube: ApiClient, name: str) -> Iterator[str]:
    """The namespace ``name``: the existing one, or a restricted one made here and deleted after."""
    core = client.CoreV1Api(kube)
    try:
        core.read_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise
    else:
        yield name
        return
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=RESTRICTED)))
    try:
        yield name
    finally:
        core.delete_namespace(name)

        def gone() -> bool:
            try:
                core.read_namespace(name)
            except ApiException as exc:
                return exc.status == 404
            return False

        wait_for(gone, timeout=120, interval=1, what=f"namespace {name} deleted")


@contextmanager
def started_probes(
    kube: ApiClient, image: str, pods: dict[str, tuple[str, dict[str, str], list[str]]]
) -> Iterator[dict[str, Probe]]:
    """``pods``: title -> (namespace, labels, command). The probes Running on the real node, with
    their addresses; deleted after."""
    core = client.CoreV1Api(kube)
    suffix = uuid.uuid4().hex[:6]
    probes = {
        title: Probe(title, namespace, f"netpol-{re.sub('[^a-z0-9]+', '-', title).strip('-')}-{suffix}")
        for title, (namespace, _, _) in pods.items()
    }

    def has_default_account(namespace: str) -> bool:
        accounts = core.list_namespaced_service_account(namespace, field_selector="metadata.name=default")
        return bool(accounts.items)

    try:
        for title, (namespace, labels, command) in pods.items():
            wait_for(
                partial(has_default_account, namespace), timeout=60, what=f"{namespace}'s default account"
            )
            core.create_namespaced_pod(namespace, probe_pod(probes[title].name, labels, image, command))

        def running() -> bool:
            for title, probe in probes.items():
                status = core.read_namespaced_pod(probe.name, probe.namespace).status
                states = status.container_statuses or []
                if not (status.pod_ip and states and states[0].state.running):
                    return False
                probes[title] = replace(probe, ip=status.pod_ip)
            return True

        wait_for(running, timeout=180, interval=1, what="the probe pods running")
        yield probes
    finally:
        for probe in probes.values():
            try:
                core.delete_namespaced_pod(probe.name, probe.namespace, grace_period_seconds=0)
            except ApiException as exc:
                if exc.status != 404:
                    raise

        def deleted() -> bool:
            remaining = 0
            for probe in probes.values():
                try:
                    core.read_namespaced_pod(probe.name, probe.namespace)
                    remaining += 1
                except ApiException as exc:
                    if exc.status != 404:
                        raise
            return remaining == 0

        wait_for(deleted, timeout=120, interval=1, what="the probe pods deleted")


@pytest.fixture(scope="module")
def probes(kube: ApiClient, platform: Platform, images: dict[str, str]) -> Iterator[Probes]:
    namespace = platform.namespace
    with ExitStack() as stack:
        other = stack.enter_context(temporary_namespace(kube, RESTRICTED, fake_nodes=False))
        stack.enter_context(namespace_present(kube, PROMETHEUS_NAMESPACE))
        stranger = {"app.kubernetes.io/name": "network-policy-probe"}
        pods = {f"as {service}": (namespace, selector_labels(service), SLEEP) for service in SERVICES}
        pods |= {
            "stranger": (namespace, stranger, SLEEP),
            f"{INGRESS_NAMESPACE} ns pod": (INGRESS_NAMESPACE, stranger, SLEEP),
            f"{PROMETHEUS_NAMESPACE} ns pod": (PROMETHEUS_NAMESPACE, stranger, SLEEP),
            "other ns pod": (other, stranger, SLEEP),
            f"other ns pod as {CALLER}": (other, selector_labels(CALLER), SLEEP),
            "listener": (namespace, {"app.kubernetes.io/name": "network-policy-listener"}, LISTEN),
        }
        started = stack.enter_context(started_probes(kube, images["users"], pods))
        yield Probes(
            caller={service: started[f"as {service}"] for service in SERVICES},
            stranger=started["stranger"],
            ingress=started[f"{INGRESS_NAMESPACE} ns pod"],
            prometheus=started[f"{PROMETHEUS_NAMESPACE} ns pod"],
            outsider=started["other ns pod"],
            outsider_as_caller=started[f"other ns pod as {CALLER}"],
            listener=started["listener"],
        )


def kube_router_version() -> str:
    versions = (ROOT / "scripts" / "cluster" / "versions.env").read_text()
    found = re.search(r"^KUBE_ROUTER_VERSION=(\S+)", versions, re.MULTILINE)
    return found.group(1) if found else "?"


def record(row: Row, case: Case, table: list[Row]) -> None:
    """One connection into the reliability summary and the module's table."""
    case.saw(
        f"{row.source} -> {row.target}:{row.port} {row.expected}: {row.observed} {'✓' if row.holds else '✗'}"
    )
    table.append(row)


def markdown(rows: Sequence[Row]) -> str:
    lines = ["| from | to | port | expected | observed |", "|---|---|---:|---|---|"]
    for row in rows:
        mark = "✓" if row.holds else "✗"
        lines.append(f"| {row.source} | {row.target} | {row.port} | {row.expected} | {row.observed} {mark} |")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class TableSummary:
    """A plugin printing the table in the terminal summary (past the output capture)."""

    text: str

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        rows = self.text.count("\n") - 2
        terminalreporter.write_sep("=", f"network policy connections: {rows}")
        terminalreporter.write(self.text)
        terminalreporter.write_line(f"written to {TABLE.relative_to(ROOT)}")


@pytest.fixture(scope="module")
def table(request: pytest.FixtureRequest) -> Iterator[list[Row]]:
    """Every connection of the module: written to TABLE at its end, and printed with the summary."""
    rows: list[Row] = []
    yield rows
    if not rows:
        return
    text = markdown(rows)
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    TABLE.write_text(
        "# NetworkPolicy connections on the real node\n\n"
        f"Enforced by kube-router {kube_router_version()}'s policy controller "
        f"(tests/node/test_network_policies.py, {time.strftime('%Y-%m-%d %H:%M')}).\n\n{text}"
    )
    request.config.pluginmanager.register(TableSummary(text), "network-policy-connections")


def service_pods(kube: ApiClient, namespace: str, service: str) -> list[Any]:
    """The running pods of ``service``'s Deployment (not the probes acting as them)."""
    selector = ",".join(f"{key}={value}" for key, value in selector_labels(service).items())
    listed = client.CoreV1Api(kube).list_namespaced_pod(
        namespace, label_selector=f"{selector},!{PROBE_LABEL}"
    )
    pods = [
        pod
        for pod in listed.items
        if pod.status.phase == "Running" and pod.status.pod_ip and not pod.metadata.deletion_timestamp
    ]
    assert pods, f"no running pod of {service}"
    return pods


def own_pod(kube: ApiClient, namespace: str, service: str) -> Probe:
    """One of ``service``'s own pods, as a source of connections."""
    pod = service_pods(kube, namespace, service)[0]
    return Probe(f"{service} (own pod)", namespace, pod.metadata.name, pod.status.pod_ip)


def service_targets(
    kube: ApiClient, namespace: str, service: str, *, with_service: bool = True
) -> list[Target]:
    """Each running pod of ``service`` on its ``http`` port, and its Service on port 80."""
    pods = service_pods(kube, namespace, service)
    port = next(p.container_port for c in pods[0].spec.containers for p in c.ports or [] if p.name == "http")
    targets = [Target(f"{service} pod {pod.status.pod_ip}", pod.status.pod_ip, port) for pod in pods]
    if with_service:
        targets.append(Target(f"{service} Service", dns_name(namespace, service), 80))
    return targets


def running_database_pods(kube: ApiClient, namespace: str, service: str) -> list[Any]:
    """The running pods of ``service``'s bundled database (the chart's flotilla.postgresql.selector)."""
    selector = (
        f"app.kubernetes.io/name=postgresql,app.kubernetes.io/instance={RELEASE},"
        f"app.kubernetes.io/component={service}-database"
    )
    pods = client.CoreV1Api(kube).list_namespaced_pod(namespace, label_selector=selector).items
    running = [pod for pod in pods if pod.status.phase == "Running" and pod.status.pod_ip]
    assert running, f"no running database of {service}"
    return running


def database_targets(kube: ApiClient, namespace: str, service: str) -> list[Target]:
    """The pod of ``service``'s database and its Service, on PostgreSQL's port."""
    running = running_database_pods(kube, namespace, service)
    name = database_service(service)
    return [
        *(Target(f"{service} DB pod {pod.status.pod_ip}", pod.status.pod_ip, 5432) for pod in running),
        Target(f"{service} DB Service", dns_name(namespace, name), 5432),
    ]


def attempt(connections: Sequence[Connection]) -> None:
    """One try of each connection: one exec per probe pod, the pods side by side."""
    by_source: dict[Probe, list[Connection]] = {}
    for connection in connections:
        by_source.setdefault(connection.source, []).append(connection)

    def run(source: Probe) -> None:
        batch = by_source[source]
        for connection, observed in zip(batch, source.connect([c.target for c in batch]), strict=True):
            connection.observed = observed

    with ThreadPoolExecutor(len(by_source)) as pool:
        list(pool.map(run, by_source))


def verify(connections: list[Connection], case: Case, table: list[Row]) -> None:
    """Settle, then one recorded pass in which every connection must hold: the allowed ones
    connect, the denied ones are refused or time out while a control reaches the same target."""
    reached = {c.target for c in connections if c.allowed}
    uncontrolled = [c.row() for c in connections if not c.allowed and c.target not in reached]
    assert not uncontrolled, f"denials without a control reaching the same target: {uncontrolled}"
    allowed = [c for c in connections if c.allowed]
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while allowed:
        attempt(allowed)
        case.tried(len(allowed))
        if all(c.connected for c in allowed) or time.monotonic() > deadline:
            break
        time.sleep(1)
    attempt(connections)
    case.tried(len(connections))
    for connection in connections:
        record(connection.row(), case, table)
    failed = [c.row() for c in connections if not c.holds]
    assert not failed, (
        "connections against the policies (is kube-router, started by scripts/cluster/node-up.sh, "
        f"running?): {failed}"
    )


def callers_of(service: str) -> list[str]:
    return [name for name in SERVICES if service in SERVICE_ENTRIES[name].get("dependsOn", [])]


def control(probes: Probes, service: str) -> Probe:
    """A probe the policies admit to ``service``: a declared caller, else the ingress's namespace."""
    callers = callers_of(service)
    return probes.caller[callers[0]] if callers else probes.ingress


def test_declared_callers_reach_the_services_they_depend_on(
    kube: ApiClient, platform: Platform, probes: Probes, case: Case, table: list[Row]
) -> None:
    connections = [
        Connection(probes.caller[service], target, allowed=True)
        for service in SERVICES
        for dependency in SERVICE_ENTRIES[service].get("dependsOn", [])
        for target in service_targets(kube, platform.namespace, dependency)
    ]
    assert {(c.source.title, c.target.label.split()[0]) for c in connections} >= {
        ("as orders", "users"),
        ("as orders", "catalog"),
        ("as catalog", "users"),
    }
    verify(connections, case, table)


def test_the_ingress_controller_reaches_every_routed_service(
    kube: ApiClient, platform: Platform, probes: Probes, case: Case, table: list[Row]
) -> None:
    """A pod of the ingress controller's namespace (the policies' peer) connects to every routed
    service; and Traefik itself, which shares the host's network, answers each service's route."""
    routed = {name: entry["ingress"] for name, entry in SERVICE_ENTRIES.items() if entry.get("ingress")}
    assert routed, "no routed service"
    connections = [
        Connection(probes.ingress, target, allowed=True)
        for service in routed
        for target in service_targets(kube, platform.namespace, service)
    ]
    verify(connections, case, table)

    port = urlparse(INGRESS_URL).port or 80
    for service, ingress in routed.items():
        path = (ingress.get("paths") or [ingress.get("path")])[0]
        response = platform.get(path)
        # The services answer every error as a problem document; the ingress's own 404 is plain text.
        answered = response.headers.get("Content-Type", "").startswith(PROBLEM_OR_JSON)
        observed = f"HTTP {response.status_code}" + (f" from {service}" if answered else "")
        case.tried()
        record(
            Row("Traefik (host network)", f"{service} via {path}", port, "allowed", observed, answered),
            case,
            table,
        )
        assert answered, f"the ingress did not reach {service} at {path}: {observed} {response.text[:200]}"


def test_the_prometheus_namespace_reaches_every_metrics_port(
    kube: ApiClient, platform: Platform, probes: Probes, case: Case, table: list[Row]
) -> None:
    scraped = [
        name for name, entry in SERVICE_ENTRIES.items() if (entry.get("metrics") or {}).get("enabled", True)
    ]
    connections = [
        Connection(probes.prometheus, target, allowed=True)
        for service in scraped
        for target in service_targets(kube, platform.namespace, service, with_service=False)
    ]
    assert connections
    verify(connections, case, table)


def test_a_pod_of_another_namespace_reaches_no_service_and_no_database(
    kube: ApiClient, platform: Platform, probes: Probes, case: Case, table: list[Row]
) -> None:
    """Neither a stranger nor a pod labelled as a caller: the callers' peers are pods of the
    platform's namespace only."""
    connections: list[Connection] = []
    for service in SERVICES:
        for target in service_targets(kube, platform.namespace, service):
            connections.append(Connection(control(probes, service), target, allowed=True))
            connections += [
                Connection(p, target, allowed=False) for p in (probes.outsider, probes.outsider_as_caller)
            ]
    for service in DATABASES:
        for target in database_targets(kube, platform.namespace, service):
            connections.append(Connection(probes.caller[service], target, allowed=True))
            connections += [
                Connection(p, target, allowed=False) for p in (probes.outsider, probes.outsider_as_caller)
            ]
    verify(connections, case, table)


def test_a_pod_of_the_namespace_that_no_service_declares_reaches_no_service_and_no_database(
    kube: ApiClient, platform: Platform, probes: Probes, case: Case, table: list[Row]
) -> None:
    """A stranger reaches nothing; a service's pods reach only what it depends on (catalog is not
    open to users, nor orders to anyone)."""
    connections: list[Connection] = []
    for service in SERVICES:
        undeclared = [
            probes.caller[name] for name in SERVICES if name != service and name not in callers_of(service)
        ]
        for target in service_targets(kube, platform.namespace, service):
            connections.append(Connection(control(probes, service), target, allowed=True))
            connections += [Connection(p, target, allowed=False) for p in (probes.stranger, *undeclared)]
    for service in DATABASES:
        for target in database_targets(kube, platform.namespace, service):
            connections.append(Connection(probes.caller[service], target, allowed=True))
            connections.append(Connection(probes.stranger, target, allowed=False))
    assert any(c.source.title == "as users" and c.target.label.startswith("catalog") for c in connections)
    verify(connections, case, table)


def test_each_database_admits_only_its_own_service(
    kube: ApiClient, platform: Platform, probes: Probes, case: Case, table: list[Row]
) -> None:
    assert DATABASES
    connections = [
        Connection(probes.caller[caller], target, allowed=caller == service)
        for service in DATABASES
        for target in database_targets(kube, platform.namespace, service)
        for caller in SERVICES
    ]
    connections += [
        Connection(probe, target, allowed=False)
        for service in DATABASES
        for target in database_targets(kube, platform.namespace, service)
        for probe in (probes.ingress, probes.prometheus)
    ]
    verify(connections, case, table)


def test_a_service_pod_connects_only_to_its_dependencies_and_its_own_database(
    kube: ApiClient, platform: Platform, probes: Probes, case: Case, table: list[Row]
) -> None:
    """Egress, from each service's own pod: its dependencies and its database connect; another
    service's database and a service it does not depend on do not, nor does the listener, a pod
    that no policy selects (so that only the caller's egress can refuse it)."""
    namespace = platform.namespace
    listener = Target(f"listener pod {probes.listener.ip}", probes.listener.ip, LISTENER_PORT)
    connections = [Connection(probes.stranger, listener, allowed=True)]
    targets = {service: service_targets(kube, namespace, service) for service in SERVICES}
    for service in SERVICES:
        source = own_pod(kube, namespace, service)
        dependencies = SERVICE_ENTRIES[service].get("dependsOn", [])
        connections += [
            Connection(source, target, allowed=other in dependencies)
            for other in SERVICES
            if other != service
            for target in targets[other]
        ]
        connections += [
            Connection(source, target, allowed=database == service)
            for database in DATABASES
            for target in database_targets(kube, namespace, database)
        ]
        connections.append(Connection(source, listener, allowed=False))
    reached = {c.target for c in connections if c.allowed}
    connections += [  # a control for a service nobody depends on
        Connection(control(probes, service), target, allowed=True)
        for service in SERVICES
        for target in targets[service]
        if target not in reached
    ]
    assert any(not c.allowed and c.target == listener for c in connections)
    verify(connections, case, table)


def test_dns_resolves_in_every_pod_under_the_policies(
    kube: ApiClient, platform: Platform, probes: Probes, case: Case, table: list[Row]
) -> None:
    """The services' own pods resolve what they call (their dependencies, their database); every
    probe, in any namespace, resolves the platform's names. Each name gives its Service's address."""
    namespace = platform.namespace
    core = client.CoreV1Api(kube)
    services = [*SERVICES, *(database_service(name) for name in DATABASES)]
    addresses = {
        dns_name(namespace, name): core.read_namespaced_service(name, namespace).spec.cluster_ip
        for name in services
    }
    api = "kubernetes.default.svc.cluster.local"
    addresses[api] = core.read_namespaced_service("kubernetes", "default").spec.cluster_ip
    rows: list[Row] = []

    def check(source: str, resolved: dict[str, str]) -> None:
        for name, address in resolved.items():
            rows.append(Row(source, f"DNS {name}", 53, "resolves", address, address == addresses[name]))
            case.tried()
            record(rows[-1], case, table)

    for service in SERVICES:
        needed = [*SERVICE_ENTRIES[service].get("dependsOn", [])]
        needed += [database_service(service)] if service in DATABASES else []
        names = json.dumps([dns_name(namespace, name) for name in needed])
        result = exec_in(namespace, f"deploy/{service}", "python", "-c", RESOLVE, names)
        assert result.returncode == 0, result.stderr
        check(f"{service} (own pod)", json.loads(result.stdout))
    everything = json.dumps([*(dns_name(namespace, name) for name in services), api])
    for probe in (
        *probes.caller.values(),
        probes.stranger,
        probes.ingress,
        probes.prometheus,
        probes.outsider,
    ):
        check(probe.title, probe.run(RESOLVE, everything))
    assert rows
    failed = [row for row in rows if not row.holds]
    assert not failed, f"names not resolved to their Service's address: {failed}"


def operator_pod(kube: ApiClient, namespace: str) -> Probe:
    """The release's operator pod, as a source of connections."""
    selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=operator"
    pods = client.CoreV1Api(kube).list_namespaced_pod(namespace, label_selector=selector).items
    running = [pod for pod in pods if pod.status.phase == "Running" and pod.status.pod_ip]
    assert running, "no running operator pod"
    return Probe("operator (own pod)", namespace, running[0].metadata.name, running[0].status.pod_ip)


def test_the_operator_reaches_only_the_api_server_and_admits_only_prometheus(
    kube: ApiClient, platform: Platform, probes: Probes, case: Case, table: list[Row]
) -> None:
    """The operator chart's own policy: from the operator's pod the API server connects (through
    the kubernetes Service), a service and the listener do not; its metrics port admits
    Prometheus' namespace and no one else."""
    namespace = platform.namespace
    operator = operator_pod(kube, namespace)
    metrics = Target(f"operator metrics {operator.ip}", operator.ip, 9090)
    listener = Target(f"listener pod {probes.listener.ip}", probes.listener.ip, LISTENER_PORT)
    api_server = Target("API server (kubernetes Service)", dns_name("default", "kubernetes"), 443)
    users = service_targets(kube, namespace, "users")
    connections = [
        Connection(operator, api_server, allowed=True),
        Connection(operator, listener, allowed=False),
        Connection(probes.stranger, listener, allowed=True),
        *(Connection(operator, target, allowed=False) for target in users),
        *(Connection(control(probes, "users"), target, allowed=True) for target in users),
        Connection(probes.prometheus, metrics, allowed=True),
        *(Connection(p, metrics, allowed=False) for p in (probes.stranger, probes.outsider, probes.ingress)),
    ]
    verify(connections, case, table)


def database_pods(kube: ApiClient, namespace: str) -> list[ShellProbe]:
    """Each bundled database's pod, as a source of connections."""
    return [
        ShellProbe(
            f"{service} DB (own pod)",
            namespace,
            running_database_pods(kube, namespace, service)[0].metadata.name,
        )
        for service in DATABASES
    ]


def test_a_database_connects_nowhere(
    kube: ApiClient, platform: Platform, probes: Probes, case: Case, table: list[Row]
) -> None:
    """The databases' policies have no egress rule: from each database pod, neither the listener
    (a pod no policy selects) nor a service it stores data for connects."""
    namespace = platform.namespace
    listener = Target(f"listener pod {probes.listener.ip}", probes.listener.ip, LISTENER_PORT)
    connections = [Connection(probes.stranger, listener, allowed=True)]
    for source in database_pods(kube, namespace):
        service = source.title.split()[0]
        targets = service_targets(kube, namespace, service, with_service=False)
        connections.append(Connection(source, listener, allowed=False))
        connections += [Connection(source, target, allowed=False) for target in targets]
        connections += [Connection(control(probes, service), target, allowed=True) for target in targets]
    verify(connections, case, table)
