"""The API server's own count of the requests one client sends, and what the benchmark adds to
the cluster for them: fake nodes for the pods, a service account per client.

A FlowSchema of the benchmark's matches one service account; API Priority and Fairness then
counts every request it dispatches for that schema
(``apiserver_flowcontrol_dispatched_requests_total{flow_schema=...}``), watches and lists
included.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from tests.support.kube import tool

DISPATCHED = "apiserver_flowcontrol_dispatched_requests_total"
PREFIX = "bench-"  # every FlowSchema of the benchmarks
PODS_PER_NODE = 110  # scripts/cluster/up.sh gives each fake node kubelet's default


def dispatched(flow_schema: str) -> float:
    """Requests the API server has dispatched for ``flow_schema`` so far."""
    read = tool("kubectl", "get", "--raw", "/metrics", timeout=60)
    if read.returncode != 0:
        raise RuntimeError(f"reading the API server's metrics failed: {read.stderr}")
    text = read.stdout
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == DISPATCHED and sample.labels.get("flow_schema") == flow_schema
    )


@contextmanager
def flow_schema(api: ApiClient, name: str, namespace: str, service_account: str) -> Iterator[str]:
    """A FlowSchema for one service account's requests (all of them), removed afterwards.

    ``name`` starts with ``PREFIX``: other such schemas are an interrupted run's, and go first.
    """
    if not name.startswith(PREFIX):
        raise ValueError(f"a benchmark's FlowSchema is named {PREFIX}..., not {name!r}")
    body = {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "FlowSchema",
        "metadata": {"name": name},
        "spec": {
            # Before the built-in service-accounts schema (9000); the same priority level.
            "matchingPrecedence": 500,
            "priorityLevelConfiguration": {"name": "workload-low"},
            "distinguisherMethod": {"type": "ByUser"},
            "rules": [
                {
                    "subjects": [
                        {
                            "kind": "ServiceAccount",
                            "serviceAccount": {"name": service_account, "namespace": namespace},
                        }
                    ],
                    "resourceRules": [
                        {
                            "verbs": ["*"],
                            "apiGroups": ["*"],
                            "resources": ["*"],
                            "clusterScope": True,
                            "namespaces": ["*"],
                        }
                    ],
                    "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                }
            ],
        },
    }
    flows = client.FlowcontrolApiserverV1Api(api)
    for stale in [str(item.metadata.name) for item in flows.list_flow_schema().items if item.metadata]:
        # Left by an interrupted run: at the same precedence, it could take this one's requests.
        if stale.startswith(PREFIX) and stale != name:
            flows.delete_flow_schema(stale)
    flows.create_flow_schema(cast(Any, body))  # the client sends a dict as it is
    try:
        yield name
    finally:
        flows.delete_flow_schema(name)


@contextmanager
def fake_nodes(api: ApiClient, pods: int) -> Iterator[int]:
    """Enough more kwok nodes (copies of the cluster's first) for ``pods`` pods; removed afterwards."""
    core = client.CoreV1Api(api)
    template = core.list_node(label_selector="type=kwok").items[0]
    count = -(-pods // PODS_PER_NODE)
    names = [f"kwok-bench-{index}" for index in range(count)]
    for name in names:
        try:
            core.create_node(cast(Any, _copy_of(api, template, name)))
        except ApiException as exc:
            if exc.status != 409:  # 409: left by an interrupted run; used, then removed below
                raise
    try:
        yield count
    finally:
        for name in names:
            try:
                core.delete_node(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise


def _copy_of(api: ApiClient, node: Any, name: str) -> dict[str, Any]:
    body: dict[str, Any] = copy.deepcopy(api.sanitize_for_serialization(node))  # type: ignore[no-untyped-call]
    metadata = body["metadata"]
    annotations = metadata.get("annotations", {})
    body["metadata"] = {
        "name": name,
        "annotations": {key: value for key, value in annotations.items() if key.startswith("kwok")},
        "labels": {**metadata.get("labels", {}), "kubernetes.io/hostname": name},
    }
    body["spec"] = {"taints": body["spec"].get("taints", [])}
    status = body.get("status", {})
    body["status"] = {"allocatable": status.get("allocatable"), "capacity": status.get("capacity")}
    return body
