"""The platform on the real node: real containers of the project's images, Kubernetes DNS,
kube-proxy's Services and the Traefik ingress carrying the traffic."""

from __future__ import annotations

import threading
import time
from collections import Counter
from functools import partial
from urllib.parse import urlparse

import pytest
import requests
from kubernetes import client
from kubernetes.client import ApiClient

from tests.support.cases import Case
from tests.support.kube import wait_for
from tests.support.node import (
    DATABASES,
    NODE_NAME,
    RELEASE,
    SERVICE_ENTRIES,
    SERVICES,
    Platform,
    exec_in,
    helm,
)
from tests.support.policies import check_network_policies


def service_pods(name: str) -> str:
    """The selector of a service's own pods (its migration Job's pods share the name, not the instance)."""
    return f"app.kubernetes.io/name={name},app.kubernetes.io/instance={name}"


def test_the_customer_flow_through_the_ingress(platform: Platform) -> None:
    result = platform.customer_flow()

    assert result["order"]["status"] == "confirmed"
    assert result["total"] == 2500
    assert result["stock"] == 3  # 5 in stock, 2 ordered: the catalog's stock really moved


def test_every_services_api_page_its_assets_and_document_come_through_the_ingress(platform: Platform) -> None:
    for name in SERVICES:
        page = platform.get(f"/docs/{name}/")
        assert page.status_code == 200, (name, page.status_code)
        assert f'"url": "/docs/{name}/openapi.json"' in page.text
        assert platform.get(f"/docs/{name}/swagger-ui-bundle.js").status_code == 200
        document = platform.get(f"/docs/{name}/openapi.json")
        assert document.status_code == 200
        assert document.json()["info"]["title"], name
        # The document's operations are the ones this host routes to the same service.
        first_path = next(iter(document.json()["paths"]))
        assert platform.get(first_path.split("{")[0].rstrip("/")).status_code != 404, (name, first_path)


def test_every_pod_runs_on_the_real_node(kube: ApiClient, platform: Platform) -> None:
    pods = client.CoreV1Api(kube).list_namespaced_pod(platform.namespace).items
    running = [pod for pod in pods if pod.status.phase == "Running"]

    assert {pod.spec.node_name for pod in running} == {NODE_NAME}
    # The operator's leader and standby, each service's PostgreSQL and two replicas of each service.
    assert len(running) >= 2 + len(DATABASES) + 2 * len(SERVICES)
    assert all(
        status.ready and status.container_id.startswith("containerd://")
        for pod in running
        for status in pod.status.container_statuses
    )


def test_orders_finds_users_and_catalog_by_kubernetes_dns(kube: ApiClient, platform: Platform) -> None:
    """The operator injects <NAME>_URL for every dependsOn entry: the Service's DNS name, which
    the cluster's DNS resolves to the Service."""
    namespace = platform.namespace
    core = client.CoreV1Api(kube)
    orders_env = {
        env.name: env.value
        for container in client.AppsV1Api(kube)
        .read_namespaced_deployment("orders", namespace)
        .spec.template.spec.containers
        for env in container.env or []
    }
    dependencies = SERVICE_ENTRIES["orders"]["dependsOn"]
    assert set(dependencies) == {"users", "catalog"}
    for service in dependencies:
        name = f"{service}.{namespace}.svc.cluster.local"
        assert urlparse(orders_env[f"{service.upper()}_URL"]).hostname == name, orders_env
        resolved = exec_in(
            namespace,
            "deploy/orders",
            "python",
            "-c",
            f"import socket; print(socket.gethostbyname({name!r}))",
        )
        assert resolved.returncode == 0, resolved.stderr
        assert resolved.stdout.strip() == core.read_namespaced_service(service, namespace).spec.cluster_ip

    platform.customer_flow()
    catalog_calls = 0.0
    for pod in core.list_namespaced_pod(namespace, label_selector=service_pods("orders")).items:
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
    kube: ApiClient, platform: Platform, case: Case
) -> None:
    """Graceful drain: kubelet sends SIGTERM after the preStop pause while reads and orders flow
    through the ingress; five deletions one after another, and not one request may fail."""
    namespace = platform.namespace
    core = client.CoreV1Api(kube)
    customer = platform.customer_token()
    product_id = platform.create_product(stock=100_000)
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    placed: dict[str, dict[str, object]] = {}
    stop = threading.Event()

    def traffic(worker: int) -> None:
        session = requests.Session()
        headers = {"Host": platform.host}
        sent = 0
        while not stop.is_set():
            sent += 1
            try:
                if sent % 4 == 0:  # every fourth request places an order
                    key = f"drain-{worker}-{sent}-{time.time_ns()}"
                    response = session.post(
                        platform.url("/orders"),
                        json={"items": [{"product_id": product_id, "quantity": 1}]},
                        headers={**headers, "Authorization": f"Bearer {customer}", "Idempotency-Key": key},
                        timeout=30,
                    )
                    expected = 201
                    if response.status_code == expected:
                        placed[key] = response.json()
                else:
                    response = session.get(platform.url("/products?limit=5"), headers=headers, timeout=30)
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
            pods = core.list_namespaced_pod(namespace, label_selector=service_pods(service))
            victim = sorted(str(p.metadata.name) for p in pods.items if not p.metadata.deletion_timestamp)[0]
            core.delete_namespaced_pod(victim, namespace)
            wait_for(partial(pod_gone, victim), timeout=120, interval=0.5, what=f"pod {victim} gone")
            platform.wait_available(service, timeout=180)
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
        read = platform.request(
            "GET", f"/orders/{order['id']}", headers={"Authorization": f"Bearer {customer}"}
        )
        assert read.status_code == 200 and read.json() == order, (key, read.text)


