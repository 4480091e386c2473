"""One reconcile against a fake API that keeps server-side apply's ownership of replicas."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any, cast

import pytest
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import DynamicApiError
from prometheus_client import REGISTRY
from samples import microservice

from flotilla_operator import FIELD_MANAGER
from flotilla_operator import reconcile as reconcile_module
from flotilla_operator import render as render_module
from flotilla_operator.kube import Kube
from flotilla_operator.metrics import set_leading
from flotilla_operator.reconcile import (
    HANDOVER_MANAGER,
    Applied,
    Dependents,
    Reconciler,
    reconcile,
    scrape_targets,
    slim,
)
from flotilla_operator.render import ConfigMissing, ConfigRef, RenderContext, config_digest


def ms(generation: int = 1, **spec: Any) -> dict[str, Any]:
    """Version 1.0 of the sample at three replicas (what the hand-over tests start from)."""
    return microservice(generation, **{"image": "registry.example/orders:1.0", "replicas": 3, **spec})


class FakeKube:
    """Objects by (kind, name); ``spec.replicas`` is kept while any field manager applied it."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.replica_owners: dict[str, set[str]] = {}
        self.replica_history: list[int] = []
        self.deleted: list[tuple[str, str]] = []
        self.status: dict[str, Any] | None = None
        self.applied: list[tuple[str, str]] = []  # every apply, in order
        self.created: list[tuple[str, str]] = []
        self.refuse: dict[str, int] = {}  # kind -> the HTTP status its applies get
        self.config: dict[tuple[str, str], dict[str, str] | None] = {}  # (kind, name) -> data
        self.missing_crds: set[str] = set()
        self.listed: list[str] = []  # the kinds whose children were listed (pruning)
        self.microservices: dict[str, dict[str, Any]] = {}  # name -> the stored Microservice

    def crd_installed(self, name: str) -> bool:
        return name not in self.missing_crds

    def config_hash(self, _: str, refs: list[ConfigRef]) -> str:
        return config_digest(refs, self.config)

    def forget_crds(self) -> None:
        """Nothing to forget: the fake has no discovery cache."""

    def apply(self, manifest: dict[str, Any], field_manager: str = FIELD_MANAGER) -> dict[str, Any]:
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        if kind in self.refuse:
            error = ApiException(status=self.refuse[kind], reason="Invalid")
            error.body = json.dumps(
                {"message": f"{kind} {name} is invalid: spec.rules[0].host: Invalid value"}
            )
            raise DynamicApiError(error)  # type: ignore[no-untyped-call]
        self.applied.append((kind, name))
        live = self.objects.get((kind, name))
        if live is None:
            self.created.append((kind, name))
        merged = copy.deepcopy(manifest) if live is None else {**live, **copy.deepcopy(manifest)}
        if live is not None:
            merged["spec"] = {**live["spec"], **manifest["spec"]}
            merged["metadata"] = {**live["metadata"], **manifest["metadata"]}
        if kind == "Deployment":
            owners = self.replica_owners.setdefault(name, set())
            if "replicas" in manifest["spec"]:
                owners.add(field_manager)
            else:
                owners.discard(field_manager)
                if not owners:
                    merged["spec"]["replicas"] = 1  # the API server's default, as SSA would do
            self.replica_history.append(merged["spec"].get("replicas", 1))
        merged.setdefault("status", {})
        self.objects[(kind, name)] = merged
        return copy.deepcopy(merged)

    def get(self, kind: str, _: str, name: str) -> dict[str, Any] | None:
        found = copy.deepcopy(self.objects.get((kind, name)))
        if found is not None and kind == "Deployment":
            found["metadata"]["managedFields"] = [
                {"manager": owner, "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}}}}
                for owner in sorted(self.replica_owners.get(name, set()))
            ]
        return found

    def children(self, kind: str, *_: Any) -> list[dict[str, Any]]:
        self.listed.append(kind)
        return [copy.deepcopy(obj) for (k, _name), obj in self.objects.items() if k == kind]

    def delete(self, kind: str, _: str, name: str) -> bool:
        self.deleted.append((kind, name))
        return self.objects.pop((kind, name), None) is not None

    def microservice(self, _: str, name: str) -> dict[str, Any] | None:
        return self.microservices.get(name)

    def patch_status(self, _: str, __: str, status: dict[str, Any]) -> None:
        self.status = status


def run(kube: FakeKube, body: dict[str, Any]) -> dict[str, Any]:
    status, _ = reconcile(cast(Kube, kube), body, lambda *_: None)
    return status


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def test_turning_autoscaling_on_keeps_the_replicas_until_the_autoscaler_moves_them() -> None:
    kube = FakeKube()
    run(kube, ms())
    assert kube.objects[("Deployment", "orders")]["spec"]["replicas"] == 3
    run(kube, ms(2, autoscaling={"minReplicas": 2, "maxReplicas": 5}))
    assert kube.objects[("Deployment", "orders")]["spec"]["replicas"] == 3
    assert kube.replica_owners["orders"] == {HANDOVER_MANAGER}
    assert 1 not in kube.replica_history


def test_a_new_deployment_under_autoscaling_starts_at_min_replicas_and_stays_there() -> None:
    kube = FakeKube()
    scaled = {"minReplicas": 2, "maxReplicas": 5}
    run(kube, ms(autoscaling=scaled))
    run(kube, ms(2, image="registry.example/orders:2.0", autoscaling=scaled))
    assert kube.objects[("Deployment", "orders")]["spec"]["replicas"] == 2
    assert 1 not in kube.replica_history


def test_turning_autoscaling_off_gives_replicas_back_to_the_spec() -> None:
    kube = FakeKube()
    run(kube, ms(autoscaling={"minReplicas": 2, "maxReplicas": 5}))
    run(kube, ms(2, replicas=4))
    assert kube.objects[("Deployment", "orders")]["spec"]["replicas"] == 4


def _finish(kube: FakeKube, condition: str, message: str = "") -> str:
    (name,) = [name for kind, name in kube.objects if kind == "Job"]
    kube.objects[("Job", name)]["status"] = {
        "conditions": [{"type": condition, "status": "True", "message": message}]
    }
    return name


def test_the_deployment_waits_for_the_migration_job_to_succeed() -> None:
    kube = FakeKube()
    status = run(kube, ms(migrate=True))
    assert ("Deployment", "orders") not in kube.objects
    assert ("Service", "orders") in kube.objects
    assert conditions(status)["Migrated"]["reason"] == "Running"
    assert conditions(status)["Progressing"]["reason"] == "Migrating"
    _finish(kube, "Complete")
    status = run(kube, ms(migrate=True))
    assert ("Deployment", "orders") in kube.objects
    assert conditions(status)["Migrated"]["status"] == "True"


def test_a_new_release_keeps_the_old_template_until_its_migration_succeeded() -> None:
    kube = FakeKube()
    run(kube, ms(migrate=True))
    first = _finish(kube, "Complete")
    run(kube, ms(migrate=True))
    status = run(kube, ms(2, migrate=True, image="registry.example/orders:2.0"))
    assert image(kube).endswith(":1.0")
    assert ("Job", first) in kube.deleted  # the old revision's Job is pruned
    _finish(kube, "Failed", "BackoffLimitExceeded")
    status = run(kube, ms(2, migrate=True, image="registry.example/orders:2.0"))
    assert conditions(status)["Migrated"]["reason"] == "Failed"
    assert conditions(status)["Degraded"]["status"] == "True"
    assert "BackoffLimitExceeded" in conditions(status)["Degraded"]["message"]
    # kstatus (Helm 4's --wait) reads Stalled=True as Failed: the wait ends, naming the cause.
    stalled = conditions(status)["Stalled"]
    assert (stalled["status"], stalled["reason"]) == ("True", "MigrationFailed")
    assert "BackoffLimitExceeded" in stalled["message"]
    assert image(kube).endswith(":1.0")  # read again: each apply stores a new object


def test_a_healthy_rollout_is_not_stalled_and_has_observed_its_generation() -> None:
    kube = FakeKube()
    status = run(kube, ms(4))
    assert status["observedGeneration"] == 4
    assert conditions(status)["Stalled"]["status"] == "False"
    assert conditions(status)["Degraded"]["status"] == "False"


def image(kube: FakeKube) -> str:
    """The image of the live Deployment's template."""
    return str(kube.objects[("Deployment", "orders")]["spec"]["template"]["spec"]["containers"][0]["image"])


def test_dependents_report_who_joined_or_left_and_who_calls_whom() -> None:
    dependents = Dependents()
    assert dependents.update("shop", "orders", ["users", "catalog"]) == {"users", "catalog"}
    assert dependents.update("shop", "cart", ["catalog"]) == {"catalog"}
    assert dependents.update("elsewhere", "x", ["catalog"]) == {"catalog"}
    assert dependents.callers("shop", "catalog") == ("cart", "orders")
    assert dependents.update("shop", "orders", ["catalog"]) == {"users"}
    assert dependents.callers("shop", "users") == ()
    assert dependents.update("shop", "cart", None) == {"catalog"}
    assert dependents.callers("shop", "catalog") == ("orders",)


def test_a_rejected_child_leaves_the_others_applied_and_status_saying_why() -> None:
    kube = FakeKube()
    kube.refuse["Ingress"] = 422
    body = ms(ingress={"paths": ["/orders"]}, disruptionBudget={"minAvailable": 1}, migrate=True)
    kube.config = {}
    with pytest.raises(DynamicApiError) as raised:
        run(kube, body)
    assert raised.value.status == 422  # handlers map it to a retry, as before
    assert kube.applied[:2] == [("NetworkPolicy", "orders"), ("Job", kube.applied[1][1])]
    assert {kind for kind, _ in kube.objects} >= {"NetworkPolicy", "Service", "PodDisruptionBudget", "Job"}
    assert kube.status is not None
    degraded = conditions(kube.status)["Degraded"]
    assert (degraded["status"], degraded["reason"]) == ("True", "ChildRejected")
    assert "Ingress" in degraded["message"]
    assert "spec.rules[0].host: Invalid value" in degraded["message"]


def test_a_rejected_network_policy_keeps_every_pod_away() -> None:
    kube = FakeKube()
    kube.refuse["NetworkPolicy"] = 422
    with pytest.raises(DynamicApiError):
        run(kube, ms(migrate=True))
    assert not [kind for kind, _ in kube.objects if kind in ("Job", "Deployment")]
    assert kube.status is not None
    assert "NetworkPolicy" in conditions(kube.status)["Degraded"]["message"]


def test_a_server_error_propagates_before_any_status_is_written() -> None:
    kube = FakeKube()
    kube.refuse["Service"] = 503
    with pytest.raises(DynamicApiError):
        run(kube, ms())
    assert kube.status is None


def test_a_migration_job_is_created_once_and_never_applied_again() -> None:
    kube = FakeKube()
    run(kube, ms(migrate=True))
    job = _finish(kube, "Complete")
    changes: list[dict[str, Any]] = [
        {"resources": {"requests": {"cpu": "1"}}},
        {"nodeSelector": {"disk": "ssd"}},
        {"replicas": 5},
    ]
    for generation, change in enumerate(changes, start=2):
        run(kube, ms(generation, migrate=True, **change))
    assert [name for kind, name in kube.applied if kind == "Job"] == [job]
    assert kube.objects[("Deployment", "orders")]["spec"]["replicas"] == 5


SHOP_ENV = [
    {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "shop-secrets", "key": "orders-db"}}}
]


