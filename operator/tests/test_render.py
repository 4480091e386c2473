"""The renderers are pure: a Microservice in, manifests out. Checked without a cluster."""

from __future__ import annotations

import copy
from typing import Any

from flotilla_operator.render import (
    CONFIG_HASH_ANNOTATION,
    RenderContext,
    config_references,
    deployment,
    external_url,
    image_tag,
    ingress,
    render,
    service,
    service_monitor,
)
from flotilla_operator.status import Condition, dependencies_condition, rollout_conditions, stamp, transitions

# A Microservice as the API server hands it over: defaults applied.
BASE: dict[str, Any] = {
    "apiVersion": "flotilla.dev/v1alpha1",
    "kind": "Microservice",
    "metadata": {"name": "orders", "namespace": "shop", "uid": "uid-1", "generation": 3},
    "spec": {
        "image": "registry.example/orders:1.4.2",
        "replicas": 2,
        "port": 8000,
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        "probes": {"liveness": {"path": "/livez"}, "readiness": {"path": "/readyz"}},
        "metrics": {"enabled": True, "path": "/metrics", "interval": "30s"},
    },
}


def ms(**spec: Any) -> dict[str, Any]:
    body = copy.deepcopy(BASE)
    body["spec"].update(spec)
    return body


def kinds(manifests: list[dict[str, Any]]) -> list[str]:
    return [m["kind"] for m in manifests]


def test_the_minimum_is_a_deployment_a_service_and_a_service_monitor() -> None:
    assert kinds(render(ms(), RenderContext())) == ["Deployment", "Service", "ServiceMonitor"]
    assert kinds(render(ms(), RenderContext(service_monitor_crd=False))) == ["Deployment", "Service"]
    assert kinds(render(ms(metrics={"enabled": False}), RenderContext())) == ["Deployment", "Service"]


def test_optional_children_follow_the_spec() -> None:
    full = ms(
        ingress={"path": "/orders"},
        autoscaling={"minReplicas": 2, "maxReplicas": 4, "targetCPUUtilizationPercentage": 70},
        disruptionBudget={"minAvailable": 1},
    )
    assert kinds(render(full, RenderContext())) == [
        "Deployment",
        "Service",
        "Ingress",
        "ServiceMonitor",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    ]