def test_pods_run_under_the_restricted_pod_security_standard(kube: ApiClient, platform: Platform) -> None:
    namespace = platform.namespace
    labels = client.CoreV1Api(kube).read_namespace(namespace).metadata.labels
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"

    for service in SERVICES:
        identity = exec_in(namespace, f"deploy/{service}", "id", "-u")
        assert identity.returncode == 0, identity.stderr
        assert identity.stdout.strip() == "10001"
        write = exec_in(namespace, f"deploy/{service}", "touch", "/usr/local/lib/probe")
        assert write.returncode != 0
        assert "Read-only file system" in write.stderr
    for database in DATABASES:
        postgres = exec_in(namespace, f"statefulset/{RELEASE}-{database}-postgresql", "id", "-u")
        assert postgres.stdout.strip() == "999", postgres.stderr
        write = exec_in(
            namespace, f"statefulset/{RELEASE}-{database}-postgresql", "touch", "/usr/local/lib/probe"
        )
        assert "Read-only file system" in write.stderr


def test_the_operator_pod_renders_every_service_from_its_microservice(
    kube: ApiClient, platform: Platform
) -> None:
    """The chart makes Microservices only; the operator (its own image, in a pod) makes the
    Deployments, and reports each Microservice Ready."""
    namespace = platform.namespace
    microservices = platform.microservices()
    assert {m["metadata"]["name"] for m in microservices} == set(SERVICES)
    for microservice in microservices:
        conditions = {c["type"]: c["status"] for c in microservice.get("status", {}).get("conditions", [])}
        assert conditions.get("Ready") == "True", microservice.get("status")

    operator_pods = (
        client.CoreV1Api(kube)
        .list_namespaced_pod(namespace, label_selector="app.kubernetes.io/name=flotilla-operator")
        .items
    )
    # Two replicas, both ready (a standby is): the holder of the release's Lease reconciles.
    assert [pod.status.phase for pod in operator_pods] == ["Running", "Running"]
    assert all(status.ready for pod in operator_pods for status in pod.status.container_statuses)
    lease = client.CoordinationV1Api(kube).read_namespaced_lease("flotilla-operator", namespace)
    holder = str(lease.spec.holder_identity)
    assert holder.rsplit("_", 1)[0] in {pod.metadata.name for pod in operator_pods}, holder
    deployments = client.AppsV1Api(kube).list_namespaced_deployment(namespace).items
    owners = {d.metadata.name: [ref.kind for ref in d.metadata.owner_references or []] for d in deployments}
    # The services' (the operator's), and the chart's own: the operator's and Jaeger's (tracing is on).
    assert owners == {
        **{name: ["Microservice"] for name in SERVICES},
        "flotilla-operator": [],
        "flotilla-jaeger": [],
    }


def test_the_releases_jaeger_is_ready_and_answers_through_the_ingress_with_every_services_spans(
    kube: ApiClient, platform: Platform, jaeger: str
) -> None:
    """tracing.enabled: Jaeger's one pod passes its health checks, its query API answers JSON at
    the ingress's /jaeger, and every service's spans reach it through the NetworkPolicies."""
    pods = client.CoreV1Api(kube).list_namespaced_pod(
        platform.namespace, label_selector="app.kubernetes.io/name=jaeger,app.kubernetes.io/component=tracing"
    )
    assert [pod.status.phase for pod in pods.items] == ["Running"]
    assert all(status.ready for status in pods.items[0].status.container_statuses)
    assert pods.items[0].spec.node_name == NODE_NAME
    # Every request is sampled here (tracing.sampleRatio 1): one through each service.
    assert platform.customer_flow()["order"]["status"] == "confirmed"

    def every_service_reported() -> bool:
        response = requests.get(f"{jaeger}/api/services", timeout=10)
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith("application/json")
        return set(SERVICES) <= set(response.json()["data"] or [])

    wait_for(
        every_service_reported, timeout=60, interval=1, what=f"spans of {SERVICES} in Jaeger at {jaeger}"
    )


# --- NetworkPolicies: each pod admits what the resources declare, nothing else -----------------


def test_every_service_and_database_pod_admits_only_what_the_resources_declare(
    kube: ApiClient, platform: Platform
) -> None:
    checked = check_network_policies(kube, platform)
    replicas = sum(ms["spec"]["replicas"] for ms in platform.microservices())
    assert len(checked) == replicas + len(DATABASES), checked


def test_helm_test_reaches_every_service_through_its_network_policy(platform: Platform) -> None:
    """`helm test` (NOTES.txt tells users to run it): its pod, admitted by the services' policies
    through `networkPolicy.from`, reads every service's /readyz through its Service."""
    output = helm("test", RELEASE, "--namespace", platform.namespace, "--logs", "--timeout", "300s")
    assert "Phase:          Succeeded" in output, output
    for name in platform.entries:
        assert f"{name} 200 " in output, output
