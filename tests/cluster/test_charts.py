"""The Helm charts, checked by helm itself and by the real API server (server-side dry run).

The umbrella chart deploys the services as Microservice resources only, one per entry of its
``services:`` map; the operator renders their workloads (the install test runs it)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import uuid
from collections.abc import Callable, Sequence
from typing import Any, cast

import pytest
import yaml
from cryptography import x509
from kubernetes import client
from kubernetes.client import ApiClient

from scripts.services import services
from tests.support.kube import BIN, ROOT, temporary_namespace, tool, wait_for
from tests.support.operator import GROUP, PLURAL, VERSION, OperatorProcess

CHARTS = ROOT / "charts"
UMBRELLA = str(CHARTS / "flotilla")
ALL_CHARTS = ["flotilla-lib", "flotilla-operator", "flotilla"]
ELECTION_ROLE = "flotilla-operator-leader-election"  # the operator's Lease, in the release's namespace
MONITORING_API = "monitoring.coreos.com/v1/ServiceMonitor"
RULES_API = "monitoring.coreos.com/v1/PrometheusRule"
# The kinds that only the operator may render for a service.
WORKLOAD_KINDS = {
    "Deployment",
    "Service",
    "Ingress",
    "NetworkPolicy",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "ServiceMonitor",
}
SERVICES = services()
DATABASES = [name for name, entry in SERVICES.items() if entry.get("database")]
DEFAULT_RESOURCES = yaml.safe_load((ROOT / "charts" / "flotilla" / "values.yaml").read_text())[
    "serviceDefaults"
]["resources"]
# A service that takes serviceDefaults' resources (no resources of its own).
DEFAULTED = next(name for name, entry in SERVICES.items() if "resources" not in entry)
FOURTH = {"image": "registry.example/flotilla/hello:1.0", "ingress": {"paths": ["/hello"]}}

Documents = list[dict[str, Any]]


@pytest.fixture(scope="module", autouse=True)
def dependencies() -> None:
    for chart in ("flotilla-operator", "flotilla"):  # the umbrella last: it packs the operator's
        built = tool("helm", "dependency", "build", str(CHARTS / chart))
        assert built.returncode == 0, built.stderr


def template(*args: str, release: str = "fl", namespace: str = "default") -> Documents:
    """``helm template`` of the umbrella chart, as documents."""
    rendered = tool("helm", "template", release, UMBRELLA, "-n", namespace, *args)
    assert rendered.returncode == 0, rendered.stderr
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


def of_kind(documents: Documents, kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == kind}


def secret_files(spec: dict[str, Any]) -> dict[tuple[str, str, str], tuple[str, ...]]:
    """(file, Secret, key) -> the containers given it; ``*`` for a mount of every key."""
    both = ("service", "migration")
    files = {}
    for mount in spec.get("secretMounts", []):
        for item in mount.get("items", [{"path": "*", "key": "*"}]):
            used_by = tuple(item.get("usedBy", mount.get("usedBy", both)))
            files[(item["path"], mount["secretName"], item["key"])] = used_by
    return files


def env_of(microservice: dict[str, Any]) -> dict[str, Any]:
    """name -> value, or name -> (secret, key) for a secretKeyRef."""
    found: dict[str, Any] = {}
    for entry in microservice["spec"].get("env", []):
        reference = (entry.get("valueFrom") or {}).get("secretKeyRef")
        found[entry["name"]] = (reference["name"], reference["key"]) if reference else entry.get("value")
    return found


def pod_specs(documents: Documents) -> dict[str, dict[str, Any]]:
    """kind/name -> pod spec of every pod the chart itself makes."""
    specs = {}
    for doc in documents:
        if doc["kind"] == "Pod":
            specs[f"Pod/{doc['metadata']['name']}"] = doc["spec"]
        elif "template" in (doc.get("spec") or {}) and doc["kind"] != "Microservice":
            specs[f"{doc['kind']}/{doc['metadata']['name']}"] = doc["spec"]["template"]["spec"]
    return specs


def sets(values: dict[str, str]) -> list[str]:
    return [argument for key, value in values.items() for argument in ("--set", f"{key}={value}")]


# --- helm itself ------------------------------------------------------------------------------


@pytest.mark.parametrize("chart", ALL_CHARTS)
def test_helm_lint_strict(chart: str) -> None:
    result = tool("helm", "lint", "--strict", str(CHARTS / chart))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_helm_template_works_without_a_cluster(tmp_path: Any) -> None:
    """GitOps renders with no cluster to look up: the generated Secrets are simply new."""
    result = subprocess.run(
        [str(BIN / "helm"), "template", "fl", UMBRELLA],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "KUBECONFIG": str(tmp_path / "no-such-kubeconfig")},
    )
    assert result.returncode == 0, result.stderr
    kinds = [doc["kind"] for doc in yaml.safe_load_all(result.stdout) if doc]
    assert kinds.count("Microservice") == len(SERVICES) and kinds.count("Secret") == 2


# --- what the umbrella renders ----------------------------------------------------------------


def test_the_umbrella_renders_the_services_only_as_microservices() -> None:
    documents = template("--api-versions", MONITORING_API)
    microservices = of_kind(documents, "Microservice")
    assert list(microservices) == sorted(SERVICES)
    for kind in WORKLOAD_KINDS:
        assert not set(of_kind(documents, kind)) & set(SERVICES), f"a {kind} of a service in the chart"
    # The operator's own Deployment is the chart's one Deployment.
    assert list(of_kind(documents, "Deployment")) == ["flotilla-operator"]
    assert set(of_kind(documents, "StatefulSet")) == {f"fl-{name}-postgresql" for name in DATABASES}
    # Each database's, and the operator's own.
    assert set(of_kind(documents, "NetworkPolicy")) == {
        *(f"fl-{name}-postgresql" for name in DATABASES),
        "flotilla-operator",
    }
    for name, microservice in microservices.items():
        labels = microservice["metadata"]["labels"]
        assert (
            labels["app.kubernetes.io/instance"] == "fl" and labels["app.kubernetes.io/managed-by"] == "Helm"
        )
        assert microservice["spec"]["image"] == f"flotilla/{name}:0.1.0"
        assert not {"enabled", "database", "oauthClient", "tokenIssuer"} & set(microservice["spec"]), name


def test_the_microservices_carry_the_wiring_of_the_map() -> None:
    documents = template()
    microservices, databases = of_kind(documents, "Microservice"), of_kind(documents, "StatefulSet")
    users, catalog, orders = (microservices[name]["spec"] for name in ("users", "catalog", "orders"))
    assert "dependsOn" not in users
    assert catalog["dependsOn"] == ["users"] and orders["dependsOn"] == ["users", "catalog"]
    assert users["ingress"]["paths"] == ["/users", "/auth", "/oauth", "/.well-known"]
    assert catalog["ingress"]["paths"] == ["/products"] and orders["ingress"]["paths"] == ["/orders"]
    issuer = "https://users.default.svc.cluster.local"
    proxies = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"
    common = {
        "TRUSTED_PROXIES": proxies,
        "JWT_ISSUER": issuer,
        "FLOTILLA_SECRETS_DIR": "/etc/flotilla/secrets",
    }
    assert env_of(microservices["users"]) == {
        **common,
        "JWT_KEYS_DIR": "/etc/flotilla/jwt-keys",
        "OAUTH_CLIENTS": "orders",
        "OAUTH_CLIENT_ORDERS_SCOPES": "reservations:write",
        "ADMIN_EMAIL": "admin@flotilla.local",
    }
    assert env_of(microservices["catalog"]) == env_of(microservices["orders"]) == common
    # No secret in any environment: files in one mount, each only in the container that uses it.
    assert secret_files(users) == {
        ("DATABASE_URL", "fl-flotilla", "users-database-url"): ("service", "migration"),
        ("OAUTH_CLIENT_ORDERS_SECRET", "fl-flotilla", "orders-client-secret"): ("migration",),
        ("ADMIN_PASSWORD", "fl-flotilla", "admin-password"): ("migration",),
        ("*", "fl-jwt-keys", "*"): ("service",),
    }
    assert secret_files(catalog) == {
        ("DATABASE_URL", "fl-flotilla", "catalog-database-url"): ("service", "migration"),
    }
    assert secret_files(orders) == {
        ("DATABASE_URL", "fl-flotilla", "orders-database-url"): ("service", "migration"),
        ("ORDERS_CLIENT_SECRET", "fl-flotilla", "orders-client-secret"): ("service",),
    }
    test_pod = {
        "podSelector": {
            "matchLabels": {"app.kubernetes.io/component": "test", "app.kubernetes.io/instance": "fl"}
        }
    }
    for name, spec in (("users", users), ("catalog", catalog), ("orders", orders)):
        assert spec["replicas"] == 2 and spec["migrate"] is True
        assert spec["disruptionBudget"] == {"minAvailable": 1}
        # The defaults' resources, or the entry's own whole (users': room for its argon2 hashes).
        expected = SERVICES[name].get("resources") or DEFAULT_RESOURCES
        assert spec["resources"] == expected, name
        policy = spec["networkPolicy"]
        assert {key: policy[key] for key in ("enabled", "from")} == {"enabled": True, "from": [test_pod]}
        # Egress to its own database: the peer selects that StatefulSet's pods and no other's.
        (database,) = policy["to"]
        selector = database["podSelector"]["matchLabels"].items()
        for statefulset, pods in databases.items():
            labels = pods["spec"]["template"]["metadata"]["labels"].items()
            assert (selector <= labels) == (statefulset == f"fl-{name}-postgresql"), statefulset
        assert "host" not in spec["ingress"] and "className" not in spec["ingress"]


def test_release_wide_ingress_metrics_and_image_settings_reach_every_entry() -> None:
    documents = template(
        *sets(
            {
                "ingress.host": "shop.example.com",
                "ingress.className": "traefik",
                "ingress.tls.enabled": "true",
                "ingress.tls.clusterIssuer": "letsencrypt",
                "global.serviceMonitor.labels.release": "prom",
                "services.catalog.metrics.labels.team": "shop",
                "global.imageRegistry": "registry.example:5000",
                "global.imageTag": "2.0",
                "services.orders.image": "mirror.example/orders@sha256:" + "a" * 64,
            }
        )
    )
    microservices = of_kind(documents, "Microservice")
    for name, microservice in microservices.items():
        assert microservice["spec"]["ingress"] | {"paths": None} == {
            "paths": None,
            "host": "shop.example.com",
            "className": "traefik",
            "tls": {"secretName": "flotilla-tls", "clusterIssuer": "letsencrypt"},
        }, name
        expected = {"release": "prom"} | ({"team": "shop"} if name == "catalog" else {})
        assert microservice["spec"]["metrics"]["labels"] == expected
    assert microservices["users"]["spec"]["image"] == "registry.example:5000/flotilla/users:2.0"
    assert microservices["orders"]["spec"]["image"] == "mirror.example/orders@sha256:" + "a" * 64
    operator = of_kind(documents, "Deployment")["flotilla-operator"]
    assert operator["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.example:5000/flotilla/operator:2.0"
    )


def _masked(documents: Documents) -> list[str]:
    """The documents as text, with the random generated values and the test pod's list of
    services left out (everything else must be identical between renders)."""
    masked = []
    for original in documents:
        doc = json.loads(json.dumps(original))
        if doc["kind"] == "Secret":
            doc["data"] = sorted(doc["data"])
        if doc["kind"] == "Pod":
            doc["spec"]["containers"][0]["args"] = doc["spec"]["containers"][0]["args"][:1]
        masked.append(json.dumps(doc, sort_keys=True))
    return masked


def test_a_fourth_map_entry_renders_a_fourth_microservice_and_nothing_else() -> None:
    before = template()
    after = template("--set-json", f"services.hello={json.dumps(FOURTH)}")
    added = [doc for doc in _masked(after) if doc not in _masked(before)]
    assert [json.loads(doc)["kind"] + "/" + json.loads(doc)["metadata"]["name"] for doc in added] == [
        "Microservice/hello"
    ]
    assert len(after) == len(before) + 1
    hello = of_kind(after, "Microservice")["hello"]["spec"]
    assert hello["image"] == FOURTH["image"] and hello["ingress"]["paths"] == ["/hello"]
    # No database, no client: only the release-wide settings, and no secret at all.
    assert hello["replicas"] == 2 and "secretMounts" not in hello
    assert {entry["name"] for entry in hello["env"]} == {"TRUSTED_PROXIES", "JWT_ISSUER"}
    test_pod = next(doc for doc in after if doc["kind"] == "Pod")
    assert test_pod["spec"]["containers"][0]["args"][1:] == [
        f"http://{name}.default.svc/readyz" for name in sorted([*SERVICES, "hello"])
    ]


def test_a_disabled_entry_renders_nothing() -> None:
    documents = template("--set", "services.catalog.enabled=false")
    assert "catalog" not in of_kind(documents, "Microservice")
    assert "fl-catalog-postgresql" not in of_kind(documents, "StatefulSet")
    test_pod = next(doc for doc in documents if doc["kind"] == "Pod")
    assert "catalog" not in test_pod["spec"]["containers"][0]["args"]


def test_each_database_admits_only_its_own_service() -> None:
    documents = template()
    policies = of_kind(documents, "NetworkPolicy")
    for name in DATABASES:
        policy = policies[f"fl-{name}-postgresql"]["spec"]
        statefulset = of_kind(documents, "StatefulSet")[f"fl-{name}-postgresql"]
        pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
        assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
        assert pod_labels["app.kubernetes.io/component"] == f"{name}-database"
        assert policy["policyTypes"] == ["Ingress", "Egress"] and policy["egress"] == []  # connects nowhere
        assert policy["ingress"] == [
            {
                "ports": [{"port": 5432, "protocol": "TCP"}],
                "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": name}}}],
            }
        ]
        # The selector picks this database's pods, no other's.
        others = [
            of_kind(documents, "StatefulSet")[f"fl-{other}-postgresql"]["spec"]["template"]["metadata"][
                "labels"
            ]
            for other in DATABASES
            if other != name
        ]
        assert not any(policy["podSelector"]["matchLabels"].items() <= labels.items() for labels in others)
        environment = {e["name"]: e for e in statefulset["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert environment["FLOTILLA_DATABASE"]["value"] == name


def test_network_policies_off_turns_them_off_on_every_microservice() -> None:
    """networkPolicy.enabled is the services' and databases'; the operator's own policy is the
    operator chart's (operator.networkPolicy.enabled): both off, the release has none."""
    documents = template("--set", "networkPolicy.enabled=false")
    assert list(of_kind(documents, "NetworkPolicy")) == ["flotilla-operator"]
    for microservice in of_kind(documents, "Microservice").values():
        assert microservice["spec"]["networkPolicy"] == {"enabled": False}
    documents = template(*sets({"networkPolicy.enabled": "false", "operator.networkPolicy.enabled": "false"}))
    assert not of_kind(documents, "NetworkPolicy")


