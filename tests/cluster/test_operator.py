"""The Microservice operator end to end, on the real API server with kwok nodes."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

from flotilla_operator.crd import CRD_NAME, crd_manifest
from tests.support.kube import temporary_namespace, tool, wait_for
from tests.support.operator import GROUP, PLURAL, VERSION, OperatorProcess, create, microservice


def read(kube: ApiClient, namespace: str, name: str) -> dict[str, Any]:
    return client.CustomObjectsApi(kube).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)


def patch(kube: ApiClient, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    return client.CustomObjectsApi(kube).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, body, _content_type="application/merge-patch+json"
    )


def condition(ms: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for entry in (ms.get("status") or {}).get("conditions") or []:
        if entry["type"] == kind:
            return entry
    return None


def ready(kube: ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    ms = read(kube, namespace, name)
    status = ms.get("status") or {}
    entry = condition(ms, "Ready")
    current = status.get("observedGeneration") == ms["metadata"]["generation"]
    return ms if current and entry and entry["status"] == "True" else None


def wait_ready(kube: ApiClient, namespace: str, name: str, timeout: float = 60) -> dict[str, Any]:
    return wait_for(lambda: ready(kube, namespace, name), timeout=timeout, what=f"{name} to be Ready")


def exists(read_call: Any, *args: Any) -> bool:
    try:
        read_call(*args)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


@pytest.mark.usefixtures("operator")
def test_a_microservice_gets_every_child_and_becomes_ready(kube: ApiClient, namespace: str) -> None:
    started = time.monotonic()
    create(
        kube,
        namespace,
        microservice(
            "orders",
            replicas=2,
            ingress={
                "host": "shop.example.com",
                "path": "/orders",
                "className": "nginx",
                "tls": {"secretName": "shop-tls", "clusterIssuer": "letsencrypt"},
            },
            autoscaling={"minReplicas": 2, "maxReplicas": 5},
            disruptionBudget={"minAvailable": 1},
        ),
    )
    ms = wait_ready(kube, namespace, "orders")
    elapsed = time.monotonic() - started
    print(f"\napply -> Ready: {elapsed:.2f}s")
    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)
    deployment = apps.read_namespaced_deployment("orders", namespace)
    service = core.read_namespaced_service("orders", namespace)
    ingress = client.NetworkingV1Api(kube).read_namespaced_ingress("orders", namespace)
    hpa = client.AutoscalingV2Api(kube).read_namespaced_horizontal_pod_autoscaler("orders", namespace)
    pdb = client.PolicyV1Api(kube).read_namespaced_pod_disruption_budget("orders", namespace)
    monitor = client.CustomObjectsApi(kube).get_namespaced_custom_object(
        "monitoring.coreos.com", "v1", namespace, "servicemonitors", "orders"
    )
    for child in (deployment, service, ingress, hpa, pdb):
        owner = child.metadata.owner_references[0]
        assert (owner.kind, owner.name, owner.controller) == ("Microservice", "orders", True)
        assert child.metadata.labels["app.kubernetes.io/managed-by"] == "flotilla-operator"
        assert child.metadata.labels["app.kubernetes.io/version"] == "1.0"
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    assert [(p.name, p.port) for p in service.spec.ports] == [("http", 80)]
    assert ingress.metadata.annotations["cert-manager.io/cluster-issuer"] == "letsencrypt"
    assert ingress.spec.tls[0].secret_name == "shop-tls"
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (2, 5)
    status = ms["status"]
    assert not ms["metadata"].get("finalizers"), "a finalizer could outlive the operator"
    assert status["url"] == f"http://orders.{namespace}.svc.cluster.local"
    assert status["externalURL"] == "https://shop.example.com/orders"
    # Replicas are the autoscaler's to set (it raises them to minReplicas once it has metrics).
    assert deployment.spec.replicas >= 1
    assert status["readyReplicas"] >= 1
    assert {c["type"] for c in status["conditions"]} >= {
        "Ready",
        "Progressing",
        "Degraded",
        "DependenciesReady",
    }
    assert all(c["observedGeneration"] == ms["metadata"]["generation"] for c in status["conditions"])

    def ready_event() -> bool:
        events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=orders").items
        return any(e.reason == "Available" and e.involved_object.kind == "Microservice" for e in events)

    wait_for(ready_event, timeout=20, what="the Available event (posted asynchronously)")


@pytest.mark.usefixtures("microservice_crd")
def test_a_new_microservice_reads_back_as_not_yet_observed(kube: ApiClient, namespace: str) -> None:
    """Until the operator writes its status, a Microservice says its generation is unobserved,
    so status-aware waits (kstatus, Helm 4's --wait) cannot take it for done."""
    ms = create(kube, namespace, microservice("unseen"))
    assert ms["metadata"]["generation"] == 1
    # The create's answer is what the API server stored: no operator has written to it yet.
    assert ms["status"] == {"observedGeneration": 0}


@pytest.mark.usefixtures("microservice_crd")
def test_an_event_is_posted_from_a_thread_kopf_did_not_start(kube: ApiClient, namespace: str) -> None:
    """The resync thread posts Events too (a migration finishing, Ready flipping): kopf's own
    poster only works in its handler threads, so the operator writes Events itself."""
    from flotilla_operator.kube import Kube

    ms = create(kube, namespace, microservice("evented"))
    # The session's operator reconciles this Microservice too and posts its own Events about it:
    # the one under test is told apart by a message no operator writes.
    message = f"Migrated=True: posted by the test's thread {uuid.uuid4().hex}."
    errors: list[BaseException] = []

    def post() -> None:
        try:
            Kube(kube).post_event(ms, "Normal", "Migrated", message)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            errors.append(exc)

    poster = threading.Thread(target=post)
    poster.start()
    poster.join(timeout=30)

    assert errors == []
    events = (
        client.CoreV1Api(kube)
        .list_namespaced_event(namespace, field_selector="involvedObject.name=evented")
        .items
    )
    posted = [e for e in events if e.message == message]
    assert [(e.reason, e.type, e.involved_object.kind, e.involved_object.uid) for e in posted] == [
        ("Migrated", "Normal", "Microservice", ms["metadata"]["uid"])
    ]
    assert posted[0].reporting_component == "flotilla-operator"


@pytest.mark.usefixtures("operator")
def test_pods_run_under_the_restricted_pod_security_standard(kube: ApiClient) -> None:
    with temporary_namespace(kube, {"pod-security.kubernetes.io/enforce": "restricted"}) as namespace:
        create(kube, namespace, microservice("strict", replicas=2))
        wait_ready(kube, namespace, "strict")
        pods = client.CoreV1Api(kube).list_namespaced_pod(
            namespace, label_selector="app.kubernetes.io/name=strict"
        )
        assert len(pods.items) == 2
        container = pods.items[0].spec.containers[0]
        assert container.security_context.read_only_root_filesystem is True
        assert container.security_context.capabilities.drop == ["ALL"]


@pytest.mark.usefixtures("operator")
def test_an_image_change_rolls_out_and_advances_the_generation(kube: ApiClient, namespace: str) -> None:
    create(kube, namespace, microservice("catalog"))
    first = wait_ready(kube, namespace, "catalog")
    patch(kube, namespace, "catalog", {"spec": {"image": "registry.example/flotilla/service:2.0"}})
    second = wait_ready(kube, namespace, "catalog")
    assert second["status"]["observedGeneration"] > first["status"]["observedGeneration"]
    deployment = client.AppsV1Api(kube).read_namespaced_deployment("catalog", namespace)
    assert deployment.spec.template.spec.containers[0].image.endswith(":2.0")
    assert deployment.metadata.generation >= 2


@pytest.mark.usefixtures("operator")
def test_removing_the_ingress_deletes_it(kube: ApiClient, namespace: str) -> None:
    create(kube, namespace, microservice("web", ingress={"path": "/web"}))
    wait_ready(kube, namespace, "web")
    networking = client.NetworkingV1Api(kube)
    assert exists(networking.read_namespaced_ingress, "web", namespace)
    patch(kube, namespace, "web", {"spec": {"ingress": None}})
    wait_for(
        lambda: not exists(networking.read_namespaced_ingress, "web", namespace), what="the Ingress to go"
    )
    assert "externalURL" not in wait_ready(kube, namespace, "web")["status"]


@pytest.mark.usefixtures("operator")
def test_a_deployment_deleted_by_hand_is_restored(kube: ApiClient, namespace: str) -> None:
    create(kube, namespace, microservice("users"))
    wait_ready(kube, namespace, "users")
    apps = client.AppsV1Api(kube)
    old_uid = apps.read_namespaced_deployment("users", namespace).metadata.uid
    apps.delete_namespaced_deployment("users", namespace)

    def restored() -> bool:
        try:
            return apps.read_namespaced_deployment("users", namespace).metadata.uid != old_uid
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    wait_for(restored, timeout=20, what="the Deployment to come back")


@pytest.mark.usefixtures("operator")
def test_a_service_monitor_deleted_by_hand_comes_back_with_the_next_resync(
    kube: ApiClient, namespace: str
) -> None:
    """No watch follows ServiceMonitors: each resync (3 s in the tests) lists them, and restores one gone."""
    create(kube, namespace, microservice("watched"))
    wait_ready(kube, namespace, "watched")
    monitors = client.CustomObjectsApi(kube)
    args = ("monitoring.coreos.com", "v1", namespace, "servicemonitors", "watched")
    old_uid = monitors.get_namespaced_custom_object(*args)["metadata"]["uid"]
    monitors.delete_namespaced_custom_object(*args)

    def restored() -> bool:
        try:
            return bool(monitors.get_namespaced_custom_object(*args)["metadata"]["uid"] != old_uid)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    wait_for(restored, timeout=30, what="the ServiceMonitor to come back")


@pytest.mark.usefixtures("operator")
def test_a_service_edited_by_hand_is_reverted(kube: ApiClient, namespace: str) -> None:
    create(kube, namespace, microservice("edited"))
    wait_ready(kube, namespace, "edited")
    core = client.CoreV1Api(kube)
    edited = core.patch_namespaced_service(
        "edited", namespace, [{"op": "replace", "path": "/spec/ports/0/port", "value": 8080}]
    )
    assert [p.port for p in edited.spec.ports] == [8080]  # (a read could already see it reverted)
    wait_for(
        lambda: [p.port for p in core.read_namespaced_service("edited", namespace).spec.ports] == [80],
        timeout=20,
        what="the Service port to be 80 again",
    )


@pytest.mark.usefixtures("operator")
def test_deleting_a_microservice_deletes_its_children(kube: ApiClient, namespace: str) -> None:
    create(kube, namespace, microservice("gone", ingress={"path": "/gone"}))
    wait_ready(kube, namespace, "gone")
    client.CustomObjectsApi(kube).delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "gone")
    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)
    wait_for(
        lambda: not exists(read, kube, namespace, "gone"), what="the Microservice to go (no stuck finalizer)"
    )
    wait_for(
        lambda: (
            not exists(apps.read_namespaced_deployment, "gone", namespace)
            and not exists(core.read_namespaced_service, "gone", namespace)
        ),
        what="the children to be garbage-collected",
    )


