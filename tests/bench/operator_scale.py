"""The operator at scale (``make bench ARGS=operator-scale``): 200, 1,000 and 2,000 Microservices
of one replica each, on the real control plane with kwok nodes added for their pods.

For each size: the children the operator renders, applied by one ``kubectl apply --server-side``
(the baseline), against the operator converging the same Microservices; its peak memory; the
requests each side sent per Microservice, counted by the API server (``tests/bench/apiserver.py``).
At the largest size also: the CPU of an idle operator (against kube-controller-manager's), and
a standby's take-over after SIGKILL of the leader (against the Lease's duration, its floor).
"""

from __future__ import annotations

import json
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from flotilla_operator.render import RenderContext, render
from tests.bench.apiserver import dispatched, fake_nodes, flow_schema
from tests.bench.dev_loop import node_is_up
from tests.bench.operator_bench import (
    CHILD_KINDS,
    child_counts,
    controller_manager_pid,
    gone,
    progress,
    ready_count,
    server_side_apply,
)
from tests.bench.proc import cpu_seconds
from tests.bench.report import Result, Target
from tests.support.kube import connect, temporary_namespace, tool, wait_for
from tests.support.operator import (
    OPERATOR_NAMESPACE,
    SERVICE_ACCOUNT,
    OperatorProcess,
    binding,
    install_crd,
    least_privilege_kubeconfig,
    microservice,
    service_account_kubeconfig,
)

SIZES = (200, 1000, 2000)
IDLE_SECONDS = 60
LEASE_SECONDS = 10  # the operator's default
BASELINE_ACCOUNT = "flotilla-bench-baseline"


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for {pid}")


def baseline_kubeconfig(api: ApiClient, path: Path) -> Path:
    """kubectl as a service account of its own (cluster-admin), so that its requests are counted apart."""
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    try:
        core.create_namespaced_service_account(
            OPERATOR_NAMESPACE, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=BASELINE_ACCOUNT))
        )
    except ApiException as exc:
        if exc.status != 409:
            raise
    rbac.patch_cluster_role_binding(
        BASELINE_ACCOUNT,
        binding("ClusterRole", "cluster-admin", BASELINE_ACCOUNT, name=BASELINE_ACCOUNT),
        field_manager="flotilla-bench",
        force=True,
        _content_type="application/apply-patch+yaml",
    )
    return service_account_kubeconfig(api, BASELINE_ACCOUNT, path)