# --- tracing: Jaeger and the services' OTLP export -------------------------------------------

TRACING = {"tracing.enabled": "true"}
OTEL_VARIABLES = {
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
}


def _jaeger_config(documents: Documents, name: str = "fl-jaeger") -> dict[str, Any]:
    return cast(dict[str, Any], yaml.safe_load(of_kind(documents, "ConfigMap")[name]["data"]["config.yaml"]))


def test_tracing_off_renders_no_jaeger_and_no_otel_variables() -> None:
    documents = template()
    assert not [doc for doc in documents if "jaeger" in doc["metadata"]["name"]]
    for name, microservice in of_kind(documents, "Microservice").items():
        assert not OTEL_VARIABLES & set(env_of(microservice)), name
        assert "jaeger" not in json.dumps(microservice["spec"]["networkPolicy"]), name


def test_tracing_deploys_one_in_memory_jaeger_behind_a_service() -> None:
    documents = template(*sets({**TRACING, "tracing.jaeger.maxTraces": "1234"}), namespace="shop")
    deployment = of_kind(documents, "Deployment")["fl-jaeger"]
    assert deployment["spec"]["replicas"] == 1
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["image"] == "jaegertracing/jaeger:2.12.0"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/status", "port": "health"}, probe
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["health"] == 13133
    service = of_kind(documents, "Service")["fl-jaeger"]
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {
        "otlp-grpc": 4317,
        "otlp-http": 4318,
        "query": 16686,
    }
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    config = _jaeger_config(documents)
    assert config["extensions"]["jaeger_storage"]["backends"]["memstore"] == {"memory": {"max_traces": 1234}}
    assert config["extensions"]["jaeger_query"]["base_path"] == "/jaeger"
    assert set(config["receivers"]["otlp"]["protocols"]) == {"grpc", "http"}
    assert "healthcheckv2" in config["service"]["extensions"]
    # A changed configuration is a new pod template (Jaeger reads its file at start only).
    other = template(*sets({**TRACING, "tracing.jaeger.maxTraces": "99"}), namespace="shop")
    assert (
        of_kind(other, "Deployment")["fl-jaeger"]["spec"]["template"]["metadata"]["annotations"]
        != pod["metadata"]["annotations"]
    )


