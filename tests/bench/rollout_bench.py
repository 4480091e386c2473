"""Releases on the real node, under steady traffic through the ingress (tests/support/canary.py).

``rollout_rollback_s``: a release that fails every request (``FAULT_ERROR_RATIO=1``, so each of
its answers is told apart). Flotilla: the canary; from the operator's decision
(``status.rollout.endedAt``, written by the reconcile that sets the candidate's weight to 0) to
the last answer the candidate gave. Baseline: the same bad release as a plain rolling update, then the
spec changed back; from that change to the last bad answer.

``rollout_good_release_failed_requests``: the requests that failed while a good change was
released. Flotilla: the canary, through every step. Baseline: a plain rolling update.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections import Counter
from typing import Any

from kubernetes import client
from kubernetes.client import ApiClient

from tests.bench.report import Result, Target
from tests.support.canary import (
    POLICY,
    Timeline,
    Traffic,
    canary_namespace,
    ended_at,
    patch,
    read,
    release_env,
)
from tests.support.kube import connect, wait_for
from tests.support.node import platform_images

RATE = 40.0  # requests per second through the ingress
SETTLE_SECONDS = 8  # after the release ends: long enough for any stray answer to arrive


def progress(message: str) -> None:
    """What the benchmark is doing now, on stderr."""
    print(f"    {message}", file=sys.stderr, flush=True)


def _host(namespace: str) -> str:
    return f"{namespace}.canary.test"


def _release(kube: ApiClient, namespace: str, until: set[str], **env: str) -> tuple[Traffic, dict[str, Any]]:
    with Traffic(_host(namespace), rate=RATE) as traffic:
        release_env(kube, namespace, **env)
        state = Timeline().watch(kube, namespace, until, timeout=300)
        time.sleep(SETTLE_SECONDS)
    return traffic, state


def _taken(kube: ApiClient, namespace: str, timeout: float = 300) -> None:
    """Until the operator has seen the spec and the stable Deployment runs its revision on every pod."""

    def done() -> bool:
        ms = read(kube, namespace)
        status = ms.get("status") or {}
        if status.get("observedGeneration") != ms["metadata"]["generation"]:
            return False
        found = client.AppsV1Api(kube).read_namespaced_deployment("canary", namespace)
        state, wanted = found.status, found.spec.replicas or 1
        if state is None or found.metadata is None or found.spec.template.metadata is None:
            return False
        revision = (found.spec.template.metadata.labels or {}).get("flotilla.dev/revision")
        return bool(
            revision == (status.get("rollout") or {}).get("stableRevision")
            and (state.observed_generation or 0) >= (found.metadata.generation or 0)
            and (state.updated_replicas or 0) >= wanted
            and (state.ready_replicas or 0) >= wanted
            and (state.replicas or 0) <= wanted
        )

    wait_for(done, timeout=timeout, interval=0.2, what="the rolling update")


def _last_injected(traffic: Traffic) -> float:
    return max((at for at, _, injected in traffic.answers if injected), default=0.0)


def _failures(traffic: Traffic) -> str:
    return ", ".join(
        f"{count} x {status}" for status, count in Counter(s for _, s, _ in traffic.failed()).items()
    )


def canary_side(kube: ApiClient, namespace: str) -> tuple[float, int]:
    """The canary's rollback time and a good release's failed requests."""
    progress("canary: a good release through every step")
    good, _ = _release(kube, namespace, {"Stable"}, RELEASE_NOTE=uuid.uuid4().hex)
    progress(f"canary: {len(good.answers)} requests, {len(good.failed())} failed; now a bad release")
    bad, state = _release(kube, namespace, {"RolledBack"}, FAULT_ERROR_RATIO="1")
    rollback = _last_injected(bad) - ended_at(state)
    progress(f"canary: rolled back; the candidate's last answer {rollback:.2f}s after the decision")
    return max(rollback, 0.0), len(good.failed())


def rolling_side(kube: ApiClient, namespace: str) -> tuple[float, int]:
    """A plain rolling update's way back from the same bad release, and its good release's failures."""
    strategy: dict[str, Any] = {**POLICY, "strategy": "RollingUpdate"}
    patch(kube, namespace, {"spec": {"rollout": strategy}})
    good_env = {"RELEASE_NOTE": uuid.uuid4().hex}
    progress("rolling update: a good release")
    with Traffic(_host(namespace), rate=RATE) as good:
        release_env(kube, namespace, **good_env)
        _taken(kube, namespace)
        time.sleep(SETTLE_SECONDS)
    progress(f"rolling update: {len(good.answers)} requests, {len(good.failed())} failed ({_failures(good)})")
    release_env(kube, namespace, FAULT_ERROR_RATIO="1")
    _taken(kube, namespace)
    with Traffic(_host(namespace), rate=RATE) as bad:
        time.sleep(3)  # every answer is bad now
        changed = time.time()
        release_env(kube, namespace, **good_env)
        _taken(kube, namespace)
        time.sleep(SETTLE_SECONDS)
    back = _last_injected(bad) - changed
    progress(f"rolling update: the last bad answer {back:.2f}s after the spec changed back")
    return max(back, 0.0), len(good.failed())


def run() -> list[Result]:
    """Both sides in one namespace: the canary first, then the same releases as rolling updates."""
    kube = connect()
    with canary_namespace(kube, platform_images(), POLICY) as namespace:
        rollback, good_failed = canary_side(kube, namespace)
        baseline_rollback, baseline_failed = rolling_side(kube, namespace)
    return [
        Result("rollout_rollback_s", rollback, baseline_rollback, "s", Target("<=", 0.2)),
        Result(
            "rollout_good_release_failed_requests",
            good_failed,
            baseline_failed,
            "",
            Target("==", 0, of="flotilla"),
        ),
    ]