def test_missing_config_holds_the_job_and_the_deployment_until_it_exists() -> None:
    """The shop example's Microservices come before the bootstrap Job made shop-secrets."""
    kube = FakeKube()
    for _ in range(2):  # kopf's retry and the resync find it still missing
        with pytest.raises(ConfigMissing, match="Secret shop-secrets"):
            run(kube, ms(migrate=True, env=SHOP_ENV))
    assert not [kind for kind, _ in kube.objects if kind in ("Job", "Deployment")]
    assert ("NetworkPolicy", "orders") in kube.objects
    assert kube.status is not None
    migrated = conditions(kube.status)["Migrated"]
    assert (migrated["status"], migrated["reason"]) == ("False", "ConfigMissing")
    assert "Secret shop-secrets (key orders-db)" in migrated["message"]
    kube.config[("Secret", "shop-secrets")] = {"orders-db": "b3JkZXJz", "users-db": "dXNlcnM="}
    run(kube, ms(migrate=True, env=SHOP_ENV))
    _finish(kube, "Complete")
    kube.config[("Secret", "shop-secrets")] = {"orders-db": "b3JkZXJz", "users-db": "cm90YXRlZA=="}
    status = run(kube, ms(migrate=True, env=SHOP_ENV))  # another service's key rotated
    assert len([name for kind, name in kube.created if kind == "Job"]) == 1
    assert conditions(status)["Migrated"]["status"] == "True"
    assert ("Deployment", "orders") in kube.objects