def test_tracing_points_every_microservice_at_jaeger_and_lets_it_through() -> None:
    documents = template(
        *sets({**TRACING, "tracing.sampleRatio": "0.25"}),
        "--set-json",
        f"services.hello={json.dumps(FOURTH)}",
        namespace="shop",
    )
    microservices = of_kind(documents, "Microservice")
    assert set(microservices) == {*SERVICES, "hello"}
    pod_labels = of_kind(documents, "Deployment")["fl-jaeger"]["spec"]["template"]["metadata"]["labels"]
    jaeger_policy = of_kind(documents, "NetworkPolicy")["fl-jaeger"]["spec"]
    otlp_rule = next(
        rule for rule in jaeger_policy["ingress"] if {"port": 4318, "protocol": "TCP"} in rule["ports"]
    )
    admitted = otlp_rule["from"][0]["podSelector"]["matchExpressions"][0]
    for name, microservice in microservices.items():
        environment = env_of(microservice)
        assert {key: environment[key] for key in OTEL_VARIABLES} == {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://fl-jaeger.shop.svc.cluster.local:4318",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.25",
        }, name
        # Its egress reaches Jaeger's pod, whose policy admits it on the OTLP ports.
        peers = microservice["spec"]["networkPolicy"]["to"]
        assert any(peer["podSelector"]["matchLabels"].items() <= pod_labels.items() for peer in peers), name
        assert admitted["key"] == "app.kubernetes.io/name" and name in admitted["values"]
    assert jaeger_policy["egress"] == []  # Jaeger connects nowhere
    # An entry's own variable wins over the injected one.
    own = template(*sets({**TRACING, "services.orders.env[0].name": "OTEL_TRACES_SAMPLER_ARG"}),
                   "--set-string", "services.orders.env[0].value=1")  # fmt: skip
    assert env_of(of_kind(own, "Microservice")["orders"])["OTEL_TRACES_SAMPLER_ARG"] == "1"
    assert [e["name"] for e in of_kind(own, "Microservice")["orders"]["spec"]["env"]].count(
        "OTEL_TRACES_SAMPLER_ARG"
    ) == 1


