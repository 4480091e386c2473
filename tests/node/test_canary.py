"""Releases on the real node, under steady traffic through the Traefik ingress, judged from the
node's real Prometheus scraping the pods (tests/support/canary.py sets them up).

Each case changes what the pods run and counts the requests that failed while the operator
released it; the kit's FAULT_* settings make the bad releases (a share of 503s, a crash at start,
never ready).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import ApiClient

from tests.support.canary import (
    POLICY,
    STEPS,
    Timeline,
    Traffic,
    canary_namespace,
    ended_at,
    events,
    patch,
    release_env,
    rollout,
)
from tests.support.kube import wait_for


@pytest.fixture(scope="module")
def namespace(kube: ApiClient, images: dict[str, str]) -> Iterator[str]:
    """The canary's namespace, its operator and its first release."""
    with canary_namespace(kube, images, POLICY) as name:
        yield name


def test_a_good_release_is_promoted_through_every_step_with_no_failed_request(
    kube: ApiClient, namespace: str
) -> None:
    timeline = Timeline()
    assert rollout(kube, namespace)["analysis"] == "Prometheus"
    before = rollout(kube, namespace)["stableRevision"]
    with Traffic(f"{namespace}.canary.test") as traffic:
        release_env(kube, namespace, RELEASE_NOTE="good")
        state = timeline.watch(kube, namespace, {"Stable", "RolledBack"}, timeout=240)
    print(f"  {len(traffic.answers)} requests, {len(traffic.failed())} failed")
    assert state["phase"] == "Stable" and state["stableRevision"] != before, state
    assert timeline.weights() >= {*STEPS}, timeline.entries
    assert traffic.failed() == [], traffic.failed()[:10]
    reasons = [e.reason for e in events(kube, namespace)]
    assert "Promoted" in reasons


def test_a_return_to_the_warm_revision_serves_again_within_seconds_with_no_failed_request(
    kube: ApiClient, namespace: str
) -> None:
    warm = rollout(kube, namespace)["previousRevision"]
    with Traffic(f"{namespace}.canary.test") as traffic:
        began = time.time()
        release_env(kube, namespace)  # the first release's env: the previous revision
        state = wait_for(
            lambda: (s := rollout(kube, namespace)).get("reason") == "Restored" and s,
            timeout=120,
            interval=0.2,
            what="the return to the warm revision",
        )
        took = time.time() - began
    print(f"  back on the warm revision {warm} in {took:.1f}s; {len(traffic.answers)} requests, "
          f"{len(traffic.failed())} failed")  # fmt: skip
    assert state["stableRevision"] == warm
    assert "RollingBack" in [e.reason for e in events(kube, namespace)]
    assert traffic.failed() == []
    assert took < 60, f"the warm revision took {took:.1f}s to serve every pod again"


def test_a_release_failing_a_fifth_of_its_requests_is_rolled_back_before_half_the_traffic(
    kube: ApiClient, namespace: str
) -> None:
    timeline = Timeline()
    stable = rollout(kube, namespace)["stableRevision"]
    with Traffic(f"{namespace}.canary.test") as traffic:
        release_env(kube, namespace, FAULT_ERROR_RATIO="0.2")
        state = timeline.watch(kube, namespace, {"RolledBack", "Stable"}, timeout=240)
        rolled_back_at = ended_at(state)
        time.sleep(5)
    failed, exposed = traffic.failed(), [a for a in traffic.answers if a[0] >= timeline.first("Progressing")]
    print(f"  {len(exposed)} requests during the release, {len(failed)} failed (all injected: "
          f"{all(injected for *_, injected in failed)}); max weight {max(timeline.weights())}%")  # fmt: skip
    assert state["phase"] == "RolledBack" and state["reason"] == "ErrorRatio", state
    assert state["stableRevision"] == stable
    assert max(timeline.weights()) < 50, timeline.entries
    # What the weight allows: a fifth of the candidate's share, the share at most the highest step
    # reached; twice that for the randomness of a few dozen requests.
    allowed = 2 * 0.2 * max(timeline.weights()) / 100 * len(exposed) + 3
    assert len(failed) <= allowed, (len(failed), allowed)
    assert all(injected for *_, injected in failed), "only the candidate's injected faults failed"
    last = max(at for at, *_ in failed)
    print(f"  the candidate's last answer came {last - rolled_back_at:.2f}s after the rollback")
    assert last < rolled_back_at + 3, "traffic left the candidate at once"


def release_under_traffic(
    kube: ApiClient, namespace: str, until: set[str], timeout: float, **env: str
) -> tuple[dict[str, Any], Traffic]:
    """Release ``env`` under steady traffic; the state it ended in and the traffic's answers."""
    with Traffic(f"{namespace}.canary.test") as traffic:
        release_env(kube, namespace, **env)
        state = Timeline().watch(kube, namespace, until, timeout=timeout)
    print(f"  {len(traffic.answers)} requests, {len(traffic.failed())} failed; {state['message']}")
    return state, traffic


def test_a_crash_looping_release_is_rolled_back_with_no_failed_request(
    kube: ApiClient, namespace: str
) -> None:
    state, traffic = release_under_traffic(kube, namespace, {"RolledBack"}, 180, FAULT_CRASH_AT_START="true")
    assert state["reason"] == "CrashLoop", state
    assert traffic.failed() == []


def test_a_release_that_never_becomes_ready_is_rolled_back_by_the_deadline_with_no_failed_request(
    kube: ApiClient, namespace: str
) -> None:
    patch(kube, namespace, {"spec": {"rollout": {**POLICY, "progressDeadlineSeconds": 45}}})
    state, traffic = release_under_traffic(kube, namespace, {"RolledBack"}, 120, FAULT_NOT_READY="true")
    assert state["reason"] == "ProgressDeadlineExceeded", state
    assert traffic.failed() == []
    patch(kube, namespace, {"spec": {"rollout": POLICY}})


def test_an_abort_returns_to_the_stable(kube: ApiClient, namespace: str) -> None:
    stable = rollout(kube, namespace)["stableRevision"]
    with Traffic(f"{namespace}.canary.test") as traffic:
        release_env(kube, namespace, RELEASE_NOTE="aborted")
        wait_for(lambda: rollout(kube, namespace).get("weight") == STEPS[0], timeout=120,
                 what="the first step")  # fmt: skip
        patch(kube, namespace, {"metadata": {"annotations": {"flotilla.dev/rollout": "abort"}}})
        state = Timeline().watch(kube, namespace, {"RolledBack"}, timeout=60)
    assert (state["reason"], state["stableRevision"], state["weight"]) == ("Aborted", stable, 0)
    assert traffic.failed() == []