def test_missing_config_holds_nothing_of_a_service_without_migrations() -> None:
    """Its pods wait for the Secret themselves (CreateContainerConfigError); no retry loop."""
    kube = FakeKube()
    run(kube, ms())
    run(kube, ms(2, image="registry.example/orders:2.0", env=SHOP_ENV))
    assert image(kube).endswith(":2.0")
    assert "Migrated" not in conditions(kube.status or {"conditions": []})


def _listed(namespace: str, name: str, depends_on: list[str] | None = None) -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name}, "spec": {"dependsOn": depends_on}}


def test_a_rebuild_replaces_the_callers_and_names_the_callees_that_changed() -> None:
    dependents = Dependents()
    dependents.update("shop", "orders", ["users", "catalog"])
    dependents.update("shop", "till", ["catalog"])  # its DELETED is missed in a watch gap
    dependents.update("other", "x", ["catalog"])
    mark = dependents.mark()
    listing = [_listed("shop", "orders", ["users", "catalog"]), _listed("other", "x", ["payments"])]
    assert dependents.rebuild(listing, mark) == {
        ("shop", "catalog"),
        ("other", "catalog"),
        ("other", "payments"),
    }
    assert dependents.callers("shop", "catalog") == ("orders",)
    assert dependents.callers("other", "payments") == ("x",)
    assert dependents.rebuild(listing, dependents.mark()) == set()