def test_jaegers_route_follows_the_release_ingress_settings() -> None:
    assert "fl-jaeger" not in of_kind(template(*sets(TRACING)), "Ingress")  # no authentication: off
    routed_tracing = {**TRACING, "tracing.ingress.enabled": "true"}
    documents = template(*sets(routed_tracing))
    ingress = of_kind(documents, "Ingress")["fl-jaeger"]["spec"]
    assert ingress["rules"] == [
        {
            "http": {
                "paths": [
                    {
                        "path": "/jaeger",
                        "pathType": "Prefix",
                        "backend": {"service": {"name": "fl-jaeger", "port": {"name": "query"}}},
                    }
                ]
            }
        }
    ]
    assert "ingressClassName" not in ingress and "tls" not in ingress
    routed = of_kind(documents, "NetworkPolicy")["fl-jaeger"]["spec"]["ingress"][1]
    assert routed == {
        "ports": [{"port": 16686, "protocol": "TCP"}],
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "traefik"}}}],
    }
    documents = template(
        *sets(
            {
                **routed_tracing,
                "ingress.host": "shop.example.com",
                "ingress.className": "nginx",
                "ingress.tls.enabled": "true",
                "ingress.tls.clusterIssuer": "letsencrypt",
                "tracing.ingress.path": "/traces",
            }
        )
    )
    ingress = of_kind(documents, "Ingress")["fl-jaeger"]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["rules"][0]["host"] == "shop.example.com"
    assert ingress["spec"]["rules"][0]["http"]["paths"][0]["path"] == "/traces"
    assert ingress["spec"]["tls"] == [{"hosts": ["shop.example.com"], "secretName": "flotilla-tls"}]
    assert ingress["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": "letsencrypt"}
    assert _jaeger_config(documents)["extensions"]["jaeger_query"]["base_path"] == "/traces"
    own_host = template(
        *sets({**routed_tracing, "ingress.host": "shop.example.com", "tracing.ingress.host": "localhost"})
    )
    assert of_kind(own_host, "Ingress")["fl-jaeger"]["spec"]["rules"][0]["host"] == "localhost"
    for off in ({"tracing.ingress.enabled": "false"}, {"ingress.enabled": "false"}):
        documents = template(*sets({**routed_tracing, **off}))
        assert "fl-jaeger" not in of_kind(documents, "Ingress"), off
        admitted = of_kind(documents, "NetworkPolicy")["fl-jaeger"]["spec"]["ingress"]
        assert "traefik" not in json.dumps(admitted), off


@pytest.mark.parametrize("ratio", ["1.5", "-0.1", "half"])
def test_the_schema_rejects_a_sample_ratio_outside_zero_to_one_naming_it(ratio: str) -> None:
    for option in ("--set", "--set-json"):
        if option == "--set-json" and ratio == "half":
            continue
        result = tool(
            "helm", "template", "fl", UMBRELLA, *sets(TRACING), option, f"tracing.sampleRatio={ratio}"
        )
        assert result.returncode != 0, f"{option} {ratio} accepted"
        assert "/tracing/sampleRatio" in result.stderr, result.stderr


