"""Releases through the operator on the real API server with kwok nodes (analysis on readiness).

No Prometheus here: the operator says so in the CanaryAnalysis condition and judges each step on
the candidate's readiness and restarts. The weighted ingress route and the analysis on the kit's
metrics are tried on the real node (tests/node/test_canary.py).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from tests.support.kube import tool, wait_for
from tests.support.operator import GROUP, PLURAL, VERSION, create, microservice

FAST = {"strategy": "Canary", "steps": [20, 50], "stepSeconds": 5, "progressDeadlineSeconds": 60}
IMAGE = "registry.example/flotilla/service:{}"


def read(kube: ApiClient, namespace: str, name: str) -> dict[str, Any]:
    return client.CustomObjectsApi(kube).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)


def patch(kube: ApiClient, namespace: str, name: str, body: dict[str, Any]) -> None:
    client.CustomObjectsApi(kube).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, body, _content_type="application/merge-patch+json"
    )


def rollout(kube: ApiClient, namespace: str, name: str) -> dict[str, Any]:
    return (read(kube, namespace, name).get("status") or {}).get("rollout") or {}


def condition(kube: ApiClient, namespace: str, name: str, kind: str) -> dict[str, Any]:
    conditions = (read(kube, namespace, name).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == kind), {})


def deployment(kube: ApiClient, namespace: str, name: str) -> client.V1Deployment | None:
    try:
        return client.AppsV1Api(kube).read_namespaced_deployment(name, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def image_of(found: client.V1Deployment | None) -> str | None:
    return None if found is None else found.spec.template.spec.containers[0].image


def released(kube: ApiClient, namespace: str, name: str, version: str, **spec: Any) -> str:
    """Create ``name`` at ``version`` and wait for its first release; return its revision."""
    create(
        kube,
        namespace,
        microservice(name, image=IMAGE.format(version), replicas=2, **{"rollout": FAST, **spec}),
    )

    def stable() -> str | None:
        state = rollout(kube, namespace, name)
        ready = condition(kube, namespace, name, "Ready").get("status") == "True"
        return state.get("stableRevision") if ready and state.get("phase") == "Stable" else None

    return wait_for(stable, timeout=60, what=f"{name}'s first release")


def event_times(kube: ApiClient, namespace: str, name: str) -> dict[str, str]:
    """Each Event's reason and when it was first posted (ISO 8601, to the second)."""
    listed = client.CoreV1Api(kube).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}"
    )
    return {str(e.reason): e.metadata.creation_timestamp.isoformat() for e in listed.items}


def events(kube: ApiClient, namespace: str, name: str) -> list[str]:
    listed = client.CoreV1Api(kube).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}"
    )
    return [str(e.reason) for e in sorted(listed.items, key=lambda e: str(e.metadata.creation_timestamp))]


@pytest.mark.usefixtures("operator")
def test_a_new_image_is_released_in_steps_beside_the_stable_then_promoted(
    kube: ApiClient, namespace: str
) -> None:
    first = released(kube, namespace, "shop", "1.0")
    assert condition(kube, namespace, "shop", "CanaryAnalysis")["reason"] == "ReadinessOnly"
    patch(kube, namespace, "shop", {"spec": {"image": IMAGE.format("2.0")}})
    seen: list[tuple[str, int, str | None, str | None]] = []

    def promoted() -> bool:
        state = rollout(kube, namespace, "shop")
        stable, canary = deployment(kube, namespace, "shop"), deployment(kube, namespace, "shop-canary")
        seen.append((state.get("phase", ""), state.get("weight", 0), image_of(stable), image_of(canary)))
        return state.get("phase") == "Stable" and state.get("stableRevision") != first and canary is None

    wait_for(promoted, timeout=90, interval=0.5, what="the canary to be promoted and its Deployment gone")
    phases = [phase for phase, *_ in seen]
    # Promoting can end between two polls (the stable rolls in a second on kwok): its Event,
    # posted as the phase begins, is checked below instead.
    assert "Progressing" in phases
    # While it progressed, the stable Deployment kept the old image and the candidate ran the new.
    # Promotion applies the stable's new template, then writes the phase: one poll may fall
    # between the two, and only as the last of the Progressing ones (polls are 0.5 s apart).
    progressing = [entry for entry in seen if entry[0] == "Progressing"]
    early = [index for index, (*_, stable, _) in enumerate(progressing) if stable != IMAGE.format("1.0")]
    assert early in ([], [len(progressing) - 1]), f"the stable took the new image early: {seen}"
    assert {canary for *_, canary in progressing} <= {IMAGE.format("2.0"), None}
    assert {weight for _, weight, *_ in progressing} <= {0, 20, 50}
    assert 50 in {weight for _, weight, *_ in progressing}
    assert image_of(deployment(kube, namespace, "shop")) == IMAGE.format("2.0")
    assert condition(kube, namespace, "shop", "Released")["status"] == "True"
    posted = event_times(kube, namespace, "shop")
    assert posted["RolloutStarted"] <= posted["Promoting"] <= posted["Promoted"], posted