def test_a_rebuild_keeps_what_events_changed_after_its_listing_began() -> None:
    dependents = Dependents()
    mark = dependents.mark()
    listing = [_listed("shop", "orders", ["users"])]  # listed before these events arrived
    dependents.update("shop", "cart", ["users"])
    dependents.update("shop", "orders", None)
    assert dependents.rebuild(listing, mark) == set()
    assert dependents.callers("shop", "users") == ("cart",)


TLS = {"secretName": "orders-tls"}
TLS_SECRET = {"tls.crt": "Y2VydA==", "tls.key": "a2V5", "ca.crt": "Y2E="}


def test_tls_makes_the_status_url_https_and_removing_it_prunes_the_servers_transport() -> None:
    kube = FakeKube()
    kube.config[("Secret", "orders-tls")] = TLS_SECRET
    status = run(kube, ms(tls=TLS))
    assert status["url"] == "https://orders.shop.svc.cluster.local"
    assert ("ServersTransport", "orders") in kube.objects
    status = run(kube, ms(2))
    assert status["url"] == "http://orders.shop.svc.cluster.local"
    assert ("ServersTransport", "orders") in kube.deleted
    assert ("ServersTransport", "orders") not in kube.objects


def test_without_the_traefik_crd_no_servers_transport_is_applied_nor_looked_for() -> None:
    kube = FakeKube()
    kube.missing_crds = {"serverstransports.traefik.io"}
    kube.config[("Secret", "orders-tls")] = TLS_SECRET
    run(kube, ms(tls=TLS))
    assert not [kind for kind, _ in kube.applied if kind == "ServersTransport"]
    assert "Ingress" in kube.listed  # pruning looked for the kinds not rendered...
    assert "ServersTransport" not in kube.listed  # ...but those the cluster cannot have
    assert kube.objects[("Service", "orders")]["metadata"]["annotations"] == {
        "traefik.ingress.kubernetes.io/service.serversscheme": "https"
    }