def test_existing_secrets_render_no_secret_and_are_referenced() -> None:
    documents = template(
        *sets({"secrets.existingSecret": "shop-credentials", "secrets.existingJwtKeysSecret": "shop-jwt"})
    )
    assert not of_kind(documents, "Secret")
    users = of_kind(documents, "Microservice")["users"]
    assert ("ADMIN_PASSWORD", "shop-credentials", "admin-password") in secret_files(users["spec"])
    assert ("*", "shop-jwt", "*") in secret_files(users["spec"])
    for name in DATABASES:
        microservice = of_kind(documents, "Microservice")[name]
        assert ("DATABASE_URL", "shop-credentials", f"{name}-database-url") in secret_files(
            microservice["spec"]
        )
        container = of_kind(documents, "StatefulSet")[f"fl-{name}-postgresql"]["spec"]["template"]["spec"][
            "containers"
        ][0]
        references = {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e}
        assert references == {"shop-credentials"}


def test_each_external_database_needs_its_url() -> None:
    *given, missing = DATABASES
    urls = {f"externalDatabase.{name}.url": f"postgresql://{name}:pw@db:5432/{name}" for name in given}
    rendered = tool("helm", "template", "fl", UMBRELLA, "--set", "postgresql.enabled=false", *sets(urls))
    assert rendered.returncode != 0
    assert f"externalDatabase.{missing}.url is required when postgresql.enabled is false" in rendered.stderr


# A bad value -> what the error must name.
BAD_VALUES = {
    "services.users.replicas=-1": "replicas",
    "services.Bad_Name.port=8000": "Bad_Name",
    "services.orders.oauthClient.scopes=": "scopes",
    "services.catalog.database=yes": "database",
    "services.catalog.ingress.paths[0]=products": "paths",
    "global.mode=operator": "mode",
    "operator.ingressNamespace=": "ingressNamespace",
    "operator.replicaCount=-1": "replicaCount",
    "operator.leaderElection.leaseSeconds=3": "leaseSeconds",
    "operator.prometheus.url=prometheus:9090": "url",
    "externalDatabase.users.url=mysql://db/users": "url",
}


@pytest.mark.parametrize("value", BAD_VALUES)
def test_the_schema_rejects_a_bad_value_naming_it(value: str) -> None:
    result = tool("helm", "template", "fl", UMBRELLA, "--set", value)
    assert result.returncode != 0, f"{value} accepted"
    assert BAD_VALUES[value] in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("values", "issuer"),
    [
        ({"ingress.host": "shop.example.com"}, "https://shop.example.com"),
        (
            {"ingress.host": "shop.example.com", "global.issuerUrl": "https://id.example.com"},
            "https://id.example.com",
        ),
        (
            {"services.users.tokenIssuer": "false", "services.accounts.tokenIssuer": "true"},
            "https://accounts.shop.svc.cluster.local",
        ),
    ],
)
def test_every_service_gets_the_one_issuer_url(values: dict[str, str], issuer: str) -> None:
    microservices = of_kind(template(*sets(values), namespace="shop"), "Microservice")
    assert {name: env_of(ms)["JWT_ISSUER"] for name, ms in microservices.items()} == dict.fromkeys(
        microservices, issuer
    )


def test_an_issuer_url_that_is_not_https_is_refused_naming_it() -> None:
    result = tool("helm", "template", "fl", UMBRELLA, "--set", "global.issuerUrl=http://shop.example.com")
    assert result.returncode != 0
    assert "issuerUrl" in result.stderr


def test_a_token_issuer_is_needed_by_an_oauth_client() -> None:
    result = tool("helm", "template", "fl", UMBRELLA, "--set", "services.users.enabled=false")
    assert result.returncode != 0
    assert "services.orders.oauthClient needs an enabled service with tokenIssuer" in result.stderr


# --- every pod: requests, no links; the operator's Deployment and RBAC -------------------------


def test_every_pod_the_charts_make_has_resource_requests_and_no_docker_links() -> None:
    """A Service named like a setting (flotilla-operator-metrics) would set FLOTILLA_OPERATOR_METRICS_PORT."""
    specs = pod_specs(template())
    assert set(specs) >= {
        "Deployment/flotilla-operator",
        "Pod/fl-test-readyz",
        *(f"StatefulSet/fl-{name}-postgresql" for name in DATABASES),
    }
    for what, spec in specs.items():
        assert spec["enableServiceLinks"] is False, what
        for container in spec["containers"] + spec.get("initContainers", []):
            assert container["resources"]["requests"], f"{what}: {container['name']} has no requests"


