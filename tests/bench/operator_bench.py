"""The operator at scale on the real control plane: N Microservices in one namespace.

Baseline: the children the operator would render for those N, applied by one server-side apply
(``kubectl apply --server-side``) in a namespace the operator does not watch. Flotilla: the N
Microservices applied the same way, timed until every one has all its children. Then the
operator's memory (against a Python process with only the kubernetes client loaded), and its CPU
over 60 idle seconds, its periodic resync included (against kube-controller-manager's, which
keeps the same Deployments, over the same seconds).
"""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from flotilla_operator import MANAGED_BY
from flotilla_operator.render import RenderContext, render
from tests.bench.proc import cpu_seconds, rss_mb
from tests.bench.report import Result, Target
from tests.support.kube import connect, temporary_namespace, tool, wait_for
from tests.support.operator import (
    GROUP,
    PLURAL,
    VERSION,
    OperatorProcess,
    install_crd,
    least_privilege_kubeconfig,
    microservice,
)

IDLE_SECONDS = 60
CHILD_KINDS = ("Deployment", "Service", "ServiceMonitor")


def progress(message: str) -> None:
    """What the benchmark is doing now, on stderr."""
    print(f"    {message}", file=sys.stderr, flush=True)


def server_side_apply(namespace: str, documents: list[dict[str, Any]], manager: str) -> float:
    """Seconds one ``kubectl apply --server-side`` of ``documents`` takes."""
    manifest = yaml.safe_dump_all(documents)
    started = time.perf_counter()
    applied = tool(
        "kubectl",
        "apply",
        "--server-side",
        f"--field-manager={manager}",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=manifest,
        timeout=600,
    )
    elapsed = time.perf_counter() - started
    if applied.returncode != 0:
        raise RuntimeError(f"kubectl apply failed: {applied.stderr}")
    return elapsed


def child_counts(api: ApiClient, namespace: str) -> dict[str, int]:
    """How many children of each kind the operator manages in ``namespace``."""
    selector = f"app.kubernetes.io/managed-by={MANAGED_BY}"
    cached = "0"  # resourceVersion "0": served from the API server's cache, so polling costs it little
    monitors: dict[str, Any] = client.CustomObjectsApi(api).list_namespaced_custom_object(  # type: ignore[assignment]
        "monitoring.coreos.com",
        "v1",
        namespace,
        "servicemonitors",
        label_selector=selector,
        resource_version=cached,
    )
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    return {
        "Deployment": len(
            apps.list_namespaced_deployment(namespace, label_selector=selector, resource_version=cached).items
        ),
        "Service": len(
            core.list_namespaced_service(namespace, label_selector=selector, resource_version=cached).items
        ),
        "ServiceMonitor": len(monitors["items"]),
    }


def ready_count(api: ApiClient, namespace: str) -> int:
    """How many Microservices of ``namespace`` report Ready."""
    listed: dict[str, Any] = client.CustomObjectsApi(api).list_namespaced_custom_object(  # type: ignore[assignment]
        GROUP, VERSION, namespace, PLURAL
    )
    return sum(
        1
        for ms in listed["items"]
        for condition in (ms.get("status") or {}).get("conditions") or []
        if condition["type"] == "Ready" and condition["status"] == "True"
    )


def rendered_children(api: ApiClient, namespace: str) -> list[dict[str, Any]]:
    """What the operator's renderer makes of every Microservice of ``namespace`` (defaults applied)."""
    listed: dict[str, Any] = client.CustomObjectsApi(api).list_namespaced_custom_object(  # type: ignore[assignment]
        GROUP, VERSION, namespace, PLURAL
    )
    return [child for ms in listed["items"] for child in render(ms, RenderContext())]


def gone(api: ApiClient, namespace: str) -> bool:
    """Whether ``namespace`` is deleted (its objects collected)."""
    try:
        client.CoreV1Api(api).read_namespace(namespace)
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


def controller_manager_pid() -> int:
    """kube-controller-manager's process: the reference for idle CPU."""
    found = subprocess.run(
        ["pgrep", "-o", "-f", "kube-controller-manager"], capture_output=True, text=True, check=False
    )
    if found.returncode != 0:
        raise RuntimeError("kube-controller-manager is not running here ('make cluster-up' starts it)")
    return int(found.stdout.split()[0])


def run(work: Path, count: int) -> list[Result]:
    """The operator benchmark; the namespaces are deleted afterwards."""
    work.mkdir(parents=True, exist_ok=True)
    api = connect()
    install_crd()
    resources = [microservice(f"svc-{index:03d}") for index in range(count)]
    with temporary_namespace(api) as baseline_namespace:
        progress(f"baseline: one server-side apply of the children of {count} Microservices")
        server_side_apply(baseline_namespace, resources, "flotilla-bench")
        children = rendered_children(api, baseline_namespace)
        baseline_seconds = server_side_apply(baseline_namespace, children, "flotilla-bench")
        progress(f"{len(children)} objects applied in {baseline_seconds:.1f}s")
    # kwok's nodes hold 110 pods each: the baseline's pods must be gone before the operator's.
    wait_for(lambda: gone(api, baseline_namespace), timeout=600, interval=2, what="the baseline's removal")
    with ExitStack() as stack:
        watched_namespace = stack.enter_context(temporary_namespace(api))
        operator = OperatorProcess(
            least_privilege_kubeconfig(api, work / "kubeconfig"),
            work / "operator.log",
            settings={"WATCH_NAMESPACE": watched_namespace},
        )
        operator.start()
        stack.callback(operator.stop)
        assert operator.process is not None
        pid = operator.process.pid
        progress(f"the operator: {count} Microservices until every one has all its children")
        started = time.perf_counter()
        server_side_apply(watched_namespace, resources, "flotilla-bench")
        wait_for(
            lambda: all(n >= count for n in child_counts(api, watched_namespace).values()),
            timeout=900,
            interval=1,
            what=f"{count} of each of {', '.join(CHILD_KINDS)}",
        )
        operator_seconds = time.perf_counter() - started
        memory = rss_mb(pid)
        progress(f"converged in {operator_seconds:.1f}s; waiting for every Microservice to be Ready")
        wait_for(
            lambda: ready_count(api, watched_namespace) >= count, timeout=600, interval=2, what="readiness"
        )
        memory = max(memory, rss_mb(pid))
        progress(f"all Ready; now {IDLE_SECONDS}s idle")
        reference = controller_manager_pid()
        idle_start, reference_start = cpu_seconds(pid), cpu_seconds(reference)
        time.sleep(IDLE_SECONDS)
        idle_percent = (cpu_seconds(pid) - idle_start) / IDLE_SECONDS * 100
        reference_percent = (cpu_seconds(reference) - reference_start) / IDLE_SECONDS * 100
        base_memory = _python_baseline_rss_mb()
    return [
        Result(f"operator_{count}_converge", operator_seconds, baseline_seconds, " s", Target("<=", 2)),
        Result(
            f"operator_rss_at_{count}",
            memory,
            base_memory,
            " MB",
            Target("<=", 150, of="flotilla", unit=" MB"),
        ),
        Result(
            "operator_idle_cpu",
            idle_percent,
            reference_percent,
            " %",
            Target("<=", 2, of="flotilla", unit=" %"),
        ),
    ]


def _python_baseline_rss_mb() -> float:
    """A Python process with the kubernetes client imported and nothing else: the memory floor."""
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import kubernetes, pathlib; "
            "print(next(l for l in pathlib.Path('/proc/self/status').read_text().splitlines() "
            "if l.startswith('VmRSS:')).split()[1])",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(probe.stdout) / 1024