class Size:
    """One size's figures."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.converge = self.baseline_converge = 0.0
        self.rss = 0.0
        self.requests = self.baseline_requests = 0.0
        self.json_mb = 0.0


def measure_baseline(api: ApiClient, work: Path, size: Size, resources: list[dict[str, Any]]) -> None:
    """kubectl applies the rendered children in a namespace no operator watches."""
    kubeconfig = baseline_kubeconfig(api, work / "baseline.kubeconfig")
    with temporary_namespace(api) as namespace:
        server_side_apply(
            namespace, resources, "flotilla-bench"
        )  # the CRD's defaults, as the operator reads them
        listed: dict[str, Any] = client.CustomObjectsApi(api).list_namespaced_custom_object(  # type: ignore[assignment]
            "flotilla.dev", "v1alpha1", namespace, "microservices"
        )
        children = [child for ms in listed["items"] for child in render(ms, RenderContext())]
        size.json_mb = len(json.dumps([*listed["items"], *children])) / 1e6
        progress(f"baseline: {len(children)} children of {size.count} Microservices, one kubectl apply")
        with flow_schema(
            api, f"bench-baseline-{uuid.uuid4().hex[:6]}", OPERATOR_NAMESPACE, BASELINE_ACCOUNT
        ) as schema:
            before = dispatched(schema)
            started = time.perf_counter()
            applied = tool(
                "kubectl",
                "--kubeconfig",
                str(kubeconfig),
                "apply",
                "--server-side",
                "--field-manager=flotilla-bench",
                "-n",
                namespace,
                "-f",
                "-",
                stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": children}),
                timeout=900,
            )
            size.baseline_converge = time.perf_counter() - started
            if applied.returncode != 0:
                raise RuntimeError(f"kubectl apply failed: {applied.stderr[-2000:]}")
            size.baseline_requests = (dispatched(schema) - before) / size.count
        progress(f"baseline: {size.baseline_converge:.1f} s, {size.baseline_requests:.1f} requests each")
    settled(api, namespace)


def measure_operator(
    api: ApiClient,
    work: Path,
    size: Size,
    resources: list[dict[str, Any]],
    largest: bool,
    heap_profile: Path | None = None,
) -> list[Result]:
    """The operator converges the same Microservices; at the largest size, idle CPU and failover."""
    results: list[Result] = []
    kubeconfig = work / "operator.kubeconfig"
    lease = f"bench-{uuid.uuid4().hex[:6]}"
    with ExitStack() as stack:
        namespace = stack.enter_context(temporary_namespace(api))
        schema = stack.enter_context(
            flow_schema(api, f"bench-operator-{lease}", OPERATOR_NAMESPACE, SERVICE_ACCOUNT)
        )
        settings = {"WATCH_NAMESPACE": namespace}
        if heap_profile is not None:
            settings["FLOTILLA_OPERATOR_HEAP_PROFILE"] = "true"
        leader = OperatorProcess(kubeconfig, work / f"operator-{size.count}.log", settings, lease)
        leader.start()
        stack.callback(leader.stop)
        assert leader.process is not None
        wait_for(
            lambda: leader.health()[1].get("role") == "reconciling", timeout=60, what="the operator to lead"
        )
        before = dispatched(schema)
        progress(f"operator: {size.count} Microservices until each has its {', '.join(CHILD_KINDS)}")
        started = time.perf_counter()
        server_side_apply(namespace, resources, "flotilla-bench")
        wait_for(
            lambda: all(n >= size.count for n in child_counts(api, namespace).values()),
            timeout=1800,
            interval=1,
            what=f"{size.count} of each child kind",
        )
        size.converge = time.perf_counter() - started
        progress(f"operator: converged in {size.converge:.1f} s; waiting for every Microservice to be Ready")
        wait_for(
            lambda: ready_count(api, namespace) >= size.count, timeout=1800, interval=2, what="readiness"
        )
        size.requests = (dispatched(schema) - before) / size.count
        size.rss = peak_rss_mb(leader.process.pid)
        progress(f"operator: all Ready; peak RSS {size.rss:.0f} MB, {size.requests:.1f} requests each")
        show_requests(leader, size.count)
        if heap_profile is not None:
            write_heap(leader, heap_profile / f"heap-{size.count}.json")
        if largest:
            results += idle_and_failover(work, size, leader, kubeconfig, settings, lease, stack)
    settled(api, namespace)
    return results


def show_requests(operator: OperatorProcess, count: int) -> None:
    """Where the operator's requests went, per Microservice, as its own client counted them."""
    reconciles = operator.metric("flotilla_operator_reconciles_total") / count
    sent = sorted(operator.samples("flotilla_operator_api_requests_total"), key=lambda sample: -sample[1])
    shown = ", ".join(f"{labels['verb']} {labels['resource']} {value / count:.2f}" for labels, value in sent)
    progress(f"operator: {reconciles:.2f} reconciles each; its client's requests each: {shown}")