INVALID_SPECS = [
    ({"port": 70000}, "spec.port"),
    ({"port": 0}, "spec.port"),
    ({"replicas": -1}, "spec.replicas"),
    ({"image": ""}, "spec.image"),
    ({"ingress": {"path": "orders"}}, "spec.ingress.path"),
    ({"ingress": {"path": "/orders", "host": "Not_A_Host"}}, "spec.ingress.host"),
    ({"ingress": {"path": "/orders", "tls": {"secretName": "t"}}}, "spec.ingress.tls"),
    ({"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}, "spec.autoscaling.maxReplicas"),
    (
        {"autoscaling": {"maxReplicas": 3, "targetCPUUtilizationPercentage": 150}},
        "spec.autoscaling.targetCPUUtilizationPercentage",
    ),
    ({"metrics": {"interval": "often"}}, "spec.metrics.interval"),
    ({"metrics": {"path": "metrics"}}, "spec.metrics.path"),
    ({"probes": {"readiness": {"path": "ready"}}}, "spec.probes.readiness.path"),
    ({"dependsOn": ["Users"]}, "spec.dependsOn"),
    ({"disruptionBudget": {"minAvailable": 1, "maxUnavailable": 1}}, "spec.disruptionBudget"),
    (
        {"env": [{"name": "A", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]},
        "spec.env",
    ),
    ({"serviceAccountName": "Bad Name"}, "spec.serviceAccountName"),
    ({"unknownField": True}, "unknownField"),
]


@pytest.mark.parametrize(("spec", "field"), INVALID_SPECS, ids=[field for _, field in INVALID_SPECS])
def test_invalid_specs_are_rejected_naming_the_field(
    kube: ApiClient, namespace: str, spec: dict[str, Any], field: str
) -> None:
    body = microservice("invalid")
    body["spec"].update(spec)
    with pytest.raises(ApiException) as rejected:
        client.CustomObjectsApi(kube).create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, body, field_validation="Strict"
        )
    assert rejected.value.status in (400, 422)
    assert field in json.loads(rejected.value.body)["message"]


@pytest.mark.usefixtures("operator")
def test_depends_on_injects_the_dns_url_and_tracks_readiness(kube: ApiClient, namespace: str) -> None:
    create(kube, namespace, microservice("checkout", dependsOn=["payments"]))
    wait_ready(kube, namespace, "checkout")
    ms = read(kube, namespace, "checkout")
    assert condition(ms, "DependenciesReady")["reason"] == "DependencyMissing"
    env = (
        client.AppsV1Api(kube)
        .read_namespaced_deployment("checkout", namespace)
        .spec.template.spec.containers[0]
        .env
    )
    assert {e.name: e.value for e in env}["PAYMENTS_URL"] == f"http://payments.{namespace}.svc.cluster.local"
    create(kube, namespace, microservice("payments"))
    wait_ready(kube, namespace, "payments")
    wait_for(
        lambda: (
            (condition(read(kube, namespace, "checkout"), "DependenciesReady") or {}).get("status") == "True"
        ),
        timeout=20,
        what="DependenciesReady to follow the dependency",
    )


@pytest.mark.usefixtures("operator")
def test_a_referenced_config_map_change_rolls_the_pods(kube: ApiClient, namespace: str) -> None:
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="settings"), data={"MODE": "a"})
    )
    create(kube, namespace, microservice("configured", envFrom=[{"configMapRef": {"name": "settings"}}]))
    wait_ready(kube, namespace, "configured")

    def config_hash() -> str:
        template = apps.read_namespaced_deployment("configured", namespace).spec.template
        return (template.metadata.annotations or {}).get("flotilla.dev/config-hash", "")

    before = config_hash()
    assert before
    core.patch_namespaced_config_map("settings", namespace, {"data": {"MODE": "b"}})
    wait_for(lambda: config_hash() not in ("", before), timeout=30, what="the pod template to change")


