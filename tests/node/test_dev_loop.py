"""`make dev` on the real node: scripts/dev/dev.sh runs skaffold dev (skaffold.yaml, profile node) in
a copy of this repository, in a namespace and under an ingress host of its own. A change to a
catalog module is synced into the running pod; a change skaffold cannot sync is rebuilt and rolled
out; each is seen served through the ingress. Ctrl-C then removes the release and what the
operator made of it. The timeline is printed and written to .run/dev-loop-timeline.json.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

from kubernetes import client
from kubernetes.client import ApiClient

from tests.support import new_service
from tests.support.cases import Case
from tests.support.dev_loop import DevLoop, mark_catalog, touch_catalog_project
from tests.support.kube import ROOT, temporary_namespace, tool, wait_for
from tests.support.node import SERVICES

TIMELINE = ROOT / ".run" / "dev-loop-timeline.json"


def catalog_pods(kube: ApiClient, namespace: str) -> dict[str, str]:
    """The catalog's running pods: name -> image."""
    pods = client.CoreV1Api(kube).list_namespaced_pod(
        namespace, label_selector="app.kubernetes.io/name=catalog,app.kubernetes.io/instance=catalog"
    )
    return {
        str(pod.metadata.name): str(pod.spec.containers[0].image)
        for pod in pods.items
        if pod.status.phase == "Running" and not pod.metadata.deletion_timestamp
    }


def test_make_dev_serves_a_synced_and_a_rebuilt_change_through_the_ingress_then_cleans_up(
    kube: ApiClient,
    real_node: str,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
    case: Case,
) -> None:
    root = new_service.copy_of_the_repository(tmp_path / "repository")
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    with temporary_namespace(kube, labels, fake_nodes=False) as namespace:
        loop = DevLoop(kube, root, namespace, f"{namespace}.dev.test", tmp_path / "skaffold.log")
        marks: dict[str, float] = {}
        started = time.monotonic()
        loop.start()
        try:
            marks["ready"] = loop.wait(
                partial(loop.routed, set(SERVICES)),
                timeout=2400,
                interval=2,
                what="every service routed through the ingress",
            )
            loop.wait(
                lambda: "answers through the ingress" in loop.log_path.read_text(errors="replace"),
                timeout=60,
                what="make dev's note of where the platform answers",
            )
            before_sync = catalog_pods(kube, namespace)

            synced = f"sync-{uuid.uuid4().hex[:8]}"
            mark_catalog(root, synced)
            marks["edit_sync"] = time.monotonic()
            marks["served_sync"] = loop.wait(
                partial(loop.serves_mark, synced), timeout=600, what="the synced edit served"
            )
            # Synced into the running pod: the same pod, the same image.
            assert catalog_pods(kube, namespace) == before_sync, loop.tail()

            rebuilt = f"rebuild-{uuid.uuid4().hex[:8]}"
            touch_catalog_project(root, rebuilt)
            mark_catalog(root, rebuilt)
            marks["edit_rebuild"] = time.monotonic()
            marks["served_rebuild"] = loop.wait(
                partial(loop.serves_mark, rebuilt), timeout=1200, what="the rebuilt edit served"
            )
            after_rebuild = catalog_pods(kube, namespace)
            # Rebuilt and rolled out: a new image, in new pods.
            assert set(after_rebuild.values()).isdisjoint(before_sync.values()), (before_sync, after_rebuild)
        finally:
            marks["stop"] = time.monotonic()
            loop.stop()

        helm_releases = tool("helm", "list", "--namespace", namespace, "--short")
        assert helm_releases.returncode == 0 and helm_releases.stdout.strip() == "", helm_releases
        wait_for(lambda: not loop.microservices(), timeout=120, interval=1, what="the Microservices removed")
        apps = client.AppsV1Api(kube)
        wait_for(
            lambda: (
                not apps.list_namespaced_deployment(namespace).items
                and not apps.list_namespaced_stateful_set(namespace).items
            ),
            timeout=300,
            interval=1,
            what="the Deployments and StatefulSets removed",
        )
        marks["cleaned"] = time.monotonic()

    timeline = {event: round(at - started, 1) for event, at in marks.items()}
    durations = {
        "start_to_ready": timeline["ready"],
        "sync_edit_to_served": round(marks["served_sync"] - marks["edit_sync"], 1),
        "rebuild_edit_to_served": round(marks["served_rebuild"] - marks["edit_rebuild"], 1),
        "stop_to_cleaned": round(marks["cleaned"] - marks["stop"], 1),
    }
    TIMELINE.parent.mkdir(exist_ok=True)
    TIMELINE.write_text(
        json.dumps({"seconds_since_start": timeline, "durations": durations}, indent=2) + "\n"
    )
    print(f"\ndev loop timeline (s since start): {timeline}\ndev loop durations (s): {durations}")
    record_property("dev_loop_timeline", timeline)
    record_property("dev_loop_durations", durations)
    case.saw(
        f"ready {durations['start_to_ready']}s; synced edit served in "
        f"{durations['sync_edit_to_served']}s; rebuilt edit served in "
        f"{durations['rebuild_edit_to_served']}s; cleaned {durations['stop_to_cleaned']}s after Ctrl-C"
    )