def test_the_operator_is_ready_on_healthz_and_takes_its_namespaces_from_the_values() -> None:
    documents = template("--set", "operator.ingressNamespace=traefik")
    container = of_kind(documents, "Deployment")["flotilla-operator"]["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["livenessProbe"]["httpGet"] == container["readinessProbe"]["httpGet"]
    environment = {e["name"]: e.get("value") for e in container["env"]}
    assert environment["FLOTILLA_INGRESS_NAMESPACE"] == "traefik"
    assert environment["FLOTILLA_PROMETHEUS_NAMESPACE"] == "monitoring"


def test_two_operator_replicas_elect_a_leader_through_a_lease_of_their_release() -> None:
    documents = template(namespace="shop")
    deployment = of_kind(documents, "Deployment")["flotilla-operator"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    pod = deployment["spec"]["template"]["spec"]
    environment = {e["name"]: e.get("value", e.get("valueFrom")) for e in pod["containers"][0]["env"]}
    assert environment["FLOTILLA_OPERATOR_LEADER_ELECTION"] == "true"
    assert environment["FLOTILLA_OPERATOR_LEASE_SECONDS"] == "10"
    assert environment["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    budget = of_kind(documents, "PodDisruptionBudget")["flotilla-operator"]
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    role = of_kind(documents, "Role")[ELECTION_ROLE]
    assert role["metadata"]["namespace"] == "shop"
    manifest = yaml.safe_load(
        (ROOT / "operator/src/flotilla_operator/manifests/leader-election.yaml").read_text()
    )
    assert role["rules"] == manifest["rules"]
    binding = of_kind(documents, "RoleBinding")[ELECTION_ROLE]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "flotilla-operator", "namespace": "shop"}
    ]


def test_without_an_election_one_operator_is_replaced_by_recreating_it() -> None:
    documents = template("--set", "operator.leaderElection.enabled=false", "--set", "operator.replicaCount=1")
    deployment = of_kind(documents, "Deployment")["flotilla-operator"]
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert "flotilla-operator" not in of_kind(documents, "PodDisruptionBudget")
    assert ELECTION_ROLE not in of_kind(documents, "Role")
    rendered = tool("helm", "template", "fl", UMBRELLA, "--set", "operator.leaderElection.enabled=false")
    assert rendered.returncode != 0, "two replicas without an election were accepted"
    assert "replicaCount" in rendered.stderr, rendered.stderr


NAMESPACE_PEER = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}


@pytest.mark.parametrize(
    ("values", "peer", "port"),
    [
        # make up's: the node's Prometheus, outside the pod network (scripts/up.sh).
        (
            {
                "operator.prometheus.url": "http://10.88.0.1:9090",
                "operator.networkPolicy.prometheus.cidr": "10.88.0.1/32",
            },
            {"ipBlock": {"cidr": "10.88.0.1/32"}},
            9090,
        ),
        # In the cluster: Prometheus' namespace, on the URL's port or the scheme's.
        ({"operator.prometheus.url": "http://prometheus-operated.monitoring.svc:9090"}, NAMESPACE_PEER, 9090),
        ({"operator.prometheus.url": "https://prometheus.monitoring.svc/prom"}, NAMESPACE_PEER, 443),
        (
            {
                "operator.prometheus.url": "http://prometheus.monitoring.svc:80",
                "operator.networkPolicy.prometheus.port": "9090",
            },
            NAMESPACE_PEER,
            9090,
        ),
        ({}, None, None),
    ],
    ids=["node-address", "namespace-url-port", "namespace-https", "namespace-pod-port", "no-url"],
)
def test_the_operator_is_told_of_prometheus_and_may_connect_to_it_alone(
    values: dict[str, str], peer: dict[str, Any] | None, port: int | None
) -> None:
    apiserver = {
        "operator.networkPolicy.apiServer[0].cidr": "10.0.0.1/32",
        "operator.networkPolicy.apiServer[0].port": "6443",
    }
    documents = template(*sets({**apiserver, **values}))
    container = of_kind(documents, "Deployment")["flotilla-operator"]["spec"]["template"]["spec"][
        "containers"
    ][0]
    environment = {e["name"]: e.get("value") for e in container["env"]}
    assert environment.get("FLOTILLA_PROMETHEUS_URL") == values.get("operator.prometheus.url")
    egress = of_kind(documents, "NetworkPolicy")["flotilla-operator"]["spec"]["egress"]
    dns = {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    api = {"to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}], "ports": [{"port": 6443, "protocol": "TCP"}]}
    prometheus = [{"to": [peer], "ports": [{"port": port, "protocol": "TCP"}]}] if peer else []
    assert egress == [dns, api, *prometheus]


def _rules(role: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (group, resource)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }


def _confining(documents: Documents, kind: str) -> dict[str, dict[str, Any]]:
    """The Roles (or RoleBindings) of a watched namespace: all but the leader election's."""
    return {name: doc for name, doc in of_kind(documents, kind).items() if name != ELECTION_ROLE}


def test_a_watched_namespace_confines_every_namespaced_right_to_a_role_there() -> None:
    everywhere = template()
    cluster_role = next(iter(of_kind(everywhere, "ClusterRole").values()))
    assert {("", "secrets"), ("", "configmaps")} <= _rules(cluster_role)
    assert not _confining(everywhere, "Role")

    confined = template("--set", "operator.watchNamespace=shop")
    cluster_role = next(iter(of_kind(confined, "ClusterRole").values()))
    role = next(iter(_confining(confined, "Role").values()))
    binding = next(iter(_confining(confined, "RoleBinding").values()))
    # Cluster-wide: only its CRD, the namespace list and the IngressClasses (cluster-scoped: which
    # controller serves a class); no Secret read, no workload created.
    assert _rules(cluster_role) == {
        ("apiextensions.k8s.io", "customresourcedefinitions"),
        ("", "namespaces"),
        ("networking.k8s.io", "ingressclasses"),
    }
    ingress_classes = [r for r in cluster_role["rules"] if "ingressclasses" in r["resources"]]
    assert [r["verbs"] for r in ingress_classes] == [["list"]]
    assert {("", "secrets"), ("", "configmaps"), ("apps", "deployments"), ("batch", "jobs")} <= _rules(role)
    assert ("flotilla.dev", "microservices") in _rules(role)
    # Everything the operator may do everywhere without a watched namespace, it may do there.
    assert _rules(role) | _rules(cluster_role) == _rules(
        next(iter(of_kind(everywhere, "ClusterRole").values()))
    )
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "shop"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "flotilla-operator", "namespace": "default"}
    ]
    # Every other rule of the operator's ClusterRole is kept.
    assert _rules(cluster_role) | _rules(role) == _rules(
        next(iter(of_kind(everywhere, "ClusterRole").values()))
    )