@pytest.mark.usefixtures("operator")
def test_without_the_service_monitor_crd_a_condition_says_why(kube: ApiClient, namespace: str) -> None:
    extensions = client.ApiextensionsV1Api(kube)
    name = "servicemonitors.monitoring.coreos.com"
    saved = kube.sanitize_for_serialization(extensions.read_custom_resource_definition(name))
    for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
        saved["metadata"].pop(key, None)
    saved.pop("status", None)
    extensions.delete_custom_resource_definition(name)
    try:
        wait_for(lambda: not exists(extensions.read_custom_resource_definition, name), what="the CRD to go")
        create(kube, namespace, microservice("unmonitored"))
        wait_for(
            lambda: (
                (condition(read(kube, namespace, "unmonitored"), "MonitoringConfigured") or {}).get("reason")
                == "ServiceMonitorCRDMissing"
            ),
            timeout=30,
            what="the skipped-monitoring condition",
        )
        wait_ready(kube, namespace, "unmonitored")
    finally:
        extensions.create_custom_resource_definition(saved)
    objects = client.CustomObjectsApi(kube)
    wait_for(
        lambda: _has_monitor(objects, namespace, "unmonitored"),
        timeout=40,
        what="the ServiceMonitor once the CRD is back",
    )


def _has_monitor(objects: client.CustomObjectsApi, namespace: str, name: str) -> bool:
    try:
        objects.get_namespaced_custom_object(
            "monitoring.coreos.com", "v1", namespace, "servicemonitors", name
        )
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def test_a_killed_operator_converges_after_restart(
    kube: ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    operator.kill()
    try:
        for index in range(5):
            create(kube, namespace, microservice(f"batch-{index}"))
    finally:
        operator.start()
    for index in range(5):
        wait_ready(kube, namespace, f"batch-{index}")


def test_the_operator_reports_its_work_as_prometheus_metrics(
    kube: ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    create(kube, namespace, microservice("measured"))
    wait_ready(kube, namespace, "measured")
    text = requests.get(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=5).text
    samples = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert samples['flotilla_operator_reconciles_total{result="success"}'] >= 1
    assert samples["flotilla_operator_reconcile_duration_seconds_count"] >= 1
    assert samples['flotilla_operator_managed_resources{kind="Microservice"}'] >= 1
    assert requests.get(f"http://127.0.0.1:{operator.liveness_port}/healthz", timeout=5).ok


MICROSERVICE_GAUGES = (
    "flotilla_operator_microservice_scrape_targets",
    "flotilla_operator_microservice_ready",
    "flotilla_operator_microservice_rollout_phase",
)


def gauges(operator: OperatorProcess, namespace: str, name: str) -> dict[str, tuple[float, str | None]]:
    """The operator's series of one Microservice: each gauge's value and, for the phase, its label."""
    return {
        gauge.removeprefix("flotilla_operator_microservice_"): (value, found.get("phase"))
        for gauge in MICROSERVICE_GAUGES
        for found, value in operator.samples(gauge)
        if found["namespace"] == namespace and found["name"] == name
    }


def test_a_microservices_gauges_appear_with_it_and_go_when_it_is_deleted(
    kube: ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    create(kube, namespace, microservice("gauged", replicas=2))
    wait_ready(kube, namespace, "gauged")
    expected = {"scrape_targets": (2, None), "ready": (1, None), "rollout_phase": (1, "Stable")}
    wait_for(
        lambda: gauges(operator, namespace, "gauged") == expected,
        timeout=20,
        what=f"the Microservice's gauges at {expected}",
    )
    client.CustomObjectsApi(kube).delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "gauged")
    wait_for(
        lambda: gauges(operator, namespace, "gauged") == {},
        timeout=20,
        what="the deleted Microservice's series to go",
    )


def test_a_name_that_cannot_name_a_service_is_rejected(kube: ApiClient, namespace: str) -> None:
    with pytest.raises(ApiException) as rejected:
        create(kube, namespace, microservice("my.service"))
    assert rejected.value.status == 422
    assert "metadata.name must be a DNS label" in json.loads(rejected.value.body)["message"]


def _reconciles(process: OperatorProcess) -> float:
    text = requests.get(f"http://127.0.0.1:{process.metrics_port}/metrics", timeout=5).text
    return sum(
        float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith("flotilla_operator_reconciles_total{")
    )


def test_an_operator_watching_one_namespace_needs_only_its_cluster_role(
    kube: ApiClient, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    """WATCH_NAMESPACE: its own namespace is reconciled, another is not, with no denied request."""
    watcher = OperatorProcess(
        operator.kubeconfig,
        tmp_path / "namespaced.log",
        settings={"WATCH_NAMESPACE": namespace, "FLOTILLA_OPERATOR_RESYNC_SECONDS": "3"},
    )
    watcher.start()
    try:
        with temporary_namespace(kube) as elsewhere:
            create(kube, elsewhere, microservice("not-mine"))
            wait_ready(kube, elsewhere, "not-mine")  # the cluster-wide operator serves it
            assert _reconciles(watcher) == 0
            create(kube, namespace, microservice("mine"))
            wait_ready(kube, namespace, "mine")
            wait_for(
                lambda: _reconciles(watcher) >= 1, timeout=30, what="the namespaced operator to reconcile"
            )
    finally:
        watcher.stop()
    log = (tmp_path / "namespaced.log").read_text()
    assert "forbidden" not in log.lower(), log[-2000:]


# --- NetworkPolicy, migrations, replicas, scale, the CRD's upgrade -------------------------------


def _callers(kube: ApiClient, namespace: str, name: str) -> list[str] | None:
    try:
        policy = client.NetworkingV1Api(kube).read_namespaced_network_policy(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    rules = policy.spec.ingress or []
    return sorted(
        peer.pod_selector.match_labels["app.kubernetes.io/instance"]
        for rule in rules
        for peer in rule._from or []
        if peer.pod_selector and peer.pod_selector.match_labels
    )


@pytest.mark.usefixtures("operator")
def test_a_network_policy_follows_the_callers_depends_on(kube: ApiClient, namespace: str) -> None:
    create(kube, namespace, microservice("stock", ingress={"paths": ["/stock"]}))
    wait_ready(kube, namespace, "stock")
    policy = client.NetworkingV1Api(kube).read_namespaced_network_policy("stock", namespace)
    # The service's pods and its migration Jobs' pods (another instance label), nobody else's.
    assert policy.spec.pod_selector.match_labels == {"app.kubernetes.io/name": "stock"}
    pods = client.AppsV1Api(kube).read_namespaced_deployment("stock", namespace).spec.template.metadata.labels
    assert policy.spec.pod_selector.match_labels.items() <= pods.items()
    assert policy.spec.policy_types == ["Ingress", "Egress"]
    namespaces = {
        peer.namespace_selector.match_labels["kubernetes.io/metadata.name"]
        for peer in policy.spec.ingress[0]._from
        if peer.namespace_selector
    }
    assert namespaces == {"traefik", "monitoring"}
    assert [(port.port, port.protocol) for port in policy.spec.ingress[0].ports] == [("http", "TCP")]
    assert _callers(kube, namespace, "stock") == []
    create(kube, namespace, microservice("basket", dependsOn=["stock"]))
    wait_for(lambda: _callers(kube, namespace, "stock") == ["basket"], timeout=20, what="basket admitted")
    patch(kube, namespace, "basket", {"spec": {"dependsOn": None}})
    wait_for(lambda: _callers(kube, namespace, "stock") == [], timeout=20, what="basket no longer admitted")
    create(kube, namespace, microservice("till", dependsOn=["stock"]))
    wait_for(lambda: _callers(kube, namespace, "stock") == ["till"], timeout=20, what="till admitted")
    client.CustomObjectsApi(kube).delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "till")
    wait_for(lambda: _callers(kube, namespace, "stock") == [], timeout=20, what="the deleted caller to go")
    patch(kube, namespace, "stock", {"spec": {"networkPolicy": {"enabled": False}}})
    wait_for(lambda: _callers(kube, namespace, "stock") is None, timeout=20, what="the policy to go")


def _jobs(kube: ApiClient, namespace: str, name: str) -> list[Any]:
    return (
        client.BatchV1Api(kube)
        .list_namespaced_job(namespace, label_selector=f"app.kubernetes.io/instance={name}-migrate")
        .items
    )


def _complete(job: Any) -> bool:
    return any(c.type == "Complete" and c.status == "True" for c in (job.status.conditions or []))


def _deployment(kube: ApiClient, namespace: str, name: str) -> Any:
    try:
        return client.AppsV1Api(kube).read_namespaced_deployment(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


@pytest.mark.usefixtures("operator")
def test_a_migrating_microservice_gets_its_deployment_only_after_the_job_succeeded(
    kube: ApiClient, namespace: str
) -> None:
    """kwok completes the pods Jobs own (its pod-complete stage), so the Job succeeds on fake nodes."""
    # A node selector no node has: the Job's pod stays Pending, the migration never ends.
    create(
        kube, namespace, microservice("ledger", migrate=True, nodeSelector={"flotilla.dev/test": "nowhere"})
    )
    wait_for(lambda: _jobs(kube, namespace, "ledger"), timeout=20, what="the migration Job")
    migrated = wait_for(
        lambda: condition(read(kube, namespace, "ledger"), "Migrated"), timeout=20, what="condition Migrated"
    )
    assert (migrated["status"], migrated["reason"]) == ("False", "Running")
    time.sleep(3)  # the operator had every chance to create the Deployment: it must not
    assert _deployment(kube, namespace, "ledger") is None
    (held,) = _jobs(kube, namespace, "ledger")
    labels = held.spec.template.metadata.labels
    assert (labels["app.kubernetes.io/name"], labels["app.kubernetes.io/instance"]) == (
        "ledger",
        "ledger-migrate",
    )
    assert held.spec.template.spec.containers[0].args == ["migrate"]
    assert held.spec.backoff_limit == 3
    # Scheduling is not what the migration runs: no new revision, the Job is left alone.
    patch(kube, namespace, "ledger", {"spec": {"resources": {"requests": {"cpu": "200m"}}}})
    time.sleep(3)
    assert [j.metadata.name for j in _jobs(kube, namespace, "ledger")] == [held.metadata.name]
    # A new release (env) is a new revision: its Job runs where the pods may go.
    patch(
        kube,
        namespace,
        "ledger",
        {"spec": {"nodeSelector": None, "env": [{"name": "RELEASE", "value": "2"}]}},
    )
    deployment = wait_for(lambda: _deployment(kube, namespace, "ledger"), timeout=60, what="the Deployment")
    (job,) = wait_for(
        lambda: [j for j in _jobs(kube, namespace, "ledger") if j.metadata.name != held.metadata.name],
        timeout=20,
        what="the new revision's Job",
    )
    assert _complete(job), "the Deployment came before its migration succeeded"
    assert deployment.metadata.creation_timestamp >= job.status.completion_time
    ms = wait_ready(kube, namespace, "ledger")
    assert (condition(ms, "Migrated") or {}).get("status") == "True"
    wait_for(
        lambda: [j.metadata.name for j in _jobs(kube, namespace, "ledger")] == [job.metadata.name],
        timeout=20,
        what="the old revision's Job to be pruned",
    )


@pytest.mark.usefixtures("operator")
def test_turning_autoscaling_on_keeps_the_replicas(kube: ApiClient, namespace: str) -> None:
    create(kube, namespace, microservice("elastic", replicas=3))
    wait_ready(kube, namespace, "elastic")
    seen: list[int] = []
    stop = threading.Event()

    def record() -> None:
        while not stop.is_set():
            seen.append(_deployment(kube, namespace, "elastic").spec.replicas)
            time.sleep(0.05)

    watcher = threading.Thread(target=record, daemon=True)
    watcher.start()
    try:
        patch(kube, namespace, "elastic", {"spec": {"autoscaling": {"minReplicas": 2, "maxReplicas": 5}}})
        wait_for(
            lambda: client.AutoscalingV2Api(kube).list_namespaced_horizontal_pod_autoscaler(namespace).items,
            timeout=20,
            what="the HorizontalPodAutoscaler",
        )
        wait_ready(kube, namespace, "elastic")
        time.sleep(3)  # and a re-apply or two
    finally:
        stop.set()
        watcher.join(5)
    assert seen
    assert set(seen) == {3}, f"replicas seen: {sorted(set(seen))}"
    managers = {
        entry.manager: entry
        for entry in _deployment(kube, namespace, "elastic").metadata.managed_fields
        if "f:replicas" in json.dumps(entry.fields_v1)
    }
    assert "flotilla-operator" not in managers, "the operator still applies replicas under autoscaling"


@pytest.mark.usefixtures("operator")
def test_kubectl_scale_sets_the_deployments_replicas(kube: ApiClient, namespace: str) -> None:
    create(kube, namespace, microservice("scaled", replicas=1))
    wait_ready(kube, namespace, "scaled")
    scaled = tool("kubectl", "scale", "ms", "scaled", "--replicas=3", "-n", namespace)
    assert scaled.returncode == 0, scaled.stderr
    wait_for(
        lambda: _deployment(kube, namespace, "scaled").spec.replicas == 3,
        timeout=20,
        what="the Deployment to have 3 replicas",
    )
    ms = wait_ready(kube, namespace, "scaled")
    assert (ms["spec"]["replicas"], ms["status"]["readyReplicas"]) == (3, 3)


def _accepts_priority_class(kube: ApiClient, namespace: str) -> bool:
    body = microservice("upgraded", priorityClassName="business-critical")
    try:
        client.CustomObjectsApi(kube).create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, body, dry_run="All", field_validation="Strict"
        )
    except ApiException as exc:
        if exc.status in (400, 422) and "priorityClassName" in exc.body:
            return False
        raise
    return True


def test_the_operator_upgrades_an_older_crd_at_start_up(
    kube: ApiClient, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    """An older CRD without spec.priorityClassName: the operator's start brings the field."""
    extensions = client.ApiextensionsV1Api(kube)
    older = crd_manifest()
    spec = older["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    del spec["properties"]["priorityClassName"]
    older["metadata"]["resourceVersion"] = extensions.read_custom_resource_definition(
        CRD_NAME
    ).metadata.resource_version
    extensions.replace_custom_resource_definition(CRD_NAME, older)
    wait_for(lambda: not _accepts_priority_class(kube, namespace), timeout=20, what="the older CRD to serve")
    for settings, upgraded in (({"FLOTILLA_OPERATOR_APPLY_CRD": "false"}, False), ({}, True)):
        process = OperatorProcess(
            operator.kubeconfig, tmp_path / f"upgrade-{upgraded}.log", settings=settings
        )
        process.start()
        try:
            if upgraded:
                wait_for(lambda: _accepts_priority_class(kube, namespace), timeout=30, what="the CRD upgrade")
            else:
                time.sleep(2)
                assert not _accepts_priority_class(kube, namespace), (
                    "FLOTILLA_OPERATOR_APPLY_CRD=false applied"
                )
        finally:
            process.stop()


@pytest.mark.usefixtures("operator")
def test_a_migration_waits_for_its_secret_and_runs_once(kube: ApiClient, namespace: str) -> None:
    """As when the shop example's Microservices come before its bootstrap Job made the Secret."""
    seen: set[str] = set()
    stop = threading.Event()

    def record() -> None:
        while not stop.is_set():
            seen.update(job.metadata.name for job in _jobs(kube, namespace, "waiting"))
            time.sleep(0.1)

    recorder = threading.Thread(target=record, daemon=True)
    recorder.start()
    env = [{"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "later-secrets", "key": "db"}}}]
    try:
        create(kube, namespace, microservice("waiting", migrate=True, env=env))
        migrated = wait_for(
            lambda: (
                (c := condition(read(kube, namespace, "waiting"), "Migrated"))
                and c["reason"] == "ConfigMissing"
                and c
            ),
            timeout=20,
            what="Migrated=False ConfigMissing",
        )
        assert "Secret later-secrets (key db)" in migrated["message"]
        time.sleep(4)  # kopf's retry and a resync: still nothing runs
        assert (seen, _deployment(kube, namespace, "waiting")) == (set(), None)
        core = client.CoreV1Api(kube)
        secret = client.V1Secret(
            metadata=client.V1ObjectMeta(name="later-secrets"), string_data={"db": "a", "other": "b"}
        )
        core.create_namespaced_secret(namespace, secret)
        wait_ready(kube, namespace, "waiting")
        core.patch_namespaced_secret("later-secrets", namespace, {"stringData": {"other": "rotated"}})
        time.sleep(7)  # two resyncs: another service's key rotated is no new release
    finally:
        stop.set()
        recorder.join(5)
    assert len(seen) == 1, seen
    assert (condition(read(kube, namespace, "waiting"), "Migrated") or {}).get("status") == "True"
