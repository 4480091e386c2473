"""The renderers are pure: a Microservice in, manifests out. Checked without a cluster."""

from __future__ import annotations

from typing import Any

import pytest
from samples import microservice

from flotilla_operator.render import (
    CONFIG_HASH_ANNOTATION,
    ConfigMissing,
    ConfigRef,
    RenderContext,
    config_digest,
    config_references,
    deployment,
    disruption_budget,
    external_url,
    image_tag,
    ingress,
    labels,
    migration_job,
    migration_job_name,
    migration_labels,
    network_policy,
    render,
    selector_labels,
    servers_transport,
    service,
    service_monitor,
)
from flotilla_operator.status import (
    Condition,
    dependencies_condition,
    migration_condition,
    rollout_conditions,
    stamp,
    transitions,
    with_migration,
)


def ms(**spec: Any) -> dict[str, Any]:
    return microservice(**spec)


def kinds(manifests: list[dict[str, Any]]) -> list[str]:
    return [m["kind"] for m in manifests]


def test_the_minimum_is_a_deployment_a_service_a_service_monitor_and_a_network_policy() -> None:
    assert kinds(render(ms(), RenderContext())) == [
        "Deployment",
        "Service",
        "ServiceMonitor",
        "NetworkPolicy",
    ]
    assert kinds(render(ms(), RenderContext(service_monitor_crd=False))) == [
        "Deployment",
        "Service",
        "NetworkPolicy",
    ]
    assert kinds(
        render(ms(metrics={"enabled": False}, networkPolicy={"enabled": False}), RenderContext())
    ) == [
        "Deployment",
        "Service",
    ]