# --- the API server accepts every combination ---------------------------------------------------

MATRIX: dict[str, Callable[[str], list[str]]] = {
    "default": lambda namespace: [],
    "monitoring-and-policies-off": lambda namespace: [
        *sets({f"services.{name}.metrics.enabled": "false" for name in SERVICES}),
        *sets({"networkPolicy.enabled": "false", "monitoring.alerts.enabled": "false"}),
        *sets({"monitoring.dashboards.enabled": "false", "operator.serviceMonitor.enabled": "false"}),
    ],
    "tls-on": lambda namespace: sets(
        {
            "ingress.host": "shop.example.com",
            "ingress.tls.enabled": "true",
            "ingress.tls.clusterIssuer": "letsencrypt",
            "ingress.className": "nginx",
        }
    ),
    "internal-tls": lambda namespace: sets({"tls.enabled": "true"}),
    "internal-tls-existing-secret": lambda namespace: sets(
        {"tls.enabled": "true", "tls.existingSecret": "my-tls"}
    ),
    "external-database": lambda namespace: [
        "--set",
        "postgresql.enabled=false",
        *sets(
            {f"externalDatabase.{name}.url": f"postgresql://{name}:pw@db:5432/{name}" for name in DATABASES}
        ),
    ],
    "existing-secrets": lambda namespace: sets(
        {"secrets.existingSecret": "mine", "secrets.existingJwtKeysSecret": "my-keys"}
    ),
    "watch-namespace": lambda namespace: sets({"operator.watchNamespace": namespace}),
    "operator-prometheus": lambda namespace: sets(
        {
            "operator.prometheus.url": "http://10.88.0.1:9090",
            "operator.networkPolicy.prometheus.cidr": "10.88.0.1/32",
        }
    ),
    "fourth-service": lambda namespace: ["--set-json", f"services.hello={json.dumps(FOURTH)}"],
    "tracing": lambda namespace: sets(
        {**TRACING, "tracing.sampleRatio": "0.5", "ingress.host": "shop.example.com"}
    ),
    # An entry's key replaces the default's whole: maxUnavailable does not meet the default
    # minAvailable, a memory limit below the default request does not meet that request.
    "entry-keys-replace-defaults": lambda namespace: sets(
        {
            f"services.{DEFAULTED}.disruptionBudget.maxUnavailable": "1",
            f"services.{DEFAULTED}.resources.limits.memory": "64Mi",
        }
    ),
}