def write_heap(operator: OperatorProcess, path: Path, shown: int = 12) -> None:
    """Save the operator's heap by allocation site (``/debug/heap``) and show its largest sites."""
    status, heap = operator.health("/debug/heap", timeout=900)  # a snapshot of a busy heap is slow
    if status != 200 or not heap.get("tracing"):
        raise RuntimeError(f"no heap profile from the operator: {status} {heap}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(heap, indent=2))
    progress(f"heap: {heap['traced_mb']} MB traced (peak {heap['traced_peak_mb']} MB), written to {path}")
    for section in ("by_file", "by_operator_line"):
        for site in heap[section][:shown]:
            progress(f"  {section}: {site['kb']:>8} kB {site['blocks']:>8} blocks  {site['site']}")


def settled(api: ApiClient, namespace: str) -> None:
    """Wait until a deleted namespace's objects are collected: the next run starts on a quiet cluster."""
    progress(f"waiting for namespace {namespace} and its pods to go")
    wait_for(lambda: gone(api, namespace), timeout=1200, interval=2, what=f"namespace {namespace} to go")


def idle_and_failover(
    work: Path,
    size: Size,
    leader: OperatorProcess,
    kubeconfig: Path,
    settings: dict[str, str],
    lease: str,
    stack: ExitStack,
) -> list[Result]:
    """CPU over a minute of nothing to do, then SIGKILL of the leader beside a standby."""
    assert leader.process is not None
    progress(f"operator: {IDLE_SECONDS} s idle with {size.count} Microservices")
    reference = controller_manager_pid()
    idle, reference_start = cpu_seconds(leader.process.pid), cpu_seconds(reference)
    time.sleep(IDLE_SECONDS)
    idle_percent = (cpu_seconds(leader.process.pid) - idle) / IDLE_SECONDS * 100
    reference_percent = (cpu_seconds(reference) - reference_start) / IDLE_SECONDS * 100
    standby = OperatorProcess(kubeconfig, work / "standby.log", settings, lease)
    standby.start()
    stack.callback(standby.stop)
    wait_for(lambda: standby.health()[1].get("role") == "standby", timeout=60, what="the standby")
    progress("operator: SIGKILL of the leader; timing the standby's first reconcile")
    leader.kill()
    killed = time.perf_counter()
    wait_for(
        lambda: standby.metric("flotilla_operator_reconciles_total", result="success") > 0,
        timeout=300,
        interval=0.1,
        what="the standby's first reconcile",
    )
    failover = time.perf_counter() - killed
    progress(f"operator: the standby reconciled {failover:.1f} s after the kill")
    return [
        Result(
            f"operator_idle_cpu_at_{size.count}",
            idle_percent,
            reference_percent,
            " %",
            Target("<=", 2, of="flotilla", unit=" %"),
        ),
        Result(
            "operator_failover_s", failover, LEASE_SECONDS, " s", Target("<=", 15, of="flotilla", unit=" s")
        ),
    ]


def run(work: Path, sizes: tuple[int, ...] = SIZES, heap_profile: Path | None = None) -> list[Result]:
    """Every size, smallest first; the lines of each as it ends."""
    work.mkdir(parents=True, exist_ok=True)
    if node_is_up():
        progress("warning: the real node is up; its kube-proxy and Prometheus follow every object made here")
    api = connect()
    install_crd()
    least_privilege_kubeconfig(api, work / "operator.kubeconfig")  # flotilla-system, its accounts
    measured: list[Size] = []
    results: list[Result] = []
    rss_targets = {200: 150, 2000: 250}
    with fake_nodes(api, max(sizes) + 100) as added:
        progress(f"{added} kwok nodes added for {max(sizes)} pods")
        for count in sorted(sizes):
            size = Size(count)
            resources = [microservice(f"svc-{index:04d}") for index in range(count)]
            measure_baseline(api, work, size, resources)
            found = measure_operator(
                api, work, size, resources, largest=count == max(sizes), heap_profile=heap_profile
            )
            measured.append(size)
            size_results = [
                Result(
                    f"operator_{count}_converge", size.converge, size.baseline_converge, " s", Target("<=", 2)
                ),
                Result(
                    f"operator_rss_at_{count}",
                    size.rss,
                    size.json_mb,
                    " MB",
                    Target("<=", rss_targets[count], of="flotilla", unit=" MB")
                    if count in rss_targets
                    else None,
                ),
                *found,
            ]
            for result in size_results:
                progress(result.line())
            results += size_results
    first, last = measured[0], measured[-1]
    if last.count > first.count:
        per_thousand = 1000 / (last.count - first.count)
        results.append(
            Result(
                "operator_rss_per_1000_ms",
                (last.rss - first.rss) * per_thousand,
                (last.json_mb - first.json_mb) * per_thousand,
                " MB",
                None,
            )
        )
    operator_requests = sum(s.requests * s.count for s in measured) / sum(s.count for s in measured)
    baseline_requests = sum(s.baseline_requests * s.count for s in measured) / sum(s.count for s in measured)
    results.append(
        Result("operator_apiserver_requests_per_ms", operator_requests, baseline_requests, "", None)
    )
    return results