def test_optional_children_follow_the_spec() -> None:
    full = ms(
        ingress={"path": "/orders"},
        autoscaling={"minReplicas": 2, "maxReplicas": 4, "targetCPUUtilizationPercentage": 70},
        disruptionBudget={"minAvailable": 1},
        migrate=True,
    )
    assert kinds(render(full, RenderContext())) == [
        "Job",
        "Deployment",
        "Service",
        "Ingress",
        "ServiceMonitor",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
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


def test_spans_are_named_after_the_microservice_unless_its_env_names_them() -> None:
    def env(**spec: Any) -> dict[str, str | None]:
        container = deployment(ms(**spec), RenderContext())["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e.get("value") for e in container["env"]}

    assert env()["OTEL_SERVICE_NAME"] == "orders"
    assert (
        env(env=[{"name": "OTEL_SERVICE_NAME", "value": "shop-orders"}])["OTEL_SERVICE_NAME"] == "shop-orders"
    )


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
    assert refs == [
        ConfigRef("ConfigMap", "cm1", "a"),
        ConfigRef("ConfigMap", "cm2"),
        ConfigRef("Secret", "s1", "b"),
        ConfigRef("Secret", "s2"),
    ]


def test_the_service_exposes_port_80_named_http() -> None:
    assert service(ms(), RenderContext())["spec"]["ports"] == [
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
    for child in render(ms(ingress={"path": "/o"}, migrate=True), RenderContext()):
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


def test_scraped_series_carry_the_operators_label_so_alerts_find_every_microservice() -> None:
    rendered = service_monitor(ms(), RenderContext())
    assert rendered is not None
    assert rendered["spec"]["targetLabels"] == ["app.kubernetes.io/managed-by"]
    # The label it copies is on the Service it selects, with the operator's value.
    assert (
        service(ms(), RenderContext())["metadata"]["labels"]["app.kubernetes.io/managed-by"]
        == "flotilla-operator"
    )


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
    assert dependencies_condition(ms(), {}).status is True
    assert dependencies_condition(ms(), {"users": None}).reason == "DependencyMissing"
    assert (
        dependencies_condition(ms(), {"users": {"metadata": {"generation": 1}, "status": {}}}).reason
        == "DependencyNotReady"
    )
    assert dependencies_condition(ms(), {"users": ready}).status is True


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
    assert config_references({"secretMounts": [{"secretName": "jwt-keys", "mountPath": "/etc/keys"}]}) == [
        ConfigRef("Secret", "jwt-keys")
    ]


def test_a_variable_of_the_users_own_replaces_an_injected_one() -> None:
    env = deployment(
        ms(dependsOn=["users"], env=[{"name": "USERS_URL", "value": "https://users.example"}]),
        RenderContext(),
    )["spec"]["template"]["spec"]["containers"][0]["env"]
    assert [e for e in env if e["name"] == "USERS_URL"] == [
        {"name": "USERS_URL", "value": "https://users.example"}
    ]


def pod(manifest: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return spec


def test_ingress_paths_make_one_ingress_with_every_route() -> None:
    rendered = ingress(ms(ingress={"paths": ["/users", "/auth", "/.well-known"], "pathType": "Prefix"}))
    assert rendered is not None
    paths = rendered["spec"]["rules"][0]["http"]["paths"]
    assert [(p["path"], p["pathType"]) for p in paths] == [
        ("/users", "Prefix"),
        ("/auth", "Prefix"),
        ("/.well-known", "Prefix"),
        ("/docs/orders", "Prefix"),
    ]
    assert all(p["backend"]["service"] == {"name": "orders", "port": {"name": "http"}} for p in paths)


def test_ingress_path_type_exact_and_the_deprecated_single_path() -> None:
    exact = ingress(ms(ingress={"paths": ["/healthz"], "pathType": "Exact"}))
    assert exact is not None
    assert exact["spec"]["rules"][0]["http"]["paths"][0]["pathType"] == "Exact"
    single = ingress(ms(ingress={"path": "/orders"}))
    assert single is not None
    assert [p["path"] for p in single["spec"]["rules"][0]["http"]["paths"]] == ["/orders", "/docs/orders"]
    assert (
        external_url(ms(ingress={"host": "a.example", "paths": ["/x", "/y"]})["spec"]) == "http://a.example/x"
    )


def test_the_api_page_is_served_where_the_ingress_routes_it_as_a_prefix_even_beside_exact_paths() -> None:
    routed = ms(ingress={"paths": ["/orders"], "pathType": "Exact"})
    rendered = ingress(routed)
    assert rendered is not None
    assert [(p["path"], p["pathType"]) for p in rendered["spec"]["rules"][0]["http"]["paths"]] == [
        ("/orders", "Exact"),
        ("/docs/orders", "Prefix"),  # its assets and document are below it
    ]
    container = deployment(routed, RenderContext())["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "API_DOCS_PATH", "value": "/docs/orders"} in container["env"]
    assert "API_DOCS" not in {entry["name"] for entry in container["env"]}


def test_api_docs_disabled_switches_the_page_off_and_routes_no_docs_path() -> None:
    off = ms(ingress={"paths": ["/orders"]}, apiDocs={"enabled": False})
    rendered = ingress(off)
    assert rendered is not None
    assert [p["path"] for p in rendered["spec"]["rules"][0]["http"]["paths"]] == ["/orders"]
    env = deployment(off, RenderContext())["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "API_DOCS", "value": "false"} in env
    assert "API_DOCS_PATH" not in {entry["name"] for entry in env}


def test_a_service_without_ingress_still_serves_its_api_page_at_its_own_path() -> None:
    env = deployment(ms(), RenderContext())["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "API_DOCS_PATH", "value": "/docs/orders"} in env
    assert ingress(ms()) is None


def test_ingress_without_class_name_leaves_it_to_the_default_ingress_class() -> None:
    rendered = ingress(ms(ingress={"paths": ["/orders"]}))
    assert rendered is not None
    assert "ingressClassName" not in rendered["spec"]
    assert "host" not in rendered["spec"]["rules"][0]


def test_node_selector_tolerations_affinity_priority_and_pull_secrets_reach_both_pods() -> None:
    settings = {
        "nodeSelector": {"disktype": "ssd"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "shop", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"x": 1}}},
        "imagePullSecrets": [{"name": "registry"}],
        "priorityClassName": "business-critical",
    }
    body = ms(migrate=True, **settings)
    job = migration_job(body, RenderContext())
    assert job is not None
    for rendered in (pod(deployment(body, RenderContext())), pod(job)):
        assert {key: rendered[key] for key in settings} == settings
    assert not {"nodeSelector", "tolerations", "affinity"} & set(pod(deployment(ms(), RenderContext())))


def test_topology_spread_defaults_to_hostname_and_zone_and_is_replaced_by_the_specs() -> None:
    default = pod(deployment(ms(), RenderContext()))["topologySpreadConstraints"]
    assert {(c["topologyKey"], c["whenUnsatisfiable"]) for c in default} == {
        ("kubernetes.io/hostname", "ScheduleAnyway"),
        ("topology.kubernetes.io/zone", "ScheduleAnyway"),
    }
    own = [{"maxSkew": 2, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]
    rendered = pod(deployment(ms(topologySpreadConstraints=own), RenderContext()))[
        "topologySpreadConstraints"
    ]
    assert rendered == [
        {
            "labelSelector": {
                "matchLabels": {"app.kubernetes.io/name": "orders", "app.kubernetes.io/instance": "orders"}
            },
            **own[0],
        }
    ]
    selected = [{**own[0], "labelSelector": {"matchLabels": {"tier": "web"}}}]
    assert (
        pod(deployment(ms(topologySpreadConstraints=selected), RenderContext()))["topologySpreadConstraints"]
        == selected
    )
    assert (
        pod(deployment(ms(topologySpreadConstraints=[]), RenderContext()))["topologySpreadConstraints"] == []
    )


def test_pod_annotations_and_labels_never_replace_the_operators() -> None:
    template = deployment(
        ms(podAnnotations={"example.com/team": "shop"}, podLabels={"team": "shop"}),
        RenderContext(config_hash="abc"),
    )["spec"]["template"]
    assert template["metadata"]["annotations"] == {"example.com/team": "shop", CONFIG_HASH_ANNOTATION: "abc"}
    assert template["metadata"]["labels"]["team"] == "shop"
    assert template["metadata"]["labels"]["app.kubernetes.io/instance"] == "orders"
    sneaky = deployment(ms(podLabels={"app.kubernetes.io/component": "x"}), RenderContext())
    assert sneaky["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "microservice"


def test_extra_volumes_and_mounts_come_after_the_operators_own() -> None:
    body = ms(
        volumes=[{"name": "cache", "emptyDir": {}}],
        volumeMounts=[{"name": "cache", "mountPath": "/var/cache/app"}],
        secretMounts=[{"secretName": "keys", "mountPath": "/keys"}],
    )
    rendered = pod(deployment(body, RenderContext()))
    assert [v["name"] for v in rendered["volumes"]] == ["tmp", "secret-0", "cache"]
    assert [m["name"] for m in rendered["containers"][0]["volumeMounts"]] == ["tmp", "secret-0", "cache"]


def test_disruption_budgets_never_block_a_drain_on_unhealthy_pods() -> None:
    rendered = disruption_budget(ms(disruptionBudget={"maxUnavailable": "25%"}))
    assert rendered is not None
    assert rendered["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert rendered["spec"]["maxUnavailable"] == "25%"


def test_a_new_deployment_under_autoscaling_starts_at_the_given_replicas() -> None:
    scaled = ms(replicas=5, autoscaling={"minReplicas": 3, "maxReplicas": 9})
    assert deployment(scaled, RenderContext(), replicas=3)["spec"]["replicas"] == 3
    assert deployment(ms(replicas=5), RenderContext(), replicas=3)["spec"]["replicas"] == 5


# --- NetworkPolicy ---------------------------------------------------------------------------


def _peers(body: dict[str, Any], context: RenderContext) -> list[dict[str, Any]]:
    policy = network_policy(body, context)
    assert policy is not None
    rules: list[dict[str, Any]] = policy["spec"]["ingress"]
    if not rules:
        return []
    assert rules[0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    peers: list[dict[str, Any]] = rules[0]["from"]
    return peers


def test_the_network_policy_admits_callers_ingress_and_prometheus_on_http_only() -> None:
    context = RenderContext(callers=("orders", "cart"), ingress_namespace="edge", prometheus_namespace="mon")
    body = ms(ingress={"paths": ["/x"]})
    policy = network_policy(body, context)
    assert policy is not None
    # It selects the service's pods and its migration Jobs' pods, and nobody else's.
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= labels(body).items()
    assert selector.items() <= migration_labels(body).items()
    assert selector == {"app.kubernetes.io/name": "orders"}
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert _peers(ms(ingress={"paths": ["/x"]}), context) == [
        {
            "podSelector": {
                "matchLabels": {"app.kubernetes.io/name": "cart", "app.kubernetes.io/instance": "cart"}
            }
        },
        {
            "podSelector": {
                "matchLabels": {"app.kubernetes.io/name": "orders", "app.kubernetes.io/instance": "orders"}
            }
        },
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "edge"}}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mon"}}},
    ]


def test_the_network_policy_follows_the_spec_and_its_extra_peers() -> None:
    defaults = RenderContext()
    assert _peers(ms(), defaults) == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    with_ingress = _peers(ms(ingress={"paths": ["/"]}, metrics={"enabled": False}), defaults)
    assert with_ingress == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "traefik"}}}
    ]
    extra = {"podSelector": {"matchLabels": {"app.kubernetes.io/component": "test"}}}
    assert _peers(ms(networkPolicy={"enabled": True, "from": [extra]}), defaults)[-1] == extra
    assert network_policy(ms(networkPolicy={"enabled": False}), defaults) is None


def test_egress_is_dns_the_dependencies_and_the_extra_peers_only() -> None:
    database = {"podSelector": {"matchLabels": {"app.kubernetes.io/component": "orders-database"}}}
    body = ms(dependsOn=["users", "catalog"], networkPolicy={"to": [database]})
    policy = network_policy(body, RenderContext())
    assert policy is not None
    dns = {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    assert policy["spec"]["egress"] == [
        dns,
        {
            "to": [
                {"podSelector": {"matchLabels": selector_labels("users")}},
                {"podSelector": {"matchLabels": selector_labels("catalog")}},
                database,
            ]
        },
    ]
    alone = network_policy(ms(), RenderContext())
    assert alone is not None
    assert alone["spec"]["egress"] == [dns]  # no rule without peers: nothing else goes out


def test_restrict_egress_false_leaves_egress_open() -> None:
    policy = network_policy(ms(networkPolicy={"restrictEgress": False}), RenderContext())
    assert policy is not None
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert "egress" not in policy["spec"]


def test_a_network_policy_with_nobody_to_admit_admits_nobody() -> None:
    """An ingress rule without peers would admit every source: then there is no rule at all."""
    policy = network_policy(ms(metrics={"enabled": False}), RenderContext())
    assert policy is not None
    assert policy["spec"]["ingress"] == []


# --- Migration Job ---------------------------------------------------------------------------


def test_migrate_renders_a_job_instead_of_an_init_container() -> None:
    body = ms(
        migrate=True, secretMounts=[{"secretName": "k", "mountPath": "/k"}], serviceAccountName="orders"
    )
    job = migration_job(body, RenderContext())
    assert job is not None
    service_pod = pod(deployment(body, RenderContext()))
    assert "initContainers" not in service_pod
    container = pod(job)["containers"][0]
    assert (container["name"], container["args"], container["image"]) == (
        "migrate",
        ["migrate"],
        "registry.example/orders:1.4.2",
    )
    for key in ("env", "volumeMounts", "securityContext", "resources"):
        assert container[key] == service_pod["containers"][0][key]
    assert pod(job)["volumes"] == service_pod["volumes"]
    assert pod(job)["securityContext"] == service_pod["securityContext"]
    assert (service_pod["automountServiceAccountToken"], pod(job)["automountServiceAccountToken"]) == (
        True,
        False,
    )
    assert migration_job(ms(), RenderContext()) is None


def test_the_migration_job_runs_once_with_a_bounded_budget() -> None:
    job = migration_job(ms(migrate=True), RenderContext())
    assert job is not None
    assert job["spec"]["backoffLimit"] == 3
    assert job["spec"]["activeDeadlineSeconds"] == 600
    assert pod(job)["restartPolicy"] == "Never"
    assert pod(job)["automountServiceAccountToken"] is False
    assert pod(job)["enableServiceLinks"] is False
    assert "livenessProbe" not in pod(job)["containers"][0]


def test_migration_pods_are_not_selected_by_the_service_but_by_the_database() -> None:
    job = migration_job(ms(migrate=True), RenderContext())
    assert job is not None
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "orders"
    assert labels["app.kubernetes.io/instance"] == "orders-migrate"
    assert labels["app.kubernetes.io/component"] == "migration"
    selector = service(ms(), RenderContext())["spec"]["selector"]
    assert not all(labels.get(key) == value for key, value in selector.items())


def _job_name(body: dict[str, Any], config_hash: str = "", **context: Any) -> str:
    job = migration_job(body, RenderContext(config_hash=config_hash, **context))
    assert job is not None
    return str(job["metadata"]["name"])


def test_the_job_name_follows_the_revision_of_image_env_and_config() -> None:
    first = _job_name(ms(migrate=True))
    assert first.startswith("orders-migrate-")
    assert len(first) == len("orders-migrate-") + 8
    assert _job_name(ms(migrate=True)) == first
    assert _job_name(ms(migrate=True, image="registry.example/orders:1.4.3")) != first
    assert _job_name(ms(migrate=True, env=[{"name": "A", "value": "1"}])) != first
    assert _job_name(ms(migrate=True, envFrom=[{"secretRef": {"name": "s"}}])) != first
    assert _job_name(ms(migrate=True, secretMounts=[{"secretName": "k", "mountPath": "/k"}])) != first
    assert _job_name(ms(migrate=True, volumes=[{"name": "v", "emptyDir": {}}])) != first
    assert _job_name(ms(migrate=True), config_hash="abc") != first
    assert len(migration_job_name("x" * 63, "abcdef12")) <= 63


@pytest.mark.parametrize(
    "change",
    [
        {"replicas": 7},
        {"resources": {"requests": {"cpu": "2"}, "limits": {"memory": "1Gi"}}},
        {"nodeSelector": {"disk": "ssd"}},
        {"tolerations": [{"operator": "Exists"}]},
        {"podAnnotations": {"example.com/team": "shop"}},
        {"podLabels": {"team": "shop"}},
        {"dependsOn": ["users"]},
        {"port": 9000},
        {"tls": {"secretName": "orders-tls"}},
    ],
    ids=[
        "replicas",
        "resources",
        "nodeSelector",
        "tolerations",
        "podAnnotations",
        "podLabels",
        "dependsOn",
        "port",
        "tls",
    ],
)
def test_what_the_migration_does_not_run_with_keeps_the_revision(change: dict[str, Any]) -> None:
    """A Job's template is immutable: a new revision would re-run the migration for nothing."""
    assert _job_name(ms(migrate=True, **change)) == _job_name(ms(migrate=True))
    assert _job_name(ms(migrate=True), callers=("cart",)) == _job_name(ms(migrate=True))


SHARED = {"users-db": "dXNlcnM=", "orders-db": "b3JkZXJz", "admin": "YWRtaW4="}
USERS_REFS = config_references(
    {
        "env": [{"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "shop", "key": "users-db"}}}],
        "envFrom": [{"configMapRef": {"name": "settings"}}],
    }
)


def _digest(secret: dict[str, str] | None, settings: dict[str, str] | None = None) -> str:
    return config_digest(
        USERS_REFS, {("Secret", "shop"): secret, ("ConfigMap", "settings"): settings or {"A": "1"}}
    )


def test_the_config_digest_reads_only_the_referenced_keys_and_whole_env_from_objects() -> None:
    first = _digest(SHARED)
    assert _digest({**SHARED, "orders-db": "cm90YXRlZA=="}) == first  # another service's key rotated
    assert _digest({**SHARED, "users-db": "cm90YXRlZA=="}) != first
    assert _digest(SHARED, {"A": "1", "B": "2"}) != first  # envFrom reads the whole ConfigMap
    assert config_digest([], {}) == ""


def test_required_config_that_is_absent_is_named_and_optional_config_is_not() -> None:
    with pytest.raises(ConfigMissing, match=r"Secret shop \(key users-db\)") as raised:
        _digest(None)
    assert raised.value.missing == [ConfigRef("Secret", "shop", "users-db")]
    with pytest.raises(ConfigMissing, match=r"Secret shop \(key users-db\)"):
        _digest({"admin": "YWRtaW4="})
    optional = [ConfigRef("Secret", "later", None, optional=True)]
    assert config_digest(optional, {("Secret", "later"): None}) != ""


def test_secret_and_config_map_volumes_are_read_whole() -> None:
    refs = config_references(
        {
            "volumes": [
                {"name": "a", "secret": {"secretName": "tls"}},
                {"name": "b", "configMap": {"name": "conf", "optional": True}},
                {"name": "c", "projected": {"sources": [{"secret": {"name": "extra"}}]}},
            ]
        }
    )
    assert refs == [
        ConfigRef("ConfigMap", "conf", None, optional=True),
        ConfigRef("Secret", "extra"),
        ConfigRef("Secret", "tls"),
    ]


@pytest.mark.parametrize(
    ("conditions", "status", "reason"),
    [
        ([], False, "Running"),
        ([{"type": "Complete", "status": "True"}], True, "Succeeded"),
        ([{"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}], False, "Failed"),
    ],
    ids=["running", "succeeded", "failed"],
)
def test_the_migrated_condition_follows_the_job(
    conditions: list[dict[str, Any]], status: bool, reason: str
) -> None:
    job = {"metadata": {"name": "orders-migrate-1"}, "status": {"conditions": conditions}}
    migrated = migration_condition(job)
    assert (migrated.type, migrated.status, migrated.reason) == ("Migrated", status, reason)
    rollout = {c.type: c for c in with_migration(rollout_conditions(None, 2), migrated)}
    assert rollout["Degraded"].status is (reason == "Failed")
    if reason == "Failed":
        assert "BackoffLimitExceeded" in rollout["Degraded"].message


def test_secret_items_reach_only_the_containers_they_are_for() -> None:
    mount = {
        "secretName": "credentials",
        "mountPath": "/etc/flotilla/secrets",
        "items": [
            {"key": "db-url", "path": "DATABASE_URL"},
            {"key": "client-secret", "path": "ORDERS_CLIENT_SECRET", "usedBy": ["service"]},
            {"key": "admin", "path": "ADMIN_PASSWORD", "usedBy": ["migration"]},
        ],
    }
    signing = {"secretName": "signing", "mountPath": "/signing", "usedBy": ["service"]}
    body = ms(migrate=True, secretMounts=[mount, {"secretName": "keys", "mountPath": "/keys"}, signing])
    pod = deployment(body, RenderContext())["spec"]["template"]["spec"]
    job = migration_job(body, RenderContext())
    assert job is not None
    job_pod = job["spec"]["template"]["spec"]

    def files(pod_spec: dict[str, Any]) -> dict[str, Any]:
        return {
            v["secret"]["secretName"]: v["secret"].get("items") for v in pod_spec["volumes"] if "secret" in v
        }

    assert files(pod) == {
        "credentials": [
            {"key": "db-url", "path": "DATABASE_URL"},
            {"key": "client-secret", "path": "ORDERS_CLIENT_SECRET"},
        ],
        "keys": None,  # no items: every key, in both
        "signing": None,
    }
    assert files(job_pod) == {
        "credentials": [
            {"key": "db-url", "path": "DATABASE_URL"},
            {"key": "admin", "path": "ADMIN_PASSWORD"},
        ],
        "keys": None,
    }
    only_service = {**mount, "items": [mount["items"][1]]}
    lonely = migration_job(ms(migrate=True, secretMounts=[only_service]), RenderContext())
    assert lonely is not None
    container = lonely["spec"]["template"]["spec"]["containers"][0]
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/tmp"]  # nothing of it mounted


# --- HTTPS inside the cluster (spec.tls) -----------------------------------------------------

TLS = {"secretName": "orders-tls"}
TLS_ENV = {
    "TLS_CERT_FILE": "/etc/flotilla/tls/tls.crt",
    "TLS_KEY_FILE": "/etc/flotilla/tls/tls.key",
    "TLS_CA_FILE": "/etc/flotilla/tls/ca.crt",
}
ROUTED = {"host": "shop.example.com", "paths": ["/orders"]}


def container(manifest: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = pod(manifest)["containers"][0]
    return found


def env_values(manifest: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in container(manifest)["env"]}


def by_kind(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {m["kind"]: m for m in manifests}


def test_without_tls_the_service_speaks_plain_http_as_before() -> None:
    body = ms(dependsOn=["users"], ingress=ROUTED, migrate=True)
    children = by_kind(render(body, RenderContext()))
    assert "ServersTransport" not in children
    assert children["Service"]["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ]
    assert "annotations" not in children["Service"]["metadata"]
    assert "annotations" not in children["Ingress"]["metadata"]
    backend = children["Ingress"]["spec"]["rules"][0]["http"]["paths"][0]["backend"]
    assert backend["service"]["port"] == {"name": "http"}
    assert children["ServiceMonitor"]["spec"]["endpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "30s"}
    ]
    served = children["Deployment"]
    assert not set(TLS_ENV) & set(env_values(served))
    assert env_values(served)["USERS_URL"] == "http://users.shop.svc.cluster.local"
    assert [v["name"] for v in pod(served)["volumes"]] == ["tmp"]
    assert container(served)["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert ConfigRef("Secret", "orders-tls") not in config_references(body["spec"])


def test_tls_mounts_its_secret_read_only_and_points_the_kit_at_its_files() -> None:
    served = deployment(ms(tls=TLS), RenderContext())
    assert {"name": "tls", "secret": {"secretName": "orders-tls", "defaultMode": 0o440}} in pod(served)[
        "volumes"
    ]
    assert {"name": "tls", "mountPath": "/etc/flotilla/tls", "readOnly": True} in container(served)[
        "volumeMounts"
    ]
    assert {name: value for name, value in env_values(served).items() if name.startswith("TLS_")} == TLS_ENV


def test_the_migration_job_neither_serves_nor_calls_so_it_gets_no_tls() -> None:
    job = migration_job(ms(tls=TLS, migrate=True), RenderContext())
    assert job is not None
    assert [v["name"] for v in pod(job)["volumes"]] == ["tmp"]
    assert [m["mountPath"] for m in container(job)["volumeMounts"]] == ["/tmp"]
    assert not set(TLS_ENV) & set(env_values(job))


def test_a_service_with_tls_calls_its_dependencies_over_https() -> None:
    served = deployment(ms(tls=TLS, dependsOn=["users", "order-history"]), RenderContext())
    assert env_values(served)["USERS_URL"] == "https://users.shop.svc.cluster.local"
    assert env_values(served)["ORDER_HISTORY_URL"] == "https://order-history.shop.svc.cluster.local"


def test_tls_probes_use_https_on_the_same_named_port() -> None:
    served = container(deployment(ms(tls=TLS), RenderContext()))
    for probe, path in (
        ("livenessProbe", "/livez"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/livez"),
    ):
        assert served[probe]["httpGet"] == {"path": path, "port": "http", "scheme": "HTTPS"}
    assert served["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]


def test_the_service_exposes_443_named_https_and_tells_traefik_how_to_verify_it() -> None:
    rendered = service(ms(tls=TLS), RenderContext())
    assert rendered["spec"]["ports"] == [
        {"name": "https", "port": 443, "targetPort": "http", "protocol": "TCP"}
    ]
    assert rendered["metadata"]["annotations"] == {
        "traefik.ingress.kubernetes.io/service.serversscheme": "https",
        "traefik.ingress.kubernetes.io/service.serverstransport": "shop-orders@kubernetescrd",
    }


def test_without_the_traefik_crd_there_is_no_servers_transport_and_no_reference_to_one() -> None:
    context = RenderContext(servers_transport_crd=False)
    assert "ServersTransport" not in kinds(render(ms(tls=TLS, ingress=ROUTED), context))
    assert servers_transport(ms(tls=TLS), context) is None
    assert service(ms(tls=TLS), context)["metadata"]["annotations"] == {
        "traefik.ingress.kubernetes.io/service.serversscheme": "https"
    }


def test_the_servers_transport_names_the_service_and_trusts_the_secrets_ca() -> None:
    children = render(ms(tls=TLS), RenderContext())
    assert kinds(children) == ["Deployment", "Service", "ServiceMonitor", "ServersTransport", "NetworkPolicy"]
    transport = by_kind(children)["ServersTransport"]
    assert transport["apiVersion"] == "traefik.io/v1alpha1"
    assert (transport["metadata"]["name"], transport["metadata"]["namespace"]) == ("orders", "shop")
    assert transport["metadata"]["labels"] == labels(ms(tls=TLS))
    assert transport["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert transport["spec"] == {"serverName": "orders.shop.svc", "rootCAs": [{"secret": "orders-tls"}]}
    assert servers_transport(ms(), RenderContext()) is None


def test_the_ingress_routes_to_the_https_port_for_traefik_and_ingress_nginx() -> None:
    routed = {**ROUTED, "tls": {"secretName": "shop-tls", "clusterIssuer": "letsencrypt"}}
    rendered = ingress(ms(tls=TLS, ingress=routed))
    assert rendered is not None
    backend = rendered["spec"]["rules"][0]["http"]["paths"][0]["backend"]
    assert backend["service"] == {"name": "orders", "port": {"name": "https"}}
    assert rendered["metadata"]["annotations"] == {
        "cert-manager.io/cluster-issuer": "letsencrypt",
        "nginx.ingress.kubernetes.io/backend-protocol": "HTTPS",
    }


def test_prometheus_scrapes_over_https_verifying_with_the_secrets_ca() -> None:
    rendered = service_monitor(ms(tls=TLS), RenderContext())
    assert rendered is not None
    assert rendered["spec"]["endpoints"] == [
        {
            "port": "https",
            "path": "/metrics",
            "interval": "30s",
            "scheme": "https",
            "tlsConfig": {
                "ca": {"secret": {"name": "orders-tls", "key": "ca.crt"}},
                "serverName": "orders.shop.svc",
            },
        }
    ]


def test_a_renewed_certificate_rolls_the_pods() -> None:
    assert ConfigRef("Secret", "orders-tls") in config_references(ms(tls=TLS)["spec"])


def test_the_network_policy_keeps_admitting_the_container_port_under_tls() -> None:
    assert _peers(ms(tls=TLS), RenderContext()) == _peers(ms(), RenderContext())


def _ready(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"generation": 1},
        "spec": spec,
        "status": {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True"}]},
    }


def test_a_caller_over_https_of_a_dependency_serving_http_is_a_tls_mismatch() -> None:
    condition = dependencies_condition(ms(tls=TLS), {"users": _ready(), "catalog": _ready(tls=TLS)})
    assert (condition.status, condition.reason) == (False, "TLSMismatch")
    assert condition.message == (
        "orders calls users over HTTPS but users serves HTTP: set spec.tls on both or neither."
    )


def test_a_caller_over_http_of_a_dependency_serving_https_is_a_tls_mismatch() -> None:
    condition = dependencies_condition(ms(), {"users": _ready(tls={"secretName": "users-tls"}), "gone": None})
    assert (condition.status, condition.reason) == (False, "TLSMismatch")
    assert condition.message == (
        "orders calls users over HTTP but users serves HTTPS: set spec.tls on both or neither."
    )


def test_dependencies_serving_the_callers_scheme_are_ready() -> None:
    condition = dependencies_condition(ms(tls=TLS), {"users": _ready(tls={"secretName": "users-tls"})})
    assert (condition.status, condition.reason) == (True, "AllReady")
