"""One reconcile against a fake API that keeps server-side apply's ownership of replicas."""

from __future__ import annotations

import copy
from typing import Any, cast

from flotilla_operator import FIELD_MANAGER
from flotilla_operator.kube import Kube
from flotilla_operator.reconcile import HANDOVER_MANAGER, Dependents, reconcile

BASE: dict[str, Any] = {
    "apiVersion": "flotilla.dev/v1alpha1",
    "kind": "Microservice",
    "metadata": {"name": "orders", "namespace": "shop", "uid": "uid-1", "generation": 1},
    "spec": {
        "image": "registry.example/orders:1.0",
        "replicas": 3,
        "port": 8000,
        "probes": {"liveness": {"path": "/livez"}, "readiness": {"path": "/readyz"}},
        "metrics": {"enabled": True, "path": "/metrics", "interval": "30s"},
    },
}


def ms(generation: int = 1, **spec: Any) -> dict[str, Any]:
    body = copy.deepcopy(BASE)
    body["spec"].update(spec)
    body["metadata"]["generation"] = generation
    return body


class FakeKube:
    """Objects by (kind, name); ``spec.replicas`` is kept while any field manager applied it."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.replica_owners: dict[str, set[str]] = {}
        self.replica_history: list[int] = []
        self.deleted: list[tuple[str, str]] = []
        self.status: dict[str, Any] | None = None

    def crd_installed(self, _: str) -> bool:
        return True

    def config_hash(self, *_: Any) -> str:
        return ""

    def forget_crds(self) -> None:
        pass

    def apply(self, manifest: dict[str, Any], field_manager: str = FIELD_MANAGER) -> dict[str, Any]:
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        live = self.objects.get((kind, name))
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
        return [copy.deepcopy(obj) for (k, _name), obj in self.objects.items() if k == kind]

    def delete(self, kind: str, _: str, name: str) -> bool:
        self.deleted.append((kind, name))
        return self.objects.pop((kind, name), None) is not None

    def microservice(self, *_: Any) -> None:
        return None

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
    deployment = kube.objects[("Deployment", "orders")]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":1.0")
    assert ("Job", first) in kube.deleted  # the old revision's Job is pruned
    _finish(kube, "Failed", "BackoffLimitExceeded")
    status = run(kube, ms(2, migrate=True, image="registry.example/orders:2.0"))
    assert conditions(status)["Migrated"]["reason"] == "Failed"
    assert conditions(status)["Degraded"]["status"] == "True"
    assert "BackoffLimitExceeded" in conditions(status)["Degraded"]["message"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":1.0")


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
