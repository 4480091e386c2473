"""The Microservice CRD rejects bad values of every field, naming the field (server-side dry runs)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

from tests.support.kube import temporary_namespace
from tests.support.operator import GROUP, PLURAL, VERSION, microservice


@pytest.fixture(scope="module")
def space(kube: ApiClient, microservice_crd: None) -> Iterator[str]:
    """One namespace for every dry run of this module (nothing is stored)."""
    with temporary_namespace(kube) as name:
        yield name


def dry_run(kube: ApiClient, namespace: str, spec: dict[str, Any], *, strict: bool = False) -> str | None:
    """The API server's rejection message for a Microservice with ``spec``, or None if accepted.

    Invalid specs go without strict field validation: each must be refused by the schema and
    its rules, not because a misspelt field was unknown. Valid ones go strict, so that none of
    their fields is pruned unseen.
    """
    body = microservice("invalid")
    body["spec"].update(spec)
    try:
        client.CustomObjectsApi(kube).create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            body,
            dry_run="All",
            field_validation="Strict" if strict else "Ignore",
        )
    except ApiException as exc:
        assert exc.status in (400, 422), exc.body
        return str(json.loads(exc.body)["message"])
    return None


def test_a_full_valid_spec_is_accepted(kube: ApiClient, space: str) -> None:
    """The baseline the invalid cases differ from by one field."""
    spec = {
        "replicas": 2,
        "migrate": True,
        "env": [
            {"name": "A", "value": "1"},
            {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "envFrom": [{"configMapRef": {"name": "cm"}}, {"prefix": "X_", "secretRef": {"name": "s"}}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": 1, "memory": "1Gi"}},
        "ingress": {
            "host": "shop.example.com",
            "paths": ["/users", "/auth"],
            "pathType": "Exact",
            "tls": {"secretName": "shop-tls"},
        },
        "metrics": {"labels": {"release": "prometheus"}},
        "disruptionBudget": {"minAvailable": "50%"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [
            {
                "key": "dedicated",
                "operator": "Equal",
                "value": "shop",
                "effect": "NoExecute",
                "tolerationSeconds": 30,
            },
            {"operator": "Exists"},
        ],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule"}
        ],
        "podAnnotations": {"example.com/team": "shop"},
        "podLabels": {"team": "shop"},
        "imagePullSecrets": [{"name": "registry"}],
        "priorityClassName": "business-critical",
        "volumes": [{"name": "cache", "emptyDir": {}}],
        "volumeMounts": [{"name": "cache", "mountPath": "/var/cache/app"}],
        "networkPolicy": {
            "from": [
                {"podSelector": {"matchLabels": {"app.kubernetes.io/component": "test"}}},
                {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}},
            ],
            "restrictEgress": True,
            "to": [{"ipBlock": {"cidr": "192.0.2.10/32"}}],
        },
    }
    assert dry_run(kube, space, spec, strict=True) is None
    assert dry_run(kube, space, {"ingress": {"path": "/orders"}}, strict=True) is None  # the deprecated form


VALID_SPECS = [
    {
        "rollout": {
            "strategy": "Canary",
            "steps": [5, 20, 60, 90],
            "stepSeconds": 60,
            "analysis": {"minRequests": 0, "checks": [{"name": "queue-depth", "query": "max(q)", "max": 10}]},
        }
    },
    # Quantities as YAML numbers (integral: a fractional number such as 0.5 cannot pass an
    # int-or-string schema, write "0.5" or 500m) and resource names with upper case or a domain.
    {"resources": {"requests": {"cpu": 2, "memory": 1000000000}, "limits": {"cpu": "2.5", "memory": "1e9"}}},
    {
        "resources": {
            "requests": {"hugepages-2Mi": "1Gi", "example.com/gpu": 1},
            "limits": {"hugepages-2Mi": "1Gi"},
        }
    },
    {"ingress": {"host": "*.example.com", "paths": ["/shop"], "tls": {"secretName": "wildcard-tls"}}},
    {"ingress": {"host": "shop.example.com", "paths": ["/.well-known", "/a.b/c..d", "/%20"]}},
    {"tls": {"secretName": "shop-internal.tls"}},
    {
        "tls": {"secretName": "t"},
        "secretMounts": [{"secretName": "keys", "mountPath": "/etc/flotilla/tls-other"}],
    },
    {"metrics": {"interval": "1m30s"}},
    {"metrics": {"interval": "0"}},
    {"metrics": {"interval": "1h5m10s500ms"}},
    {
        "secretMounts": [{"secretName": "keys", "mountPath": "/etc/keys"}],
        "volumes": [{"name": "c", "emptyDir": {}}],
        "volumeMounts": [{"name": "c", "mountPath": "/etc/cache"}],
    },
]


@pytest.mark.parametrize("spec", VALID_SPECS, ids=[str(index) for index in range(len(VALID_SPECS))])
def test_valid_values_kubernetes_accepts_are_accepted(
    kube: ApiClient, space: str, spec: dict[str, Any]
) -> None:
    assert dry_run(kube, space, spec, strict=True) is None


INVALID_SPECS = [
    ({"rollout": {"strategy": "BlueGreen"}}, "spec.rollout.strategy"),
    ({"rollout": {"steps": [50, 25]}}, "spec.rollout.steps must be strictly increasing"),
    ({"rollout": {"steps": [10, 10]}}, "spec.rollout.steps must be strictly increasing"),
    ({"rollout": {"steps": [100]}}, "spec.rollout.steps[0]"),
    ({"rollout": {"stepSeconds": 1}}, "spec.rollout.stepSeconds"),
    ({"rollout": {"analysis": {"maxErrorRatioIncrease": 2}}}, "spec.rollout.analysis.maxErrorRatioIncrease"),
    ({"rollout": {"analysis": {"checks": [{"name": "q", "query": "up"}]}}}, "needs min or max"),
    (
        {"rollout": {"analysis": {"checks": [{"name": "q", "query": "up", "min": 2, "max": 1}]}}},
        "spec.rollout.analysis.checks[].min must be <= max",
    ),
    ({"disruptionBudget": {"minAvailable": -1}}, "spec.disruptionBudget.minAvailable"),
    ({"disruptionBudget": {"maxUnavailable": "150%"}}, "spec.disruptionBudget.maxUnavailable"),
    ({"disruptionBudget": {"minAvailable": "half"}}, "spec.disruptionBudget.minAvailable"),
    (
        {"ingress": {"path": "/a", "paths": ["/b"]}},
        "spec.ingress needs exactly one of paths or the deprecated path",
    ),
    ({"ingress": {}}, "spec.ingress needs exactly one of paths or the deprecated path"),
    ({"ingress": {"paths": ["users"]}}, "spec.ingress.paths[0]: Invalid value"),
    ({"ingress": {"paths": []}}, "spec.ingress.paths in body should have at least 1 items"),
    ({"ingress": {"paths": ["/a"], "pathType": "ImplementationSpecific"}}, "spec.ingress.pathType"),
    ({"ingress": {"paths": ["/a"], "className": "Not A Class"}}, "spec.ingress.className"),
    ({"resources": {"requests": {"cpu": "lots"}}}, "spec.resources.requests[cpu]"),
    ({"resources": {"requests": {"memory": "-1Gi"}}}, "spec.resources.requests[memory]"),
    (
        {"resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "512Mi"}}},
        "spec.resources.limits must not be below spec.resources.requests",
    ),
    ({"metrics": {"labels": {"release": "not a value"}}}, "spec.metrics.labels.release"),
    ({"metrics": {"labels": {"bad key!": "x"}}}, "spec.metrics.labels keys must be label keys"),
    (
        {"metrics": {"labels": {"app.kubernetes.io/managed-by": "me"}}},
        "spec.metrics.labels must not set app.kubernetes.io/",
    ),
    ({"env": [{"name": "A", "valueFrom": {}}]}, "spec.env[0].valueFrom: Invalid value"),
    (
        {"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s"}}}]},
        "spec.env[0].valueFrom.secretKeyRef.key: Required value",
    ),
    ({"env": [{"name": "A", "valueFrom": {"somethingElse": {}}}]}, "spec.env[0].valueFrom: Invalid value"),
    (
        {"envFrom": [{"configMapRef": {"name": "a"}, "secretRef": {"name": "b"}}]},
        "spec.envFrom[0]: Invalid value",
    ),
    ({"envFrom": [{"configMap": {"name": "a"}}]}, "spec.envFrom[0]: Invalid value"),
    ({"nodeSelector": {"disk": "not valid!"}}, "spec.nodeSelector.disk"),
    ({"tolerations": [{"key": "a", "operator": "Maybe"}]}, "spec.tolerations[0].operator"),
    ({"tolerations": [{"key": "a", "effect": "Sometimes"}]}, "spec.tolerations[0].effect"),
    (
        {"tolerations": [{"key": "a", "operator": "Exists", "value": "x"}]},
        "spec.tolerations[0]: Invalid value",
    ),
    (
        {"tolerations": [{"key": "a", "tolerationSeconds": 10, "effect": "NoSchedule"}]},
        "spec.tolerations[].tolerationSeconds needs effect NoExecute",
    ),
    # A misspelt field under affinity ({"nodeAffinityy": {}}) is pruned like any unknown field,
    # and reported only under strict field validation (kubectl's default): what the schema
    # itself checks there is the type.
    (
        {"affinity": {"nodeAffinity": "everywhere"}},
        "spec.affinity.nodeAffinity in body must be of type object",
    ),
    (
        {
            "topologySpreadConstraints": [
                {"maxSkew": 0, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}
            ]
        },
        "spec.topologySpreadConstraints[0].maxSkew",
    ),
    (
        {
            "topologySpreadConstraints": [
                {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "Whenever"}
            ]
        },
        "spec.topologySpreadConstraints[0].whenUnsatisfiable",
    ),
    (
        {"topologySpreadConstraints": [{"maxSkew": 1, "whenUnsatisfiable": "DoNotSchedule"}]},
        "spec.topologySpreadConstraints[0].topologyKey",
    ),
    (
        {"podLabels": {"app.kubernetes.io/name": "other"}},
        "spec.podLabels must not set app.kubernetes.io/name",
    ),
    (
        {"podLabels": {"app.kubernetes.io/instance": "other"}},
        "spec.podLabels must not set app.kubernetes.io/name",
    ),
    (
        {"podAnnotations": {"flotilla.dev/config-hash": "x"}},
        "spec.podAnnotations must not set flotilla.dev/config-hash",
    ),
    ({"imagePullSecrets": [{"name": "Bad_Name"}]}, "spec.imagePullSecrets[0].name"),
    ({"imagePullSecrets": [{}]}, "spec.imagePullSecrets[0].name"),
    ({"priorityClassName": "High Priority"}, "spec.priorityClassName: Invalid value"),
    ({"volumes": [{"name": "tmp", "emptyDir": {}}]}, "spec.volumes[0].name"),
    ({"volumes": [{"name": "secret-0", "emptyDir": {}}]}, "spec.volumes[0].name"),
    ({"volumes": [{"emptyDir": {}}]}, "spec.volumes[0].name"),
    (
        {"volumes": [{"name": "c", "emptyDir": {}}], "volumeMounts": [{"name": "c", "mountPath": "rel"}]},
        "spec.volumeMounts[0].mountPath",
    ),
    (
        {"volumeMounts": [{"name": "nowhere", "mountPath": "/x"}]},
        "spec.volumeMounts[].name must name a volume of spec.volumes",
    ),
    ({"networkPolicy": {"enabled": "yes"}}, "spec.networkPolicy.enabled"),
    (
        {"networkPolicy": {"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}},
        "spec.networkPolicy.from[0].ipBlock.cidr",
    ),
    ({"networkPolicy": {"from": [{}]}}, "spec.networkPolicy.from[0]: Invalid value"),
    (
        {"networkPolicy": {"to": [{"podSelector": {}, "ipBlock": {"cidr": "10.0.0.0/8"}}]}},
        "spec.networkPolicy.to[0]",
    ),
    (
        {"networkPolicy": {"to": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}},
        "spec.networkPolicy.to[0].ipBlock.cidr",
    ),
    ({"networkPolicy": {"restrictEgress": "no"}}, "spec.networkPolicy.restrictEgress"),
    ({"dependsOn": ["invalid"]}, "spec.dependsOn must not name the Microservice itself"),
    ({"secretMounts": [{"secretName": "Bad Name", "mountPath": "/k"}]}, "spec.secretMounts[0].secretName"),
    ({"probes": {"liveness": {"path": "/live z"}}}, "spec.probes.liveness.path"),
    ({"image": "registry.example/app: 1.0"}, "spec.image: Invalid value"),
    # What only the Ingress API refused before: paths it calls invalid, IPs, long labels.
    *(
        ({"ingress": {"paths": [path]}}, "spec.ingress.paths[0]: Invalid value")
        for path in ("/a//b", "/a/./b", "/a/../b", "/a/.", "/a/..", "/a%2fb", "/a%2Fb")
    ),
    ({"ingress": {"path": "/a/.."}}, "spec.ingress.path must not contain //"),
    (
        {"ingress": {"paths": ["/a"], "host": "10.0.0.1"}},
        "spec.ingress.host must be a DNS name, not an IP address",
    ),
    (
        {"ingress": {"paths": ["/a"], "host": "a" * 64 + ".example.com"}},
        "spec.ingress.host labels must be at most 63",
    ),
    ({"ingress": {"paths": ["/a"], "host": "shop.*.example.com"}}, "spec.ingress.host must be a DNS name"),
    ({"resources": {"requests": {"Hugepages-2Mi": "1Gi"}}}, "spec.resources names must be resource names"),
    ({"metrics": {"interval": "30s1m"}}, "spec.metrics.interval must be a duration"),
    ({"metrics": {"interval": ""}}, "spec.metrics.interval must be a duration"),
    (
        {
            "secretMounts": [{"secretName": "keys", "mountPath": "/etc/app"}],
            "volumes": [{"name": "c", "emptyDir": {}}],
            "volumeMounts": [{"name": "c", "mountPath": "/etc/app"}],
        },
        "spec.secretMounts[].mountPath must differ from every spec.volumeMounts[].mountPath",
    ),
    (
        {"secretMounts": [{"secretName": "keys", "mountPath": "/tmp/"}]},
        "spec.secretMounts[0].mountPath: Invalid value",
    ),
    (
        {"secretMounts": [{"secretName": "a", "mountPath": "/k"}, {"secretName": "b", "mountPath": "/k"}]},
        "spec.secretMounts[1]: Duplicate value",
    ),
    (
        {
            "volumes": [{"name": "c", "emptyDir": {}}],
            "volumeMounts": [{"name": "c", "mountPath": "/k"}, {"name": "c", "mountPath": "/k"}],
        },
        "spec.volumeMounts[1]: Duplicate value",
    ),
    ({"tls": {}}, "spec.tls.secretName: Required value"),
    ({"tls": {"secretName": "Bad_Name"}}, "spec.tls.secretName"),
    (
        {
            "tls": {"secretName": "t"},
            "secretMounts": [{"secretName": "keys", "mountPath": "/etc/flotilla/tls"}],
        },
        "spec.tls: Invalid value",
    ),
    ({"tls": {"secretName": "t"}, "volumes": [{"name": "tls", "emptyDir": {}}]}, "spec.tls: Invalid value"),
]


@pytest.mark.parametrize(
    ("spec", "field"), INVALID_SPECS, ids=[f"{f}-{i}" for i, (_, f) in enumerate(INVALID_SPECS)]
)
def test_an_invalid_value_is_rejected_naming_the_field(
    kube: ApiClient, space: str, spec: dict[str, Any], field: str
) -> None:
    message = dry_run(kube, space, spec)
    assert message is not None, f"accepted: {spec}"
    assert field in message, message


def test_every_spec_field_is_described(kube: ApiClient, microservice_crd: None) -> None:
    """`kubectl explain microservice.spec.<field>` prints a description for every field, nested too."""
    crd = client.ApiextensionsV1Api(kube).read_custom_resource_definition("microservices.flotilla.dev")
    schema = kube.sanitize_for_serialization(crd)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    missing: list[str] = []

    def walk(node: dict[str, Any], path: str) -> None:
        for name, child in (node.get("properties") or {}).items():
            here = f"{path}.{name}"
            if not child.get("description"):
                missing.append(here)
            walk(child, here)
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")

    walk(schema["properties"]["spec"], "spec")
    walk(schema["properties"]["status"], "status")
    assert not missing


# --- Property-based: invalid values of each field, generated --------------------------------

PRINTABLE = st.characters(min_codepoint=32, max_codepoint=126)
TEXT = st.text(PRINTABLE, max_size=40) | st.text(max_size=10).filter(lambda s: s.isprintable())
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
DNS_NAME = re.compile(r"(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# prometheus-operator's durations (the empty string aside).
DURATION = re.compile(r"0|([0-9]+y)?([0-9]+w)?([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?")
PERCENT = re.compile(r"(100|[1-9]?[0-9])%")
INT32 = {"min_value": -(2**31), "max_value": 2**31 - 1}


def _not(pattern: re.Pattern[str], max_length: int = 253) -> st.SearchStrategy[str]:
    return TEXT.filter(lambda s: not pattern.fullmatch(s) or len(s) > max_length)


def _count_or_percent() -> st.SearchStrategy[Any]:
    return st.integers(min_value=-(2**31), max_value=-1) | TEXT.filter(lambda s: not PERCENT.fullmatch(s))


def _quantity() -> st.SearchStrategy[Any]:
    # A character no quantity has (or nothing at all): never a valid quantity, whatever else.
    words = TEXT.filter(lambda s: s == "" or re.search(r"[^0-9.eEinumkKMGTP+-]", s) is not None)
    return st.integers(min_value=-(2**31), max_value=-1) | words


# (field named in the message, strategy of spec fragments with one invalid value)
GENERATED: list[tuple[str, st.SearchStrategy[dict[str, Any]]]] = [
    ("spec.port", st.integers(**INT32).filter(lambda n: not 1 <= n <= 65535).map(lambda n: {"port": n})),
    (
        "spec.replicas",
        st.integers(**INT32).filter(lambda n: not 0 <= n <= 1000).map(lambda n: {"replicas": n}),
    ),
    (
        "spec.disruptionBudget.minAvailable",
        _count_or_percent().map(lambda v: {"disruptionBudget": {"minAvailable": v}}),
    ),
    (
        "spec.disruptionBudget.maxUnavailable",
        _count_or_percent().map(lambda v: {"disruptionBudget": {"maxUnavailable": v}}),
    ),
    (
        "spec.ingress.paths",
        TEXT.filter(lambda s: not re.fullmatch(r"/[!-~]*", s)).map(lambda p: {"ingress": {"paths": [p]}}),
    ),
    (
        "spec.ingress.pathType",
        TEXT.filter(lambda s: s not in ("Prefix", "Exact")).map(
            lambda t: {"ingress": {"paths": ["/"], "pathType": t}}
        ),
    ),
    ("spec.ingress.host", _not(DNS_NAME).map(lambda h: {"ingress": {"paths": ["/"], "host": h}})),
    (
        "spec.ingress.className",
        _not(DNS_SUBDOMAIN).map(lambda c: {"ingress": {"paths": ["/"], "className": c}}),
    ),
    ("spec.resources", _quantity().map(lambda q: {"resources": {"requests": {"cpu": q}}})),
    (
        "spec.metrics.interval",
        TEXT.filter(lambda s: s == "" or not DURATION.fullmatch(s)).map(
            lambda i: {"metrics": {"interval": i}}
        ),
    ),
    ("spec.metrics.labels", _not(LABEL_VALUE, 63).map(lambda v: {"metrics": {"labels": {"release": v}}})),
    (
        "spec.autoscaling.targetCPUUtilizationPercentage",
        st.integers(**INT32)
        .filter(lambda n: not 1 <= n <= 100)
        .map(lambda n: {"autoscaling": {"maxReplicas": 2, "targetCPUUtilizationPercentage": n}}),
    ),
    ("spec.nodeSelector", _not(LABEL_VALUE, 63).map(lambda v: {"nodeSelector": {"disk": v}})),
    (
        "spec.tolerations",
        TEXT.filter(lambda s: s not in ("Exists", "Equal")).map(
            lambda o: {"tolerations": [{"key": "k", "operator": o}]}
        ),
    ),
    (
        "spec.topologySpreadConstraints",
        st.integers(**INT32)
        .filter(lambda n: not 1 <= n <= 1000)
        .map(
            lambda n: {
                "topologySpreadConstraints": [
                    {"maxSkew": n, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}
                ]
            }
        ),
    ),
    ("spec.podLabels", _not(LABEL_VALUE, 63).map(lambda v: {"podLabels": {"team": v}})),
    ("spec.priorityClassName", _not(DNS_SUBDOMAIN).map(lambda n: {"priorityClassName": n})),
    ("spec.imagePullSecrets", _not(DNS_SUBDOMAIN).map(lambda n: {"imagePullSecrets": [{"name": n}]})),
    (
        "spec.volumes",
        (
            st.just("tmp")
            | TEXT.map(lambda s: f"secret-{s}")
            | _not(re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"), 63)
        ).map(lambda n: {"volumes": [{"name": n, "emptyDir": {}}]}),
    ),
    (
        "spec.volumeMounts",
        TEXT.filter(lambda s: not s.startswith("/") or s in ("/", "/tmp")).map(
            lambda p: {
                "volumes": [{"name": "v", "emptyDir": {}}],
                "volumeMounts": [{"name": "v", "mountPath": p}],
            }
        ),
    ),
    (
        "spec.networkPolicy.from",
        TEXT.filter(lambda s: not re.fullmatch(r"[0-9a-fA-F.:]+/[0-9]{1,3}", s)).map(
            lambda c: {"networkPolicy": {"from": [{"ipBlock": {"cidr": c}}]}}
        ),
    ),
    ("spec.serviceAccountName", _not(DNS_SUBDOMAIN).map(lambda n: {"serviceAccountName": n})),
]


@pytest.mark.parametrize(("field", "invalid"), GENERATED, ids=[field for field, _ in GENERATED])
def test_generated_invalid_values_are_rejected_naming_the_field(
    kube: ApiClient, space: str, field: str, invalid: st.SearchStrategy[dict[str, Any]]
) -> None:
    @settings(
        max_examples=15,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
    )
    @given(invalid)
    def rejected(spec: dict[str, Any]) -> None:
        message = dry_run(kube, space, spec)
        assert message is not None, f"accepted: {spec}"
        assert field in message, message

    rejected()
