"""Watch streams that go silent while the API server changes: the operator notices, restarts its
watches and counts it; when restarts cannot help, its liveness fails."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from tests.support.cases import Case
from tests.support.convergence import StartOperator, deployment_image, microservices, ready
from tests.support.kube import wait_for
from tests.support.operator import GROUP, PLURAL, VERSION, create, microservice
from tests.support.stall_proxy import StallProxy

GRACE = 3  # FLOTILLA_OPERATOR_WATCH_GRACE_SECONDS
RESYNC = 10  # the listing that shows what the silent stream should have delivered
RESTARTS_BEFORE_FAILING = 3


@pytest.fixture
def proxy(operator_kubeconfig: Path) -> Iterator[StallProxy]:
    stall = StallProxy(operator_kubeconfig)
    yield stall
    stall.close()


def watch_settings(resync: int) -> dict[str, str]:
    """The operator's settings: a resync every ``resync`` s, and the test's watch grace."""
    return {
        "FLOTILLA_OPERATOR_RESYNC_SECONDS": str(resync),
        "FLOTILLA_OPERATOR_WATCH_GRACE_SECONDS": str(GRACE),
    }


def patch(kube: ApiClient, namespace: str, name: str, body: dict[str, object]) -> None:
    client.CustomObjectsApi(kube).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, body
    )


def test_a_silent_watch_is_restarted_and_counted(
    kube: ApiClient,
    namespace: str,
    start_operator: StartOperator,
    proxy: StallProxy,
    tmp_path: Path,
    case: Case,
) -> None:
    operator = start_operator(watch_settings(RESYNC), kubeconfig=proxy.kubeconfig(tmp_path / "through-proxy"))
    create(kube, namespace, microservice("watched"))
    wait_for(lambda: all(ready(ms) for ms in microservices(kube, namespace)), timeout=60, what="Ready")
    silenced = proxy.silence()
    silenced_at = time.monotonic()
    case.tried()
    patch(kube, namespace, "watched", {"spec": {"image": "registry.example/flotilla/service:2.0"}})
    wait_for(
        lambda: operator.metric("flotilla_operator_watch_restarts_total") >= 1,
        timeout=RESYNC + GRACE + 20,
        interval=0.2,
        what="the watches to restart",
    )
    restarted = time.monotonic() - silenced_at
    stalls = {
        kind: operator.metric("flotilla_operator_watch_stalls_total", kind=kind)
        for kind in ("Microservice", "Deployment")
    }
    wait_for(
        lambda: deployment_image(kube, namespace, "watched").endswith(":2.0"),
        timeout=30,
        what="the change applied",
    )
    # The new streams deliver: the next change comes through its event, well before a resync.
    changed_at = time.monotonic()
    patch(kube, namespace, "watched", {"spec": {"image": "registry.example/flotilla/service:3.0"}})
    wait_for(
        lambda: deployment_image(kube, namespace, "watched").endswith(":3.0"),
        timeout=RESYNC - 2,
        interval=0.1,
        what="3.0",
    )
    through_event = time.monotonic() - changed_at
    status, body = operator.health()
    case.saw(
        f"{silenced} watch streams silenced (held open, bytes swallowed); the operator restarted its "
        f"watches {restarted:.1f} s later (resync {RESYNC} s + grace {GRACE} s), stalls {stalls}; the "
        f"next change reconciled by its event in {through_event:.1f} s; /healthz {status}"
    )
    assert silenced >= 2, "the operator's watch streams did not go through the proxy"
    assert sum(stalls.values()) >= 1
    assert operator.metric("flotilla_operator_watch_restarts_total") == 1
    assert status == 200 and body["checks"]["watches"] == "ok"
    assert operator.process is not None and operator.process.poll() is None, "the restart is in place"


def test_liveness_fails_when_the_watches_cannot_be_recovered(
    kube: ApiClient,
    namespace: str,
    start_operator: StartOperator,
    proxy: StallProxy,
    tmp_path: Path,
    case: Case,
) -> None:
    resync = 4
    operator = start_operator(watch_settings(resync), kubeconfig=proxy.kubeconfig(tmp_path / "through-proxy"))
    create(kube, namespace, microservice("watched"))
    wait_for(lambda: all(ready(ms) for ms in microservices(kube, namespace)), timeout=60, what="Ready")
    proxy.silence(new_streams=True)
    silenced_at = time.monotonic()
    case.tried()
    # The API server keeps changing: each new stream owes what the resync then lists.
    stop = threading.Event()

    def keep_changing() -> None:
        count = 0
        while not stop.wait(1):
            count += 1
            patch(kube, namespace, "watched", {"metadata": {"labels": {"change": str(count)}}})

    changer = threading.Thread(target=keep_changing, daemon=True)
    changer.start()
    try:
        wait_for(lambda: operator.health()[0] == 503, timeout=120, interval=0.5, what="/healthz to fail")
    finally:
        stop.set()
        changer.join(5)
    failed = time.monotonic() - silenced_at
    _, body = operator.health()
    restarts = operator.metric("flotilla_operator_watch_restarts_total")
    case.saw(
        f"every watch stream silenced for good: /healthz 503 {failed:.1f} s later, after {restarts:.0f} "
        f"restarts: {body['checks']['watches']}"
    )
    assert restarts == RESTARTS_BEFORE_FAILING
    assert body["checks"]["watches"].startswith(f"watch streams still silent after {RESTARTS_BEFORE_FAILING}")