def test_a_renewed_certificate_changes_the_pods_config_hash() -> None:
    kube = FakeKube()
    kube.config[("Secret", "orders-tls")] = TLS_SECRET
    run(kube, ms(tls=TLS))
    before = kube.objects[("Deployment", "orders")]["spec"]["template"]["metadata"]["annotations"]
    kube.config[("Secret", "orders-tls")] = {**TLS_SECRET, "tls.crt": "cmVuZXdlZA=="}
    run(kube, ms(tls=TLS))
    after = kube.objects[("Deployment", "orders")]["spec"]["template"]["metadata"]["annotations"]
    assert before["flotilla.dev/config-hash"] != after["flotilla.dev/config-hash"]


def test_dependencies_condition_compares_tls_with_the_stored_dependency() -> None:
    kube = FakeKube()
    kube.config[("Secret", "orders-tls")] = TLS_SECRET
    kube.microservices["users"] = {
        "metadata": {"name": "users", "generation": 1},
        "spec": {},
        "status": {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True"}]},
    }
    dependencies = conditions(run(kube, ms(tls=TLS, dependsOn=["users"])))["DependenciesReady"]
    assert (dependencies["status"], dependencies["reason"]) == ("False", "TLSMismatch")
    assert "orders calls users over HTTPS but users serves HTTP" in dependencies["message"]


def test_a_record_keeps_a_childs_identity_replicas_and_status_not_its_spec() -> None:
    kube = FakeKube()
    _, record = reconcile(cast(Kube, kube), ms(), lambda *_: None)
    deployment = record.children["Deployment"]
    assert set(deployment) == {"apiVersion", "kind", "metadata", "spec", "status"}
    assert deployment["spec"] == {"replicas": 3}
    assert "managedFields" not in deployment["metadata"]
    assert deployment["metadata"]["labels"] == kube.objects[("Deployment", "orders")]["metadata"]["labels"]
    assert "spec" not in record.children["Service"]  # a Service's ports are rendered, never read back


def rolled_out(kube: FakeKube) -> dict[str, Any]:
    """The applied Deployment as its controller reports it once all 3 replicas are available."""
    live = copy.deepcopy(kube.objects[("Deployment", "orders")])
    live["metadata"].update(resourceVersion="2")
    live["status"] = {
        "observedGeneration": 1,
        "replicas": 3,
        "readyReplicas": 3,
        "updatedReplicas": 3,
        "availableReplicas": 3,
        "conditions": [{"type": "Available", "status": "True"}],
    }
    return live


def test_a_kept_record_stands_for_applying_and_follows_the_deployments_status() -> None:
    kube = FakeKube()
    body = ms()
    first, record = reconcile(cast(Kube, kube), body, lambda *_: None)
    assert conditions(first)["Ready"]["status"] == "False"
    record.observe("Deployment", slim(rolled_out(kube)), deleted=False)  # what the watch delivers, as kept
    assert record.intact
    applied = len(kube.applied)
    second, _ = reconcile(cast(Kube, kube), {**body, "status": first}, lambda *_: None, previous_apply=record)
    assert len(kube.applied) == applied  # nothing applied again
    assert conditions(second)["Ready"]["status"] == "True"
    assert second["readyReplicas"] == 3


def test_the_same_inputs_are_not_rendered_again_and_a_changed_one_is(monkeypatch: pytest.MonkeyPatch) -> None:
    kube = FakeKube()
    renders: list[str] = []
    real_render = render_module.render

    def counting_render(body: dict[str, Any], context: RenderContext) -> list[dict[str, Any]]:
        renders.append(body["metadata"]["name"])
        return real_render(body, context)

    monkeypatch.setattr(reconcile_module, "render", counting_render)
    body = ms()
    first, record = reconcile(cast(Kube, kube), body, lambda *_: None)
    _, again = reconcile(cast(Kube, kube), {**body, "status": first}, lambda *_: None, previous_apply=record)
    assert (len(renders), again) == (1, record)  # a resync of an undisturbed Microservice
    callers = RenderContext(callers=("web",))  # a new caller: its NetworkPolicy changes
    reconcile(cast(Kube, kube), body, lambda *_: None, base=callers, previous_apply=record)
    assert len(renders) == 2
    changed = copy.deepcopy(body)
    changed["spec"]["image"] = "registry.example/orders:2.0"
    reconcile(cast(Kube, kube), changed, lambda *_: None, previous_apply=record)
    assert len(renders) == 3
    deployment = kube.objects[("Deployment", "orders")]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":2.0")


