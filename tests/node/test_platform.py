"""The platform on the real node: real containers of the project's images, Kubernetes DNS,
kube-proxy's Services and the Traefik ingress carrying the traffic."""

from __future__ import annotations

import threading
import time
from collections import Counter
from functools import partial

import pytest
import requests
from kubernetes import client
from kubernetes.client import ApiClient

from tests.support.cases import Case
from tests.support.kube import wait_for
from tests.support.node import NODE_NAME, SERVICES, Platform, exec_in


def test_the_customer_flow_through_the_ingress(workloads_platform: Platform) -> None:
    result = workloads_platform.customer_flow()

    assert result["order"]["status"] == "confirmed"
    assert result["total"] == 2500
    assert result["stock"] == 3  # 5 in stock, 2 ordered: the catalog's stock really moved


def test_every_pod_runs_on_the_real_node(kube: ApiClient, workloads_platform: Platform) -> None:
    pods = client.CoreV1Api(kube).list_namespaced_pod(workloads_platform.namespace).items
    running = [pod for pod in pods if pod.status.phase == "Running"]

    assert {pod.spec.node_name for pod in running} == {NODE_NAME}
    assert len(running) >= 1 + 2 * len(SERVICES)  # PostgreSQL and two replicas of each service
    assert all(
        status.ready and status.container_id.startswith("containerd://")
        for pod in running
        for status in pod.status.container_statuses
    )


def test_orders_finds_users_and_catalog_by_kubernetes_dns(
    kube: ApiClient, workloads_platform: Platform
) -> None:
    namespace = workloads_platform.namespace
    core = client.CoreV1Api(kube)
    orders_env = {
        env.name
        for container in client.AppsV1Api(kube)
        .read_namespaced_deployment("orders", namespace)
        .spec.template.spec.containers
        for env in container.env or []
    }
    assert not orders_env & {"USERS_URL", "CATALOG_URL"}  # no address given: discovery is DNS

    for service in ("users", "catalog"):
        name = f"{service}.{namespace}.svc.cluster.local"
        resolved = exec_in(
            namespace,
            "deploy/orders",
            "python",
            "-c",
            f"import socket; print(socket.gethostbyname({name!r}))",
        )
        assert resolved.returncode == 0, resolved.stderr
        assert resolved.stdout.strip() == core.read_namespaced_service(service, namespace).spec.cluster_ip

    workloads_platform.customer_flow()
    catalog_calls = 0.0
    for pod in core.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/name=orders").items:
        metrics = exec_in(
            namespace, f"pod/{pod.metadata.name}", "python", "-c",
            "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8000/metrics').read().decode())",
        )  # fmt: skip
        assert metrics.returncode == 0, metrics.stderr
        catalog_calls += sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.stdout.splitlines()
            if line.startswith("http_client_requests_total{")
            and 'target="catalog"' in line
            and 'outcome="2' in line
        )
    assert catalog_calls >= 2  # the order's reservation and its commit, answered by the catalog


@pytest.mark.reliability
def test_five_pods_sent_sigterm_in_a_row_under_steady_traffic_fail_no_request(
    kube: ApiClient, workloads_platform: Platform, case: Case
) -> None:
    """Graceful drain: kubelet sends SIGTERM after the preStop pause while reads and orders flow
    through the ingress; five deletions one after another, and not one request may fail."""
    namespace = workloads_platform.namespace
    core = client.CoreV1Api(kube)
    customer = workloads_platform.customer_token()
    product_id = workloads_platform.create_product(stock=100_000)
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    placed: dict[str, dict[str, object]] = {}
    stop = threading.Event()

    def traffic(worker: int) -> None:
        session = requests.Session()
        headers = {"Host": workloads_platform.host}
        sent = 0
        while not stop.is_set():
            sent += 1
            try:
                if sent % 4 == 0:  # every fourth request places an order
                    key = f"drain-{worker}-{sent}-{time.time_ns()}"
                    response = session.post(
                        workloads_platform.url("/orders"),
                        json={"items": [{"product_id": product_id, "quantity": 1}]},
                        headers={**headers, "Authorization": f"Bearer {customer}", "Idempotency-Key": key},
                        timeout=30,
                    )
                    expected = 201
                    if response.status_code == expected:
                        placed[key] = response.json()
                else:
                    response = session.get(
                        workloads_platform.url("/products?limit=5"), headers=headers, timeout=30
                    )
                    expected = 200
                outcomes[str(response.status_code)] += 1
                if response.status_code != expected:
                    failures.append(f"{response.status_code} {response.text[:200]}")
            except requests.RequestException as exc:
                outcomes["error"] += 1
                failures.append(repr(exc))

    def pod_gone(name: str) -> bool:
        return name not in {pod.metadata.name for pod in core.list_namespaced_pod(namespace).items}

    workers = [threading.Thread(target=traffic, args=(n,)) for n in range(4)]
    for worker in workers:
        worker.start()
    deleted: list[str] = []
    try:
        time.sleep(3)
        for service in ("catalog", "users", "orders", "catalog", "users"):
            pods = core.list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/name={service}")
            victim = sorted(str(p.metadata.name) for p in pods.items if not p.metadata.deletion_timestamp)[0]
            core.delete_namespaced_pod(victim, namespace)
            wait_for(partial(pod_gone, victim), timeout=120, interval=0.5, what=f"pod {victim} gone")
            workloads_platform.wait_available(service, timeout=180)
            deleted.append(service)
            time.sleep(2)
    finally:
        stop.set()
        for worker in workers:
            worker.join(60)

    total = sum(outcomes.values())
    case.tried(total)
    case.saw(
        f"pods deleted: {', '.join(deleted)}; {total} requests ({len(placed)} orders placed) "
        f"through the ingress, {len(failures)} failed"
    )
    assert deleted == ["catalog", "users", "orders", "catalog", "users"]
    assert outcomes["200"] > 100 and len(placed) > 20, outcomes
    assert failures == [], f"{outcomes}: {failures[:5]}"
    sample = list(placed.items())[:: max(1, len(placed) // 20)]
    for key, order in sample:  # every acknowledged order reads back as it was acknowledged
        read = workloads_platform.request(
            "GET", f"/orders/{order['id']}", headers={"Authorization": f"Bearer {customer}"}
        )
        assert read.status_code == 200 and read.json() == order, (key, read.text)


def test_pods_run_under_the_restricted_pod_security_standard(
    kube: ApiClient, workloads_platform: Platform
) -> None:
    namespace = workloads_platform.namespace
    labels = client.CoreV1Api(kube).read_namespace(namespace).metadata.labels
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"

    for service in SERVICES:
        identity = exec_in(namespace, f"deploy/{service}", "id", "-u")
        assert identity.returncode == 0, identity.stderr
        assert identity.stdout.strip() == "10001"
        write = exec_in(namespace, f"deploy/{service}", "touch", "/usr/local/lib/probe")
        assert write.returncode != 0
        assert "Read-only file system" in write.stderr
    postgres = exec_in(namespace, "statefulset/flotilla-postgresql", "id", "-u")
    assert postgres.stdout.strip() == "999", postgres.stderr
    write = exec_in(namespace, "statefulset/flotilla-postgresql", "touch", "/usr/local/lib/probe")
    assert "Read-only file system" in write.stderr
