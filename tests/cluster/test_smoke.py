"""The local control plane behaves like Kubernetes: workloads, services, CRDs, SSA, Pod Security."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

from tests.support.kube import temporary_namespace, wait_for

LABELS = {"app.kubernetes.io/name": "smoke"}


def _deployment(name: str, replicas: int) -> dict[str, object]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": LABELS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": LABELS},
            "template": {
                "metadata": {"labels": LABELS},
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/smoke:1"}]},
            },
        },
    }


def test_a_deployment_becomes_available_on_the_fake_nodes(kube: ApiClient, namespace: str) -> None:
    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)
    apps.create_namespaced_deployment(namespace, _deployment("smoke", 3))

    def available() -> bool:
        status = apps.read_namespaced_deployment_status("smoke", namespace).status
        conditions = {c.type: c.status for c in status.conditions or []}
        return conditions.get("Available") == "True" and status.ready_replicas == 3

    wait_for(available, what="the Deployment to be Available")
    pods = core.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/name=smoke").items
    nodes = {node.metadata.name for node in core.list_node(label_selector="type=kwok").items}
    assert len(nodes) >= 2
    assert {pod.spec.node_name for pod in pods} <= nodes
    assert all(pod.status.phase == "Running" and pod.status.pod_ip for pod in pods)


def test_a_service_gets_a_cluster_ip(kube: ApiClient, namespace: str) -> None:
    service = client.CoreV1Api(kube).create_namespaced_service(
        namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="smoke"),
            spec=client.V1ServiceSpec(
                selector=LABELS, ports=[client.V1ServicePort(name="http", port=80, target_port=8000)]
            ),
        ),
    )
    assert service.spec.cluster_ip.startswith("10.96.")


def test_a_crd_and_one_of_its_objects(kube: ApiClient, namespace: str) -> None:
    group, plural = "smoke.flotilla.dev", "widgets"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"size": {"type": "integer", "minimum": 1}},
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    extensions = client.ApiextensionsV1Api(kube)
    try:
        extensions.create_custom_resource_definition(crd)
    except ApiException as exc:
        if exc.status != 409:
            raise

    def established() -> bool:
        status = extensions.read_custom_resource_definition(f"{plural}.{group}").status
        return any(c.type == "Established" and c.status == "True" for c in status.conditions or [])

    wait_for(established, what="the CRD to be Established")
    objects = client.CustomObjectsApi(kube)
    body: dict[str, Any] = {
        "apiVersion": f"{group}/v1",
        "kind": "Widget",
        "metadata": {"name": "w1"},
        "spec": {"size": 3},
    }
    wait_for(lambda: _try_create(objects, group, namespace, plural, body), what="the CRD to serve")
    stored = cast(dict[str, Any], objects.get_namespaced_custom_object(group, "v1", namespace, plural, "w1"))
    assert stored["spec"] == {"size": 3}
    with pytest.raises(ApiException) as invalid:
        objects.create_namespaced_custom_object(
            group, "v1", namespace, plural, {**body, "metadata": {"name": "w2"}, "spec": {"size": 0}}
        )
    assert invalid.value.status == 422
    assert "spec.size" in invalid.value.body


def _try_create(
    objects: client.CustomObjectsApi, group: str, namespace: str, plural: str, body: dict[str, Any]
) -> bool:
    try:
        objects.create_namespaced_custom_object(group, "v1", namespace, plural, body)
    except ApiException as exc:
        if exc.status == 404:  # discovery has not caught up yet
            return False
        raise
    return True


def test_server_side_apply_merges_and_tracks_field_managers(kube: ApiClient, namespace: str) -> None:
    def apply(data: dict[str, str], manager: str) -> client.V1ConfigMap:
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": data}
        return client.CoreV1Api(kube).patch_namespaced_config_map(
            "ssa",
            namespace,
            body,
            field_manager=manager,
            force=True,
            _content_type="application/apply-patch+yaml",
        )

    apply({"a": "1"}, "first")
    merged = apply({"b": "2"}, "second")
    assert merged.data == {"a": "1", "b": "2"}
    assert {entry.manager for entry in merged.metadata.managed_fields} == {"first", "second"}
    dropped = apply({}, "first")  # a manager that stops applying a field removes it
    assert dropped.data == {"b": "2"}


def test_a_restricted_namespace_rejects_a_privileged_pod(kube: ApiClient) -> None:
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    with temporary_namespace(kube, labels) as namespace:
        privileged = client.V1Pod(
            metadata=client.V1ObjectMeta(name="privileged"),
            spec=client.V1PodSpec(
                containers=[
                    client.V1Container(
                        name="app",
                        image="registry.invalid/smoke:1",
                        security_context=client.V1SecurityContext(privileged=True),
                    )
                ]
            ),
        )
        with pytest.raises(ApiException) as refused:
            client.CoreV1Api(kube).create_namespaced_pod(namespace, privileged)
        assert refused.value.status == 403
        message = json.loads(refused.value.body)["message"]
        assert 'violates PodSecurity "restricted:' in message
        assert "privileged" in message


def test_fake_nodes_renew_their_leases_like_kubelets(kube: ApiClient) -> None:
    leases = client.CoordinationV1Api(kube).list_namespaced_lease("kube-node-lease").items
    nodes = {
        node.metadata.name for node in client.CoreV1Api(kube).list_node(label_selector="type=kwok").items
    }
    renewed = {lease.metadata.name: lease.spec.renew_time for lease in leases}
    assert nodes <= set(renewed)
    now = datetime.now(UTC)
    assert all((now - renewed[name]).total_seconds() < 60 for name in nodes)