@pytest.mark.usefixtures("operator")
def test_an_abort_returns_to_the_stable_and_it_stays_until_the_spec_changes(
    kube: ApiClient, namespace: str
) -> None:
    first = released(kube, namespace, "cart", "1.0", rollout={**FAST, "stepSeconds": 300})
    patch(kube, namespace, "cart", {"spec": {"image": IMAGE.format("2.0")}})
    wait_for(
        lambda: rollout(kube, namespace, "cart").get("weight") == 20,
        timeout=30,
        what="the candidate's first step",
    )
    patch(kube, namespace, "cart", {"metadata": {"annotations": {"flotilla.dev/rollout": "abort"}}})

    def rolled_back() -> bool:
        state = rollout(kube, namespace, "cart")
        return state.get("phase") == "RolledBack" and deployment(kube, namespace, "cart-canary") is None

    wait_for(rolled_back, timeout=30, what="the abort to roll back and the candidate to go")
    state = rollout(kube, namespace, "cart")
    assert (state["reason"], state["stableRevision"], state["weight"]) == ("Aborted", first, 0)
    assert condition(kube, namespace, "cart", "Degraded")["reason"] == "RolledBack"
    assert condition(kube, namespace, "cart", "Ready")["status"] == "True"
    assert "flotilla.dev/rollout" not in (read(kube, namespace, "cart")["metadata"].get("annotations") or {})
    time.sleep(6)  # a tick or three: the rolled-back revision must not start again
    assert rollout(kube, namespace, "cart")["phase"] == "RolledBack"
    assert image_of(deployment(kube, namespace, "cart")) == IMAGE.format("1.0")
    patch(kube, namespace, "cart", {"spec": {"image": IMAGE.format("3.0")}})
    wait_for(
        lambda: rollout(kube, namespace, "cart").get("candidateRevision") not in (None, "", first),
        timeout=30,
        what="a new spec to start a new canary",
    )


@pytest.mark.usefixtures("operator")
def test_a_candidate_that_never_becomes_ready_is_rolled_back_by_the_deadline_without_traffic(
    kube: ApiClient, namespace: str
) -> None:
    released(kube, namespace, "pending", "1.0", rollout={**FAST, "progressDeadlineSeconds": 30})
    # No node has this label: the candidate's pods stay Pending, never ready.
    patch(kube, namespace, "pending", {"spec": {"nodeSelector": {"flotilla.dev/nowhere": "true"}}})
    weights: list[int] = []

    def rolled_back() -> bool:
        state = rollout(kube, namespace, "pending")
        weights.append(int(state.get("weight", 0)))
        return state.get("phase") == "RolledBack"

    started = time.monotonic()
    wait_for(rolled_back, timeout=90, interval=0.5, what="the progress deadline to roll back")
    assert time.monotonic() - started >= 25
    state = rollout(kube, namespace, "pending")
    assert state["reason"] == "ProgressDeadlineExceeded" and "0/1 pods ready" in state["message"]
    assert set(weights) == {0}, "a candidate that is not ready never gets traffic"
    assert "RolledBack" in events(kube, namespace, "pending")


@pytest.mark.usefixtures("operator")
def test_kubectl_get_shows_revision_phase_and_weight(kube: ApiClient, namespace: str) -> None:
    revision = released(kube, namespace, "shown", "1.0")
    listed = tool("kubectl", "get", "ms", "shown", "--namespace", namespace, "-o", "wide")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()[:2]
    for column in ("REVISION", "PHASE", "WEIGHT", "CANDIDATE"):
        assert column in header.split()
    assert revision in row.split() and "Stable" in row.split()


@pytest.mark.usefixtures("operator")
def test_the_rolling_update_strategy_replaces_the_pods_directly(kube: ApiClient, namespace: str) -> None:
    released(kube, namespace, "direct", "1.0", rollout={"strategy": "RollingUpdate"})
    patch(kube, namespace, "direct", {"spec": {"image": IMAGE.format("2.0")}})
    wait_for(
        lambda: image_of(deployment(kube, namespace, "direct")) == IMAGE.format("2.0"),
        timeout=30,
        what="the stable Deployment to take the new image",
    )
    assert deployment(kube, namespace, "direct-canary") is None
    assert rollout(kube, namespace, "direct")["reason"] == "RollingUpdate"
