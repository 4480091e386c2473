"""Two operators against one API server: one leader through a Lease, a standby that takes over
when the leader is killed, stopped or cut off, and nothing applied twice."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client import ApiClient

from flotilla_operator import FIELD_MANAGER
from tests.support.cases import Case
from tests.support.convergence import StartOperator, microservices, plain, ready
from tests.support.kube import wait_for
from tests.support.operator import OPERATOR_NAMESPACE, OperatorProcess, create, microservice
from tests.support.stall_proxy import StallProxy

LEASE_SECONDS = 10  # the operator's default
FAILOVER_BOUND = 15.0  # seconds from a dead leader to the standby's first reconcile
HANDOVER_BOUND = 5.0  # seconds from SIGTERM of the leader to a standby that leads
COUNT = 50
KILL_AT = 10
SETTINGS = {"FLOTILLA_OPERATOR_RESYNC_SECONDS": "60"}


def role(operator: OperatorProcess) -> str:
    return str(operator.health()[1].get("role", "down"))


def reconciles(operator: OperatorProcess) -> float:
    return operator.metric("flotilla_operator_reconciles_total", result="success")


def lease_holder(kube: ApiClient, lease: str) -> str | None:
    found = client.CoordinationV1Api(kube).read_namespaced_lease(lease, OPERATOR_NAMESPACE)
    return found.spec.holder_identity if found.spec else None


def leader_and_standby(
    start_operator: StartOperator, **kubeconfigs: Path
) -> tuple[str, OperatorProcess, OperatorProcess]:
    """Two replicas of one operator: the first started leads, the second stands by."""
    lease = f"failover-{uuid.uuid4().hex[:6]}"
    first = start_operator(SETTINGS, lease, kubeconfigs.get("first"))
    wait_for(lambda: role(first) == "reconciling", timeout=30, what="the first replica to lead")
    second = start_operator(SETTINGS, lease, kubeconfigs.get("second"))
    wait_for(lambda: role(second) == "standby", timeout=30, what="the second replica to stand by")
    return lease, first, second


def appliers(item: dict[str, Any]) -> set[str]:
    """The managers that applied (server-side) fields of an object."""
    return {
        entry["manager"]
        for entry in item["metadata"].get("managedFields") or []
        if entry["operation"] == "Apply"
    }


def assert_one_child_each(kube: ApiClient, namespace: str, names: list[str]) -> None:
    """One Deployment, Service and ReplicaSet per Microservice, owned by it, applied by one manager."""
    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)
    owners = {ms["metadata"]["name"]: ms["metadata"]["uid"] for ms in microservices(kube, namespace)}
    assert sorted(owners) == sorted(names)
    for kind, items in (
        ("Deployment", plain(kube, apps.list_namespaced_deployment(namespace))),
        ("Service", plain(kube, core.list_namespaced_service(namespace))),
    ):
        assert sorted(item["metadata"]["name"] for item in items) == sorted(names), kind
        for item in items:
            references = [(r["kind"], r["uid"]) for r in item["metadata"].get("ownerReferences") or []]
            assert references == [("Microservice", owners[item["metadata"]["name"]])], item["metadata"][
                "name"
            ]
            assert appliers(item) == {FIELD_MANAGER}, f"{kind} {item['metadata']['name']}: {appliers(item)}"
    replica_sets: dict[str, int] = {}
    for replica_set in plain(kube, apps.list_namespaced_replica_set(namespace)):
        owner = replica_set["metadata"]["ownerReferences"][0]["name"]
        replica_sets[owner] = replica_sets.get(owner, 0) + 1
    assert replica_sets == dict.fromkeys(names, 1), "a Deployment was applied with two templates"


def test_only_the_leader_reconciles_and_every_child_has_one_manager(
    kube: ApiClient, namespace: str, start_operator: StartOperator, case: Case
) -> None:
    lease, leader, standby = leader_and_standby(start_operator)
    names = [f"svc-{index}" for index in range(10)]
    for name in names:
        create(kube, namespace, microservice(name))
    case.tried(len(names))
    wait_for(lambda: all(ready(ms) for ms in microservices(kube, namespace)), timeout=120, what="10 Ready")
    assert_one_child_each(kube, namespace, names)
    assert reconciles(standby) == 0, "the standby reconciled"
    assert reconciles(leader) >= len(names)
    assert leader.metric("flotilla_operator_leader") == 1 and standby.metric("flotilla_operator_leader") == 0
    assert lease_holder(kube, lease) == leader.health()[1]["identity"]
    assert standby.health() == (200, standby.health()[1]), "a standby is live and ready"
    case.saw(
        f"leader {reconciles(leader):.0f} reconciles, standby 0; Lease {lease} held by the leader; "
        f"every Deployment and Service applied by {FIELD_MANAGER} only, one ReplicaSet each"
    )


def test_a_killed_leader_is_replaced_within_15_s_and_all_50_converge_once(
    kube: ApiClient, namespace: str, start_operator: StartOperator, case: Case
) -> None:
    lease, leader, standby = leader_and_standby(start_operator)
    apps = client.AppsV1Api(kube)
    names = [f"svc-{index:02d}" for index in range(COUNT)]
    with ThreadPoolExecutor(1) as executor:
        creation = executor.submit(lambda: [create(kube, namespace, microservice(name)) for name in names])
        wait_for(
            lambda: (
                len(apps.list_namespaced_deployment(namespace).items) >= KILL_AT
                or (creation.done() and creation.exception())
            ),
            timeout=120,
            interval=0.05,
            what=f"{KILL_AT} Deployments",
        )
        leader.kill()
        killed_at = time.monotonic()
        at_kill = len(apps.list_namespaced_deployment(namespace).items)
        wait_for(
            lambda: reconciles(standby) > 0, timeout=60, interval=0.1, what="the standby's first reconcile"
        )
        failover = time.monotonic() - killed_at
        creation.result(timeout=120)
    case.tried()
    wait_for(
        lambda: sum(ready(ms) for ms in microservices(kube, namespace)) == COUNT,
        timeout=300,
        interval=0.5,
        what=f"all {COUNT} Ready",
    )
    converged = time.monotonic() - killed_at
    print(
        f"\nfailover: SIGKILL at {at_kill} Deployments; first reconcile by the standby {failover:.1f} s later"
    )
    case.saw(
        f"SIGKILL of the leader at {at_kill} of {COUNT} Deployments; the standby's first reconcile "
        f"{failover:.1f} s later (Lease {LEASE_SECONDS} s); all {COUNT} Ready {converged:.1f} s after it"
    )
    assert KILL_AT <= at_kill < COUNT, "the leader was not killed while reconciling"
    assert failover <= FAILOVER_BOUND, f"the standby took {failover:.1f} s"
    assert_one_child_each(kube, namespace, names)
    assert lease_holder(kube, lease) == standby.health()[1]["identity"]
    case.saw("one Deployment, Service and ReplicaSet per Microservice, one manager")


def test_a_leader_stopped_with_sigterm_hands_over_at_once(
    kube: ApiClient, namespace: str, start_operator: StartOperator, case: Case
) -> None:
    _, leader, standby = leader_and_standby(start_operator)
    stopped_at = time.monotonic()
    leader.stop()
    assert leader.process is not None and leader.process.returncode == 0, leader.log_path.read_text()[-2000:]
    wait_for(lambda: role(standby) == "reconciling", timeout=30, interval=0.1, what="the standby to lead")
    handover = time.monotonic() - stopped_at
    case.tried()
    create(kube, namespace, microservice("after-handover"))
    wait_for(lambda: all(ready(ms) for ms in microservices(kube, namespace)), timeout=60, what="Ready")
    case.saw(f"SIGTERM of the leader: the Lease released, the standby leads {handover:.1f} s later")
    assert handover <= HANDOVER_BOUND, f"hand-over took {handover:.1f} s"


def test_a_partitioned_leader_stops_writing_and_is_replaced(
    kube: ApiClient,
    namespace: str,
    start_operator: StartOperator,
    operator_kubeconfig: Path,
    tmp_path: Path,
    case: Case,
) -> None:
    proxy = StallProxy(operator_kubeconfig)
    try:
        lease, leader, standby = leader_and_standby(
            start_operator, first=proxy.kubeconfig(tmp_path / "through-proxy")
        )
        create(kube, namespace, microservice("before"))
        wait_for(lambda: all(ready(ms) for ms in microservices(kube, namespace)), timeout=60, what="Ready")
        proxy.partition()
        cut_at = time.monotonic()
        case.tried()
        wait_for(lambda: role(standby) == "reconciling", timeout=60, interval=0.2, what="the standby to lead")
        replaced = time.monotonic() - cut_at
        wait_for(
            lambda: role(leader) == "standby",
            timeout=30,
            interval=0.2,
            what="the cut-off leader to step down",
        )
        stepped_down = time.monotonic() - cut_at
        proxy.heal()
        create(kube, namespace, microservice("after"))
        wait_for(lambda: all(ready(ms) for ms in microservices(kube, namespace)), timeout=60, what="'after'")
        time.sleep(3)  # the healed replica had time to write, if it were to
        assert role(leader) == "standby"
        assert reconciles(leader) == 0, "the cut-off replica reconciled after it came back"
        assert lease_holder(kube, lease) == standby.health()[1]["identity"]
        assert_one_child_each(kube, namespace, ["before", "after"])
        case.saw(
            f"leader cut off from the API server: it stepped down {stepped_down:.1f} s later (fence "
            f"{LEASE_SECONDS * 2 / 3 + 2:.1f} s), the standby led {replaced:.1f} s later; healed: it stays "
            "a standby, 0 reconciles"
        )
        assert replaced <= FAILOVER_BOUND, f"the standby took {replaced:.1f} s"
    finally:
        proxy.close()
