"""NetworkPolicies read back from the API and compared with what the resources declare."""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client import ApiClient

from tests.support.node import INGRESS_NAMESPACE, PROMETHEUS_NAMESPACE, RELEASE, Platform


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A label selector (matchLabels and matchExpressions) matches ``labels``."""
    selector = selector or {}
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        matched = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not matched:
            return False
    return True


def check_network_policies(kube: ApiClient, platform: Platform) -> list[str]:
    """Read from the API: every service pod and database pod is selected by NetworkPolicies whose
    peers, taken together, are exactly its dependsOn callers, the ingress controller's namespace
    (routed services), Prometheus' namespace (scraped services) and the release's test pod; a
    database's only its own service. Returns the pods checked. Enforcing them is the CNI's."""
    namespace = platform.namespace
    core, networking = client.CoreV1Api(kube), client.NetworkingV1Api(kube)
    policies = kube.sanitize_for_serialization(networking.list_namespaced_network_policy(namespace))["items"]
    pods = [pod for pod in core.list_namespaced_pod(namespace).items if pod.status.phase == "Running"]
    namespaces = {ns.metadata.name: ns.metadata.labels or {} for ns in core.list_namespace().items}
    microservices = {m["metadata"]["name"]: m["spec"] for m in platform.microservices()}

    # Who a peer admits, by name: the services' and databases' pods, the test pod, namespaces.
    candidates: dict[str, list[dict[str, str]]] = {
        "helm-test": [
            {
                "app.kubernetes.io/name": "flotilla",
                "app.kubernetes.io/instance": RELEASE,
                "app.kubernetes.io/component": "test",
            }
        ]
    }
    for pod in pods:
        candidates.setdefault(pod.metadata.labels["app.kubernetes.io/name"], []).append(pod.metadata.labels)

    def admitted(peer: dict[str, Any]) -> set[str]:
        if "ipBlock" in peer:
            return {f"ipBlock {peer['ipBlock']}"}
        if "namespaceSelector" in peer:
            selector = peer["namespaceSelector"]
            named = (selector.get("matchLabels") or {}).get("kubernetes.io/metadata.name")
            found = {named} if named else {n for n, labels in namespaces.items() if selects(selector, labels)}
            if "podSelector" in peer:  # only those pods of those namespaces: not the namespace
                return {f"pods {peer['podSelector']} of namespace/{name}" for name in found}
            return {f"namespace/{name}" for name in found}
        # Pods of this namespace: every candidate the selector matches (an empty one matches all).
        found = {
            name for name, sets in candidates.items() if any(selects(peer["podSelector"], s) for s in sets)
        }
        return found or {f"pods {peer['podSelector']}"}

    def admitted_to(labels: dict[str, str]) -> tuple[set[str], set[str]]:
        selecting = [
            policy
            for policy in policies
            if "Ingress" in policy["spec"].get("policyTypes", ["Ingress"])
            and selects(policy["spec"]["podSelector"], labels)
        ]
        assert selecting, f"no NetworkPolicy selects the pod labelled {labels}"
        peers: set[str] = set()
        ports: set[str] = set()
        for rule in (rule for policy in selecting for rule in policy["spec"].get("ingress") or []):
            assert rule.get("from"), f"a rule admits every source: {rule}"
            assert rule.get("ports"), f"a rule admits every port: {rule}"
            peers |= set().union(*(admitted(peer) for peer in rule["from"]))
            ports |= {str(port["port"]) for port in rule["ports"]}
        return peers, ports

    checked: list[str] = []
    for pod in pods:
        labels = pod.metadata.labels
        name = labels["app.kubernetes.io/name"]
        if name in microservices and labels.get("app.kubernetes.io/instance") == name:
            spec = microservices[name]
            expected = {
                caller for caller, other in microservices.items() if name in other.get("dependsOn", [])
            }
            expected.add("helm-test")
            if spec.get("ingress"):
                expected.add(f"namespace/{INGRESS_NAMESPACE}")
            if (spec.get("metrics") or {}).get("enabled", True):
                expected.add(f"namespace/{PROMETHEUS_NAMESPACE}")
            peers, ports = admitted_to(labels)
            assert peers == expected, f"{pod.metadata.name}: admits {peers}, declared {expected}"
            assert ports <= {"http", str(spec.get("port", 8000))}, f"{pod.metadata.name}: ports {ports}"
        elif name == "postgresql":
            service = labels["app.kubernetes.io/component"].removesuffix("-database")
            peers, ports = admitted_to(labels)
            assert peers == {service}, f"{pod.metadata.name}: admits {peers}, declared {{{service!r}}}"
            assert ports == {"5432"}
        else:
            continue
        checked.append(str(pod.metadata.name))
    return checked