def test_pods_meet_the_restricted_pod_security_standard() -> None:
    pod = deployment(ms(), RenderContext())["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False  # no USERS_PORT=tcp://... beside the real settings


def test_rollouts_are_zero_downtime_with_probes_and_spread() -> None:
    spec = deployment(ms(), RenderContext())["spec"]
    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    container = spec["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    keys = {c["topologyKey"] for c in spec["template"]["spec"]["topologySpreadConstraints"]}
    assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}


def test_replicas_are_left_to_the_autoscaler_when_there_is_one() -> None:
    assert deployment(ms(), RenderContext())["spec"]["replicas"] == 2
    scaled = deployment(ms(autoscaling={"minReplicas": 2, "maxReplicas": 4}), RenderContext())
    assert "replicas" not in scaled["spec"]


def test_depends_on_injects_service_urls_before_the_users_env() -> None:
    env = deployment(
        ms(dependsOn=["users", "order-history"], env=[{"name": "X", "value": "1"}]), RenderContext()
    )["spec"]["template"]["spec"]["containers"][0]["env"]
    values = {e["name"]: e.get("value") for e in env}
    assert values["USERS_URL"] == "http://users.shop.svc.cluster.local"
    assert values["ORDER_HISTORY_URL"] == "http://order-history.shop.svc.cluster.local"
    assert [e["name"] for e in env][-1] == "X"


def test_the_config_hash_lands_on_the_pod_template() -> None:
    template = deployment(ms(), RenderContext(config_hash="abc123"))["spec"]["template"]
    assert template["metadata"]["annotations"] == {CONFIG_HASH_ANNOTATION: "abc123"}
    refs = config_references(
        {
            "env": [
                {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm1", "key": "a"}}},
                {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s1", "key": "b"}}},
            ],
            "envFrom": [{"configMapRef": {"name": "cm2"}}, {"secretRef": {"name": "s2"}}],
        }
    )
    assert refs == ({"cm1", "cm2"}, {"s1", "s2"})


def test_the_service_exposes_port_80_named_http() -> None:
    assert service(ms())["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ]


def test_ingress_tls_class_and_cert_manager() -> None:
    spec = {
        "host": "shop.example.com",
        "path": "/orders",
        "className": "nginx",
        "tls": {"secretName": "shop-tls", "clusterIssuer": "letsencrypt"},
    }
    rendered = ingress(ms(ingress=spec))
    assert rendered is not None
    assert rendered["spec"]["ingressClassName"] == "nginx"
    assert rendered["spec"]["tls"] == [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}]
    assert rendered["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": "letsencrypt"}
    path = rendered["spec"]["rules"][0]["http"]["paths"][0]
    assert path["backend"]["service"] == {"name": "orders", "port": {"name": "http"}}
    assert external_url(ms(ingress=spec)["spec"]) == "https://shop.example.com/orders"
    assert external_url(ms(ingress={"path": "/x"})["spec"]) is None


def test_children_carry_labels_and_a_controller_owner() -> None:
    for child in render(ms(ingress={"path": "/o"}), RenderContext()):
        assert child["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "flotilla-operator"
        assert child["metadata"]["labels"]["app.kubernetes.io/version"] == "1.4.2"
        assert child["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
        assert child["metadata"]["ownerReferences"][0]["controller"] is True


def test_service_monitor_labels_include_the_extra_ones() -> None:
    rendered = service_monitor(
        ms(metrics={"enabled": True, "path": "/m", "interval": "15s", "labels": {"release": "prom"}}),
        RenderContext(),
    )
    assert rendered is not None
    assert rendered["metadata"]["labels"]["release"] == "prom"
    assert rendered["spec"]["endpoints"] == [{"port": "http", "path": "/m", "interval": "15s"}]


def test_image_tags_become_valid_label_values() -> None:
    assert image_tag("registry:5000/team/app:2.1") == "2.1"
    assert image_tag("app") == "latest"
    assert image_tag("app@sha256:abc") == "latest"
    assert image_tag("app:" + "x" * 80) == "x" * 63


def _deployment_status(ready: int, updated: int, replicas: int, **conditions: str) -> dict[str, Any]:
    return {
        "metadata": {"generation": 2},
        "spec": {"replicas": 2},
        "status": {
            "observedGeneration": 2,
            "readyReplicas": ready,
            "updatedReplicas": updated,
            "replicas": replicas,
            "conditions": [{"type": k, "status": v} for k, v in conditions.items()],
        },
    }


def test_conditions_follow_the_deployment() -> None:
    done = {c.type: c for c in rollout_conditions(_deployment_status(2, 2, 2, Available="True"), 2)}
    assert (done["Ready"].status, done["Progressing"].status, done["Degraded"].status) == (True, False, False)
    rolling = {c.type: c for c in rollout_conditions(_deployment_status(2, 1, 3, Available="True"), 2)}
    assert (rolling["Ready"].status, rolling["Progressing"].status) == (False, True)
    missing = {c.type: c for c in rollout_conditions(None, 2)}
    assert missing["Ready"].reason == "DeploymentMissing"


def test_dependencies_condition() -> None:
    ready = {
        "metadata": {"generation": 1},
        "status": {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True"}]},
    }
    assert dependencies_condition({}).status is True
    assert dependencies_condition({"users": None}).reason == "DependencyMissing"
    assert (
        dependencies_condition({"users": {"metadata": {"generation": 1}, "status": {}}}).reason
        == "DependencyNotReady"
    )
    assert dependencies_condition({"users": ready}).status is True


def test_transition_times_move_only_when_the_status_flips() -> None:
    first = stamp([Condition("Ready", False, "Unavailable", "0/2")], None, 1)
    same = stamp([Condition("Ready", False, "Unavailable", "1/2")], first, 2)
    assert same[0]["lastTransitionTime"] == first[0]["lastTransitionTime"]
    assert same[0]["observedGeneration"] == 2
    assert transitions(first, same) == []
    flipped = stamp([Condition("Ready", True, "Available", "2/2")], same, 2)
    assert [c["type"] for c in transitions(same, flipped)] == ["Ready"]


def test_secret_mounts_become_read_only_volumes_that_roll_the_pods() -> None:
    spec = deployment(
        ms(secretMounts=[{"secretName": "jwt-keys", "mountPath": "/etc/keys"}]), RenderContext()
    )["spec"]
    pod = spec["template"]["spec"]
    assert {"name": "secret-0", "secret": {"secretName": "jwt-keys", "defaultMode": 0o440}} in pod["volumes"]
    assert {"name": "secret-0", "mountPath": "/etc/keys", "readOnly": True} in pod["containers"][0][
        "volumeMounts"
    ]
    assert config_references({"secretMounts": [{"secretName": "jwt-keys", "mountPath": "/etc/keys"}]}) == (
        set(),
        {"jwt-keys"},
    )


def test_migrate_runs_the_image_as_an_init_container_first() -> None:
    pod = deployment(
        ms(migrate=True, secretMounts=[{"secretName": "k", "mountPath": "/k"}]), RenderContext()
    )["spec"]["template"]["spec"]
    init = pod["initContainers"][0]
    assert (init["name"], init["args"], init["image"]) == (
        "migrate",
        ["migrate"],
        "registry.example/orders:1.4.2",
    )
    assert init["env"] == pod["containers"][0]["env"]
    assert init["volumeMounts"] == pod["containers"][0]["volumeMounts"]
    assert "initContainers" not in deployment(ms(), RenderContext())["spec"]["template"]["spec"]


def test_a_variable_of_the_users_own_replaces_an_injected_one() -> None:
    env = deployment(
        ms(dependsOn=["users"], env=[{"name": "USERS_URL", "value": "https://users.example"}]),
        RenderContext(),
    )["spec"]["template"]["spec"]["containers"][0]["env"]
    assert [e for e in env if e["name"] == "USERS_URL"] == [
        {"name": "USERS_URL", "value": "https://users.example"}
    ]
