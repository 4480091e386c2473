"""Operator faults on the real control plane: a killed operator, a restarted API server, and the
admission of every pod the umbrella chart can make under the restricted Pod Security Standard."""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, cast

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as TransportError

from flotilla_operator.render import RenderContext, render
from scripts.services import services
from tests.support.cases import Case
from tests.support.control_plane import is_local, restart_apiserver
from tests.support.convergence import (
    StartOperator,
    as_json,
    deployment_image,
    microservices,
    plain,
    read,
    ready,
    reconciled,
)
from tests.support.kube import ROOT, kubeconfig_path, temporary_namespace, tool, wait_for
from tests.support.operator import GROUP, PLURAL, VERSION, OperatorProcess, create, microservice

CHARTS = ROOT / "charts"
SERVICES = list(services())
DATABASES = [name for name, entry in services().items() if entry.get("database")]
COUNT = 50
KILL_AT = 10  # Deployments applied when the operator is killed: some, not all
RESUME_BOUND = 30.0  # seconds from the API server answering again to a reconciled Microservice
INTERRUPTED = 20  # Microservices created just before the API server restarts
# The operator's own defaults (the chart's), but for the ports OperatorProcess picks: the
# periodic resync (60 s) is no help within the bounds checked here.
PRODUCTION: dict[str, str] = {}
# No periodic resync at all: only kopf's watch can reconcile within the bound.
WATCH_ONLY = {"FLOTILLA_OPERATOR_RESYNC_SECONDS": "3600"}