def test_the_revision_asked_for_is_hashed_once_for_the_same_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    kube = FakeKube()
    hashed: list[str] = []
    real_revision = render_module.revision

    def counting_revision(body: dict[str, Any], context: RenderContext) -> str:
        hashed.append(body["spec"]["image"])
        return real_revision(body, context)

    monkeypatch.setattr(reconcile_module, "revision", counting_revision)
    body = ms()
    first, record = reconcile(cast(Kube, kube), body, lambda *_: None)
    reconcile(cast(Kube, kube), {**body, "status": first}, lambda *_: None, previous_apply=record)
    assert len(hashed) == 1  # a resync of an unchanged Microservice
    changed = copy.deepcopy(body)
    changed["spec"]["image"] = "registry.example/orders:2.0"
    second, _ = reconcile(
        cast(Kube, kube), {**changed, "status": first}, lambda *_: None, previous_apply=record
    )
    assert hashed == [body["spec"]["image"], "registry.example/orders:2.0"]
    assert second["rollout"]["stableRevision"] == real_revision(changed, RenderContext())
    assert second["rollout"]["stableRevision"] != first["rollout"]["stableRevision"]


def _monitor(owner: str, uid: str = "m1", generation: int = 1, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {
            "name": owner,
            "namespace": "shop",
            "uid": uid,
            "generation": generation,
            "resourceVersion": "7",
            "labels": {"app.kubernetes.io/name": owner, **labels},
            "ownerReferences": [{"kind": "Microservice", "name": owner, "controller": True, "uid": "o"}],
        },
    }


def test_a_resyncs_listing_of_a_kind_not_watched_spends_the_records_whose_child_changed_or_went() -> None:
    reconciler = Reconciler(cast(Kube, FakeKube()), lambda *_: None)
    owners = ("same", "status-only", "edited", "relabelled", "made-again", "gone")
    for owner in owners:
        reconciler._applied[("shop", owner)] = Applied("d", {"ServiceMonitor": slim(_monitor(owner))})
    listed = [
        _monitor("same"),
        {**_monitor("status-only"), "status": {"bindings": []}},  # its controller's status: no drift
        _monitor("edited", generation=2),
        _monitor("relabelled", team="x"),
        _monitor("made-again", uid="m2"),
    ]
    listed[1]["metadata"]["resourceVersion"] = "9"
    reconciler.audit("ServiceMonitor", listed)
    intact = {owner: reconciler._applied[("shop", owner)].intact for owner in owners}
    assert intact == {
        "same": True,
        "status-only": True,
        "edited": False,
        "relabelled": False,
        "made-again": False,
        "gone": False,
    }
    reconciler.audit("TraefikService", [])  # no record holds one: nothing else is spent
    assert reconciler._applied[("shop", "same")].intact


def test_the_kit_version_the_pods_report_is_written_and_kept_while_nothing_newer_is_known() -> None:
    kube = FakeKube()
    body = ms()
    assert "kitVersion" not in run(kube, body)  # no report, none before
    reported, _ = reconcile(cast(Kube, kube), body, lambda *_: None, kit_version="0.1.0")
    assert reported["kitVersion"] == "0.1.0"
    kube.status = None
    kept, _ = reconcile(cast(Kube, kube), {**body, "status": reported}, lambda *_: None)
    assert kept["kitVersion"] == "0.1.0"  # an operator that has not read Prometheus yet keeps it
    assert kube.status is None  # so the status is unchanged and not written
    newer, _ = reconcile(cast(Kube, kube), {**body, "status": reported}, lambda *_: None, kit_version="0.2.0")
    assert newer["kitVersion"] == "0.2.0"
    assert kube.status == newer