@pytest.mark.usefixtures("microservice_crd")
@pytest.mark.parametrize("case", MATRIX, ids=list(MATRIX))
def test_the_umbrella_chart_renders_what_the_api_server_accepts(case: str, namespace: str) -> None:
    release = f"fl-{uuid.uuid4().hex[:6]}"  # cluster-scoped RBAC objects are named after it
    documents = template(
        "--api-versions",
        MONITORING_API,
        "--api-versions",
        RULES_API,
        *MATRIX[case](namespace),
        release=release,
        namespace=namespace,
    )
    kinds = [doc["kind"] for doc in documents]
    expected_services = len(SERVICES) + (case == "fourth-service")
    assert kinds.count("Microservice") == expected_services
    # The operator's, and Jaeger's with tracing.
    assert kinds.count("Deployment") == 1 + (case == "tracing") and "ClusterRole" in kinds
    assert kinds.count("StatefulSet") == (0 if case == "external-database" else len(DATABASES))
    assert ("ServiceMonitor" in kinds) == (case != "monitoring-and-policies-off")  # the operator's
    assert ("PrometheusRule" in kinds) == (case != "monitoring-and-policies-off")
    assert ("Secret" in kinds) == (case != "existing-secrets")
    dashboards = [
        d
        for d in documents
        if d["kind"] == "ConfigMap" and d["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    assert len(dashboards) == (0 if case == "monitoring-and-policies-off" else 4)
    if case == "tls-on":
        for microservice in of_kind(documents, "Microservice").values():
            assert microservice["spec"]["ingress"]["tls"]["secretName"] == "flotilla-tls"
    if case.startswith("internal-tls"):
        _assert_internal_tls(documents, release, namespace, generated=case == "internal-tls")
    checked = tool(
        "kubectl",
        "apply",
        "--dry-run=server",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=yaml.safe_dump_all(documents),
    )
    assert checked.returncode == 0, checked.stderr


def _assert_internal_tls(documents: Documents, release: str, namespace: str, *, generated: bool) -> None:
    """Every Microservice serves HTTPS from one Secret; a generated one holds a certificate for
    every service's in-cluster names, signed by a CA whose key stays in a Secret of its own."""
    secret_name = f"{release}-tls" if generated else "my-tls"
    for microservice in of_kind(documents, "Microservice").values():
        assert microservice["spec"]["tls"] == {"secretName": secret_name}
    test_pod = next(d for d in documents if d["kind"] == "Pod")
    assert all(url.startswith("https://") for url in test_pod["spec"]["containers"][0]["args"][1:])
    secrets = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Secret"}
    if not generated:
        assert not {f"{release}-tls", f"{release}-tls-ca"} & set(secrets)
        return
    serving, authority = secrets[f"{release}-tls"], secrets[f"{release}-tls-ca"]
    assert serving["type"] == authority["type"] == "kubernetes.io/tls"
    assert set(serving["data"]) == {"tls.crt", "tls.key", "ca.crt"}  # no CA key where pods mount it
    certificate = x509.load_pem_x509_certificate(base64.b64decode(serving["data"]["tls.crt"]))
    ca = x509.load_pem_x509_certificate(base64.b64decode(authority["data"]["tls.crt"]))
    assert base64.b64decode(serving["data"]["ca.crt"]) == base64.b64decode(authority["data"]["tls.crt"])
    certificate.verify_directly_issued_by(ca)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {
        f"{name}.{namespace}.svc{suffix}" for name in SERVICES for suffix in ("", ".cluster.local")
    }


# --- install, upgrade, uninstall ----------------------------------------------------------------


def _secret_data(namespace: str, name: str) -> dict[str, str]:
    shown = tool("kubectl", "get", "secret", name, "-n", namespace, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    return dict(json.loads(shown.stdout)["data"])


def _microservices(kube: ApiClient, namespace: str) -> Documents:
    listed = client.CustomObjectsApi(kube).list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    return cast(Documents, cast(dict[str, Any], listed)["items"])


def _all_ready(kube: ApiClient, namespace: str, names: Sequence[str]) -> bool:
    ready = {
        ms["metadata"]["name"]
        for ms in _microservices(kube, namespace)
        if any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in (ms.get("status") or {}).get("conditions", [])
        )
        and (ms.get("status") or {}).get("observedGeneration") == ms["metadata"]["generation"]
    }
    return ready == set(names)


@pytest.mark.usefixtures("microservice_crd")
def test_install_upgrade_and_uninstall_in_a_restricted_namespace(
    kube: ApiClient, operator: OperatorProcess
) -> None:
    """kwok's pods do not run, so the operator's pod is scaled to 0 and the tests' operator
    process (cluster-wide, under the operator's ClusterRole) reconciles the Microservices."""
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    release = f"fl-{uuid.uuid4().hex[:6]}"
    with temporary_namespace(kube, labels) as namespace:
        values = sets({"postgresql.persistence.enabled": "false", "operator.replicaCount": "0"})
        installed = tool(
            "helm",
            "upgrade",
            "--install",
            release,
            UMBRELLA,
            "-n",
            namespace,
            "--wait",
            "--timeout",
            "180s",
            *values,
            timeout=240,
        )
        assert installed.returncode == 0, installed.stdout + installed.stderr
        apps = client.AppsV1Api(kube)
        for name in DATABASES:
            assert (
                apps.read_namespaced_stateful_set(
                    f"{release}-{name}-postgresql", namespace
                ).status.ready_replicas
                == 1
            )
        wait_for(
            lambda: _all_ready(kube, namespace, list(SERVICES)),
            timeout=180,
            interval=1,
            what="every Microservice Ready through the operator",
        )
        deployments = {str(d.metadata.name): d for d in apps.list_namespaced_deployment(namespace).items}
        assert set(deployments) == {*SERVICES, "flotilla-operator"}
        for name in SERVICES:
            owners = [ref.kind for ref in deployments[name].metadata.owner_references or []]
            assert owners == ["Microservice"], name
        assert deployments["flotilla-operator"].spec.replicas == 0

        secrets = (f"{release}-flotilla", f"{release}-jwt-keys")
        before = [_secret_data(namespace, name) for name in secrets]
        upgraded = tool("helm", "upgrade", release, UMBRELLA, "-n", namespace, "--wait", *values, timeout=240)
        assert upgraded.returncode == 0, upgraded.stderr
        assert [_secret_data(namespace, name) for name in secrets] == before
        removed = tool("helm", "uninstall", release, "-n", namespace, "--wait", timeout=240)
        assert removed.returncode == 0, removed.stderr
        # The Microservices go, and the operator's children with them (garbage collection). Only
        # the generated secrets stay (helm.sh/resource-policy: keep), for a later reinstall, and
        # the namespace's own CA bundle.
        wait_for(lambda: not _microservices(kube, namespace), timeout=60, what="the Microservices to go")
        kept = ["configmap/kube-root-ca.crt", f"secret/{release}-flotilla", f"secret/{release}-jwt-keys"]

        def left() -> list[str]:
            kinds = "deploy,sts,svc,secret,networkpolicy,pdb,ingress,configmap,job"
            listed = tool("kubectl", "get", kinds, "-n", namespace, "-o", "name")
            return sorted(listed.stdout.split())

        wait_for(lambda: left() == kept, timeout=120, what=f"only {kept} left")


def test_jaeger_is_a_grafana_data_source_reachable_from_grafanas_namespace() -> None:
    documents = template(*sets(TRACING))
    source = of_kind(documents, "ConfigMap")["fl-jaeger-datasource"]
    assert source["metadata"]["labels"]["grafana_datasource"] == "1"
    [provisioned] = yaml.safe_load(source["data"]["flotilla-jaeger.yaml"])["datasources"]
    assert provisioned["type"] == "jaeger" and provisioned["uid"] == "fl-jaeger-default"
    assert provisioned["url"] == "http://fl-jaeger.default.svc:16686/jaeger"
    rules = of_kind(documents, "NetworkPolicy")["fl-jaeger"]["spec"]["ingress"]
    assert {
        "ports": [{"port": 16686, "protocol": "TCP"}],
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
    } in rules
    quiet = template(*sets({**TRACING, "monitoring.dashboards.enabled": "false"}))
    assert "fl-jaeger-datasource" not in of_kind(quiet, "ConfigMap")
    assert len(of_kind(quiet, "NetworkPolicy")["fl-jaeger"]["spec"]["ingress"]) == 1
