"""Releases on the real node, under steady traffic through the ingress (tests/support/canary.py).

``rollout_rollback_s``: a release that fails every request (``FAULT_ERROR_RATIO=1``, so each of
its answers is told apart). Flotilla: the canary; from the moment its status turns RolledBack
(polled every 0.1 s: the operator applies the route before it writes the status) to the last
answer the candidate gave. Baseline: the same bad release as a plain rolling update, then the
spec changed back; from that change to the last bad answer.

``rollout_good_release_failed_requests``: the requests that failed while a good change was
released. Flotilla: the canary, through every step. Baseline: a plain rolling update.
"""

from __future__ import annotations

import sys
import time
import uuid
from typing import Any

from kubernetes import client
from kubernetes.client import ApiClient

from tests.bench.report import Result, Target
from tests.support.canary import POLICY, Timeline, Traffic, canary_namespace, patch, release_env, rollout
from tests.support.kube import connect, wait_for
from tests.support.node import platform_images

RATE = 40.0  # requests per second through the ingress
SETTLE_SECONDS = 8  # after the release ends: long enough for any stray answer to arrive


def progress(message: str) -> None:
    """What the benchmark is doing now, on stderr."""
    print(f"    {message}", file=sys.stderr, flush=True)


def _host(namespace: str) -> str:
    return f"{namespace}.canary.test"


def _release(kube: ApiClient, namespace: str, until: set[str], **env: str) -> tuple[Traffic, Timeline]:
    with Traffic(_host(namespace), rate=RATE) as traffic:
        release_env(kube, namespace, **env)
        timeline = Timeline()
        timeline.watch(kube, namespace, until, timeout=300)
        time.sleep(SETTLE_SECONDS)
    return traffic, timeline


def _rolled_out(kube: ApiClient, namespace: str, timeout: float = 300) -> None:
    """Until the stable Deployment runs the spec's revision on every pod (a plain rolling update)."""

    def done() -> bool:
        found = client.AppsV1Api(kube).read_namespaced_deployment("canary", namespace)
        status, wanted = found.status, found.spec.replicas or 1
        if status is None or found.metadata is None:
            return False
        return bool(
            (status.observed_generation or 0) >= (found.metadata.generation or 0)
            and (status.updated_replicas or 0) >= wanted
            and (status.ready_replicas or 0) >= wanted
            and (status.replicas or 0) <= wanted
        )

    wait_for(done, timeout=timeout, interval=0.2, what="the rolling update")


def _last_injected(traffic: Traffic) -> float:
    return max((at for at, _, injected in traffic.answers if injected), default=0.0)


def canary_side(kube: ApiClient, namespace: str) -> tuple[float, int]:
    """The canary's rollback time and a good release's failed requests."""
    progress("canary: a good release through every step")
    good, _ = _release(kube, namespace, {"Stable"}, RELEASE_NOTE=uuid.uuid4().hex)
    progress(f"canary: {len(good.answers)} requests, {len(good.failed())} failed; now a bad release")
    bad, timeline = _release(kube, namespace, {"RolledBack"}, FAULT_ERROR_RATIO="1")
    decided = timeline.first("RolledBack")
    rollback = max(0.0, _last_injected(bad) - decided)
    progress(f"canary: rolled back; the candidate's last answer {rollback:.2f}s after the decision")
    return rollback, len(good.failed())


def rolling_side(kube: ApiClient, namespace: str) -> tuple[float, int]:
    """A plain rolling update's way back from the same bad release, and its good release's failures."""
    strategy: dict[str, Any] = {**POLICY, "strategy": "RollingUpdate"}
    patch(kube, namespace, {"spec": {"rollout": strategy}})
    good_env = {"RELEASE_NOTE": uuid.uuid4().hex}
    progress("rolling update: a good release")
    with Traffic(_host(namespace), rate=RATE) as good:
        release_env(kube, namespace, **good_env)
        wait_for(lambda: rollout(kube, namespace).get("reason") == "RollingUpdate", timeout=60,
                 what="the rolling update to start")  # fmt: skip
        _rolled_out(kube, namespace)
        time.sleep(SETTLE_SECONDS)
    progress(f"rolling update: {len(good.answers)} requests, {len(good.failed())} failed; now a bad one")
    release_env(kube, namespace, FAULT_ERROR_RATIO="1")
    _rolled_out(kube, namespace)
    with Traffic(_host(namespace), rate=RATE) as bad:
        time.sleep(3)  # every answer is bad now
        changed = time.monotonic()
        release_env(kube, namespace, **good_env)
        _rolled_out(kube, namespace)
        time.sleep(SETTLE_SECONDS)
    back = max(0.0, _last_injected(bad) - changed)
    progress(f"rolling update: the last bad answer {back:.2f}s after the spec changed back")
    return back, len(good.failed())


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
