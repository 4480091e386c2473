"""Operator mode on the real node: the umbrella chart renders Microservice resources, the
operator (its own image, in a pod) turns them into Deployments, and the same flow works."""

from __future__ import annotations

from kubernetes import client
from kubernetes.client import ApiClient

from tests.support.node import SERVICES, Platform


def test_operator_mode_serves_the_same_flow(kube: ApiClient, operator_platform: Platform) -> None:
    namespace = operator_platform.namespace
    objects = client.CustomObjectsApi(kube)
    microservices = objects.list_namespaced_custom_object(
        "flotilla.dev", "v1alpha1", namespace, "microservices"
    )["items"]
    assert {m["metadata"]["name"] for m in microservices} == set(SERVICES)
    for microservice in microservices:
        conditions = {c["type"]: c["status"] for c in microservice.get("status", {}).get("conditions", [])}
        assert conditions.get("Ready") == "True", microservice.get("status")

    operator_pods = (
        client.CoreV1Api(kube)
        .list_namespaced_pod(namespace, label_selector="app.kubernetes.io/name=flotilla-operator")
        .items
    )
    assert [pod.status.phase for pod in operator_pods] == ["Running"]
    deployments = client.AppsV1Api(kube).list_namespaced_deployment(namespace).items
    managed = {
        d.metadata.name
        for d in deployments
        if any(ref.kind == "Microservice" for ref in d.metadata.owner_references or [])
    }
    assert managed == set(SERVICES)

    result = operator_platform.customer_flow()
    assert result["order"]["status"] == "confirmed"
    assert result["stock"] == 3