@pytest.fixture
def leading() -> Iterator[None]:
    """This replica leads: it exports each Microservice's series."""
    set_leading(True)
    yield
    set_leading(False)


def series(name: str = "orders") -> dict[str, float | str | None]:
    """The Microservice's gauges as a scrape shows them (None: no series)."""
    labels = {"namespace": "shop", "name": name}
    phases = [
        sample.labels["phase"]
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.name == "flotilla_operator_microservice_rollout_phase" and sample.labels["name"] == name
    ]
    return {
        "scrape_targets": REGISTRY.get_sample_value("flotilla_operator_microservice_scrape_targets", labels),
        "ready": REGISTRY.get_sample_value("flotilla_operator_microservice_ready", labels),
        "phase": phases[0] if phases else None,
    }


@pytest.mark.usefixtures("leading")
def test_a_reconcile_exports_the_scrape_targets_readiness_and_release_phase() -> None:
    kube = FakeKube()
    body = ms()
    first, record = reconcile(cast(Kube, kube), body, lambda *_: None)
    assert series() == {"scrape_targets": 3, "ready": 0, "phase": "Stable"}
    record.observe("Deployment", slim(rolled_out(kube)), deleted=False)
    reconcile(cast(Kube, kube), {**body, "status": first}, lambda *_: None, previous_apply=record)
    assert series() == {"scrape_targets": 3, "ready": 1, "phase": "Stable"}
    reconcile(cast(Kube, kube), ms(2, replicas=5), lambda *_: None)
    assert series()["scrape_targets"] == 5


@pytest.mark.usefixtures("leading")
def test_under_autoscaling_the_scrape_targets_are_the_autoscalers_count() -> None:
    kube = FakeKube()
    scaled = {"minReplicas": 2, "maxReplicas": 6}
    run(kube, ms(autoscaling=scaled))
    assert series()["scrape_targets"] == 2
    kube.objects[("Deployment", "orders")]["spec"]["replicas"] = 4  # the HPA scaled it (its scale)
    run(kube, ms(autoscaling=scaled))
    assert series()["scrape_targets"] == 4


@pytest.mark.usefixtures("leading")
def test_no_service_monitor_means_no_scrape_targets() -> None:
    run(FakeKube(), ms(metrics={"enabled": False, "path": "/metrics", "interval": "30s"}))
    assert series()["scrape_targets"] == 0
    kube = FakeKube()
    kube.missing_crds.add("servicemonitors.monitoring.coreos.com")
    run(kube, ms())
    assert series()["scrape_targets"] == 0


def test_a_candidates_pods_are_scrape_targets_too() -> None:
    record = Applied(
        "",
        {"Deployment": {"spec": {"replicas": 4}}, "Deployment/canary": {"spec": {"replicas": 1}}},
        rendered=frozenset({"Deployment", "ServiceMonitor"}),
    )
    assert scrape_targets({"replicas": 4}, record) == 5
    assert scrape_targets({"autoscaling": {"minReplicas": 2}}, record) == 5
    assert scrape_targets({"autoscaling": {"minReplicas": 2}}, Applied("", {}, rendered=record.rendered)) == 2


@pytest.mark.usefixtures("leading")
def test_a_microservice_found_gone_loses_its_series() -> None:
    kube = FakeKube()
    kube.microservices["orders"] = ms()
    reconciler = Reconciler(cast(Kube, kube), lambda *_: None)
    reconciler.request("shop", "orders")
    assert series()["ready"] == 0
    del kube.microservices["orders"]
    reconciler.request("shop", "orders")
    assert series() == {"scrape_targets": None, "ready": None, "phase": None}