def retrying(call: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    """The tests' own request right after a restart: a dropped pooled connection is no finding."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except (TransportError, ConnectionError, ApiException) as exc:
            retryable = not isinstance(exc, ApiException) or exc.status in (429, 500, 502, 503, 504)
            if not retryable or time.monotonic() > deadline:
                raise AssertionError(f"{what} failed: {exc}") from exc
            time.sleep(0.2)


# --- (a) a killed operator -------------------------------------------------------------------


def test_a_killed_operator_converges_all_of_50_microservices_after_restart(
    kube: ApiClient,
    namespace: str,
    start_operator: StartOperator,
    case: Case,
) -> None:
    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)
    operator = start_operator(PRODUCTION)
    names = [f"svc-{index:02d}" for index in range(COUNT)]

    def deployments() -> int:
        return len(apps.list_namespaced_deployment(namespace).items)

    # The kill comes at the KILL_AT-th Deployment even while the Microservices are still being
    # created: a fast operator keeps pace with the creation, and must not finish before it.
    created_at = time.monotonic()
    with ThreadPoolExecutor(1) as executor:
        creation = executor.submit(lambda: [create(kube, namespace, microservice(name)) for name in names])
        wait_for(
            lambda: deployments() >= KILL_AT or (creation.done() and creation.exception()),
            timeout=120,
            interval=0.05,
            what=f"{KILL_AT} Deployments",
        )
        operator.kill()
        killed_at = time.monotonic()
        existing = len(microservices(kube, namespace))
        creation.result(timeout=120)
    case.tried()
    at_kill = deployments()
    services_at_kill = len(core.list_namespaced_service(namespace).items)
    ready_at_kill = sum(ready(ms) for ms in microservices(kube, namespace))
    case.saw(
        f"SIGKILL {killed_at - created_at:.1f} s after the first create, {existing} created: "
        f"{at_kill} Deployments, {services_at_kill} Services, {ready_at_kill} Ready"
    )
    assert at_kill < COUNT, "the operator had finished before the kill: nothing was interrupted"

    operator.start()
    restarted_at = time.monotonic()

    def all_ready() -> bool:
        return sum(ready(ms) for ms in microservices(kube, namespace)) == COUNT

    wait_for(all_ready, timeout=300, interval=0.5, what=f"all {COUNT} Microservices to be Ready")
    converged = time.monotonic() - restarted_at
    since_kill = time.monotonic() - killed_at
    case.saw(f"{COUNT} Ready {converged:.1f} s after the restart ({since_kill:.1f} s after the kill)")
    print(f"\n{COUNT} Microservices Ready {converged:.1f} s after the operator's restart")

    # No duplicates, no leftovers: one child of each kind per Microservice, owned by it alone.
    owners = {ms["metadata"]["name"]: ms["metadata"]["uid"] for ms in microservices(kube, namespace)}
    assert sorted(owners) == names
    children = {
        "Deployment": plain(kube, apps.list_namespaced_deployment(namespace)),
        "Service": plain(kube, core.list_namespaced_service(namespace)),
    }
    try:
        monitors = client.CustomObjectsApi(kube).list_namespaced_custom_object(
            "monitoring.coreos.com", "v1", namespace, "servicemonitors"
        )
        children["ServiceMonitor"] = cast(list[dict[str, Any]], cast(dict[str, Any], monitors)["items"])
    except ApiException as exc:
        if exc.status != 404:
            raise  # else no ServiceMonitor CRD: a test elsewhere removes it for a while
    monitored = len(children.get("ServiceMonitor", []))
    for kind, items in children.items():
        assert sorted(item["metadata"]["name"] for item in items) == names, kind
        for item in items:
            references = item["metadata"].get("ownerReferences") or []
            assert [(r["kind"], r["uid"], r.get("controller")) for r in references] == [
                ("Microservice", owners[item["metadata"]["name"]], True)
            ], f"{kind} {item['metadata']['name']}: {references}"

    # One ReplicaSet per Deployment: the operator that took over applied what the killed one had.
    def replica_sets() -> dict[str, int]:
        counts: dict[str, int] = {}
        for replica_set in plain(kube, apps.list_namespaced_replica_set(namespace)):
            owner = replica_set["metadata"]["ownerReferences"][0]["name"]
            counts[owner] = counts.get(owner, 0) + 1
        return counts

    assert replica_sets() == dict.fromkeys(names, 1)

    # The operator keeps no state on a Microservice: no kopf annotation (progress, diff base) and
    # no finalizer, so nothing is left to retry or to block a deletion.
    annotated = [
        f"{ms['metadata']['name']}: {key}"
        for ms in microservices(kube, namespace)
        for key in ms["metadata"].get("annotations") or {}
        if key.startswith(f"{GROUP}/")
    ]
    assert not annotated, annotated[:5]
    assert not any(ms["metadata"].get("finalizers") for ms in microservices(kube, namespace))
    case.saw(f"{COUNT} Deployments, Services, ReplicaSets; {monitored} ServiceMonitors; no duplicates")


# --- (b) a restarted API server --------------------------------------------------------------


def test_the_operator_resumes_within_30_s_of_an_api_server_restart(
    kube: ApiClient,
    namespace: str,
    start_operator: StartOperator,
    case: Case,
) -> None:
    if not is_local():
        pytest.skip(
            f"{kubeconfig_path()} is not the local control plane: its API server is not ours to restart"
        )
    operator = start_operator(WATCH_ONLY)
    create(kube, namespace, microservice("before"))
    wait_for(lambda: ready(read(kube, namespace, "before")), timeout=120, what="'before' to be Ready")
    # Work in flight when the API server goes: reconciles that fail against a closed port.
    interrupted = [f"busy-{index:02d}" for index in range(INTERRUPTED)]
    for name in interrupted:
        create(kube, namespace, microservice(name))
    pending = sum(not reconciled(ms) for ms in microservices(kube, namespace))

    restart = restart_apiserver()
    case.tried()
    how = "SIGTERM, then SIGKILL" if restart.killed else "SIGTERM"
    case.saw(
        f"kube-apiserver stopped in {restart.stopped_in:.1f} s ({how}) with {pending} of "
        f"{INTERRUPTED} new Microservices unreconciled; ready {restart.ready_in:.1f} s after its start"
    )
    deadline = restart.ready_at + RESUME_BOUND

    # After the API server is back: one Microservice created, one changed.
    def create_after() -> None:
        try:
            create(kube, namespace, microservice("after"))
        except ApiException as exc:
            if exc.status != 409:  # 409: an earlier try got through, its answer did not
                raise

    retrying(create_after, "creating 'after'")
    change = {"spec": {"image": "registry.example/flotilla/service:2.0"}}
    retrying(
        lambda: client.CustomObjectsApi(kube).patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "before", change, _content_type="application/merge-patch+json"
        ),
        "changing 'before'",
    )

    def reconciled_now() -> set[str]:
        names = {ms["metadata"]["name"] for ms in microservices(kube, namespace) if reconciled(ms)}
        if "before" in names and not deployment_image(kube, namespace, "before").endswith(":2.0"):
            names.discard("before")
        return names

    groups = {"created and changed": {"after", "before"}, f"{INTERRUPTED} interrupted": set(interrupted)}
    done: dict[str, float] = {}
    names: set[str] = set()
    while len(done) < len(groups) and time.monotonic() < deadline:
        seen = retrying(reconciled_now, "reading the Microservices")
        if time.monotonic() > deadline:
            break  # a reading that took past the bound counts for nothing
        names = seen
        for group, members in groups.items():
            if group not in done and members <= names:
                done[group] = time.monotonic() - restart.ready_at
        time.sleep(0.2)
    assert operator.process is not None
    assert operator.process.poll() is None, f"the operator exited: {operator.log_path.read_text()[-3000:]}"
    for group, seconds in done.items():
        case.saw(f"{group} reconciled {seconds:.1f} s after /readyz")
        print(f"\n{group}: reconciled {seconds:.1f} s after the API server answered again")
    missing = sorted(set().union(*groups.values()) - names)
    assert not missing, f"not reconciled within {RESUME_BOUND:.0f} s of the API server's return: {missing}"

    # The rollouts wait for kube-controller-manager and kwok to reconnect too: no bound on them.
    deadline = time.monotonic() + 180
    while not all(ready(ms) for ms in retrying(lambda: microservices(kube, namespace), "listing")):
        if time.monotonic() > deadline:
            raise AssertionError(f"not all Ready 180 s after /readyz: {not_ready(kube, namespace, operator)}")
        time.sleep(0.5)
    case.saw(f"all {INTERRUPTED + 2} Ready {time.monotonic() - restart.ready_at:.1f} s after /readyz")


def not_ready(kube: ApiClient, namespace: str, operator: OperatorProcess) -> str:
    """Why Microservices are not Ready: their condition, their Deployment's status, the operator's view."""
    lines = []
    for ms in microservices(kube, namespace):
        if ready(ms):
            continue
        name = ms["metadata"]["name"]
        conditions = {c["type"]: c for c in (ms.get("status") or {}).get("conditions") or []}
        condition = conditions.get("Ready", {})
        try:
            found = as_json(kube, client.AppsV1Api(kube).read_namespaced_deployment_status(name, namespace))
            status = found.get("status") or {}
            replicas = (
                f"deployment ready {status.get('readyReplicas')}/{status.get('replicas')}, generation "
                f"{found['metadata']['generation']} observed {status.get('observedGeneration')}"
            )
        except ApiException as exc:
            replicas = f"deployment: {exc.status}"
        lines.append(
            f"{name}: generation {ms['metadata']['generation']}, observed "
            f"{(ms.get('status') or {}).get('observedGeneration')}, Ready={condition.get('status')} "
            f"{condition.get('reason')} ({condition.get('message')}); {replicas}"
        )
    watches = {
        name: operator.metric(name)
        for name in ("flotilla_operator_watch_restarts_total", "flotilla_operator_leader")
    }
    return f"{'; '.join(lines)}; operator: {operator.health()}, {watches}"


# --- (c) the restricted Pod Security Standard ------------------------------------------------

RESTRICTED = {
    f"pod-security.kubernetes.io/{mode}{suffix}": value
    for mode in ("enforce", "warn", "audit")
    for suffix, value in (("", "restricted"), ("-version", "latest"))
}
# The chart's value combinations; every one makes the operator's Deployment, each service's
# PostgreSQL and the test pod, and the operator makes a Deployment (and a migration Job) per
# Microservice (so that the test cannot pass by checking nothing).
VALUES = {
    "default": [],
    "ephemeral-database": ["--set", "postgresql.persistence.enabled=false"],
    "external-database": [
        "--set",
        "postgresql.enabled=false",
        *(
            argument
            for name in DATABASES
            for argument in ("--set", f"externalDatabase.{name}.url=postgresql://{name}:pw@db:5432/{name}")
        ),
    ],
}
SERVICE_WORKLOADS = {f"Deployment/{name}" for name in SERVICES}
OPERATOR = {"Deployment/flotilla-operator", "Pod/fl-test-readyz"}
DATABASE_WORKLOADS = {f"StatefulSet/fl-{name}-postgresql" for name in DATABASES}
EXPECTED = {
    "default": SERVICE_WORKLOADS | OPERATOR | DATABASE_WORKLOADS,
    "ephemeral-database": SERVICE_WORKLOADS | OPERATOR | DATABASE_WORKLOADS,
    "external-database": SERVICE_WORKLOADS | OPERATOR,
}


@contextmanager
def restricted_namespace(kube: ApiClient) -> Iterator[str]:
    """A namespace enforcing (and warning about) the restricted standard, ready for pods."""
    core = client.CoreV1Api(kube)
    with temporary_namespace(kube, RESTRICTED) as namespace:
        # A pod needs its service account to exist, "default" included (the controller adds it).
        wait_for(
            lambda: any(
                account["metadata"]["name"] == "default"
                for account in plain(kube, core.list_namespaced_service_account(namespace))
            ),
            what="the namespace's default service account",
        )
        yield namespace


def _creators(kube: ApiClient) -> dict[str, Callable[..., Any]]:
    apps, batch, core = client.AppsV1Api(kube), client.BatchV1Api(kube), client.CoreV1Api(kube)
    return {
        "Pod": core.create_namespaced_pod_with_http_info,
        "Deployment": apps.create_namespaced_deployment_with_http_info,
        "StatefulSet": apps.create_namespaced_stateful_set_with_http_info,
        "DaemonSet": apps.create_namespaced_daemon_set_with_http_info,
        "ReplicaSet": apps.create_namespaced_replica_set_with_http_info,
        "Job": batch.create_namespaced_job_with_http_info,
        "CronJob": batch.create_namespaced_cron_job_with_http_info,
    }


def _warnings(headers: Any) -> list[str]:
    if headers is None:
        return []
    if hasattr(headers, "getlist"):
        return [str(value) for value in headers.getlist("Warning")]
    value = headers.get("Warning")
    return [str(value)] if value else []


def dry_run(kube: ApiClient, namespace: str, manifest: dict[str, Any]) -> tuple[str | None, list[str]]:
    """Create ``manifest`` with dryRun=All: (the rejection's message or None, the warnings)."""
    body = copy.deepcopy(manifest)
    body["metadata"]["namespace"] = namespace
    try:
        _, _, headers = _creators(kube)[body["kind"]](namespace, body, dry_run="All")
    except ApiException as exc:
        message = json.loads(exc.body).get("message", exc.body) if exc.body else str(exc)
        return f"{exc.status}: {message}", _warnings(exc.headers)
    return None, _warnings(headers)


def pod_template(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The pod a workload makes (its template), or the Pod itself; None for other objects."""
    if manifest["kind"] == "Pod":
        return manifest
    spec = manifest.get("spec") or {}
    template = (spec.get("jobTemplate") or {}).get("spec", {}).get("template") or spec.get("template")
    if template and "containers" in (template.get("spec") or {}):
        return dict(template)
    return None


def pod_of(manifest: dict[str, Any]) -> dict[str, Any]:
    """The Pod its controller would create from ``manifest``, for the API server to enforce on."""
    if manifest["kind"] == "Pod":
        return copy.deepcopy(manifest)
    template = copy.deepcopy(pod_template(manifest)) or {}
    spec = template["spec"]
    name = manifest["metadata"]["name"]
    # A StatefulSet's pods mount claims from its volumeClaimTemplates, as its controller adds them.
    for claim in (manifest.get("spec") or {}).get("volumeClaimTemplates") or []:
        claim_name = claim["metadata"]["name"]
        spec.setdefault("volumes", []).append(
            {"name": claim_name, "persistentVolumeClaim": {"claimName": f"{claim_name}-{name}-0"}}
        )
    metadata = template.get("metadata") or {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{manifest['kind'].lower()}-{name}"[:63],
            "labels": metadata.get("labels") or {},
            "annotations": metadata.get("annotations") or {},
        },
        "spec": spec,
    }


@pytest.fixture(scope="module")
def chart_dependencies() -> None:
    """The umbrella chart packs the operator's chart, which packs the library chart: in that order."""
    for chart in ("flotilla-operator", "flotilla"):
        built = tool("helm", "dependency", "build", str(CHARTS / chart))
        assert built.returncode == 0, built.stderr


def operator_workloads(
    kube: ApiClient, namespace: str, documents: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The Deployments the operator renders for the chart's Microservices, defaults applied as the
    API server applies them (a dry-run create returns the object as it would be stored)."""
    api = client.CustomObjectsApi(kube)
    workloads = []
    for document in documents:
        if document["kind"] != "Microservice":
            continue
        body = copy.deepcopy(document)
        body["metadata"]["namespace"] = namespace
        stored = cast(
            dict[str, Any],
            api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body, dry_run="All"),
        )
        stored["metadata"].setdefault("uid", str(uuid.uuid4()))
        stored["metadata"].setdefault("generation", 1)
        workloads += [m for m in render(stored, RenderContext(service_monitor_crd=False)) if pod_template(m)]
    return workloads


@pytest.mark.usefixtures("chart_dependencies", "microservice_crd")
@pytest.mark.parametrize("values", VALUES)
def test_every_pod_of_the_umbrella_chart_is_admitted_as_restricted(
    kube: ApiClient, values: str, case: Case
) -> None:
    with restricted_namespace(kube) as namespace:
        rendered = tool("helm", "template", "fl", str(CHARTS / "flotilla"), "-n", namespace, *VALUES[values])
        assert rendered.returncode == 0, rendered.stderr
        documents = [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]
        # Pods may only name service accounts that exist: the chart's own are created for real.
        for account in (doc for doc in documents if doc["kind"] == "ServiceAccount"):
            body: Any = {**account, "metadata": {**account["metadata"], "namespace": namespace}}
            client.CoreV1Api(kube).create_namespaced_service_account(namespace, body)
        workloads = [doc for doc in documents if pod_template(doc)]
        workloads += operator_workloads(kube, namespace, documents)
        unknown = {doc["kind"] for doc in workloads} - set(_creators(kube))
        assert not unknown, f"pod-bearing kinds this test cannot create: {unknown}"
        checked = {f"{doc['kind']}/{doc['metadata']['name']}" for doc in workloads}
        assert checked >= EXPECTED[values], f"missing from the rendering: {EXPECTED[values] - checked}"
        migrating = {
            doc["metadata"]["name"]
            for doc in documents
            if doc["kind"] == "Microservice" and doc["spec"].get("migrate")
        }
        jobs = {doc["metadata"]["name"].split("-migrate-")[0] for doc in workloads if doc["kind"] == "Job"}
        assert jobs == migrating, f"migration Jobs of {jobs}, Microservices that migrate: {migrating}"

        problems = []
        for workload in workloads:
            label = f"{workload['kind']}/{workload['metadata']['name']}"
            objects = [workload] if workload["kind"] == "Pod" else [workload, pod_of(workload)]
            for manifest in objects:
                rejection, warnings = dry_run(kube, namespace, manifest)
                case.tried()
                what = label if manifest is workload else f"the Pod of {label}"
                problems += [f"{what} rejected: {rejection}"] if rejection else []
                problems += [f"{what} warned: {warning}" for warning in warnings]
        assert not problems, "\n".join(problems)
        case.saw(f"{len(workloads)} pods admitted with no warning: {', '.join(sorted(checked))}")


def test_a_pod_breaking_the_restricted_standard_is_rejected_naming_the_field(
    kube: ApiClient, case: Case
) -> None:
    """The control: the namespace enforces, and a Deployment's template is only warned about."""
    container = {
        "name": "root",
        "image": "registry.example/flotilla/service:1.0",
        "securityContext": {"privileged": True, "runAsUser": 0},
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "root"},
        "spec": {"containers": [container]},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "root"},
        "spec": {
            "selector": {"matchLabels": {"app": "root"}},
            "template": {"metadata": {"labels": {"app": "root"}}, "spec": pod["spec"]},
        },
    }
    with restricted_namespace(kube) as namespace:
        rejection, _ = dry_run(kube, namespace, pod)
        case.tried()
        assert rejection is not None, "a privileged root pod was admitted under restricted"
        assert rejection.startswith("403:"), rejection
        for field in ("securityContext.privileged=true", "runAsUser=0", "allowPrivilegeEscalation"):
            assert field in rejection, f"{field!r} not named: {rejection}"
        case.saw(f"Pod rejected: {rejection[:120]}...")
        rejection, warnings = dry_run(kube, namespace, deployment)
        case.tried()
        assert rejection is None, rejection
        assert any(
            "would violate PodSecurity" in warning and "runAsUser=0" in warning for warning in warnings
        ), warnings
        case.saw("the same template in a Deployment: admitted with a warning")
