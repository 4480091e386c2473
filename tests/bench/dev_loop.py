"""The dev loop on the real node: from saving a change to a catalog module to that change served
through the ingress.

Flotilla: `make dev` (scripts/dev/dev.sh: skaffold dev, profile node) running in a copy of the
repository; the module is synced into the running pod and gunicorn reloads. Baseline: the same
edit delivered the way there is without it, in another copy: `make images` (scripts/images.sh
platform: every image, rebuilt when its inputs changed, pushed to the node's registry) and `helm
upgrade` of the umbrella chart with those images, timed until the ingress serves the change. Both
platforms run side by side on the node, each in a namespace and under a host of its own; the two
sides take turns, and the median round of each counts.
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from functools import partial
from pathlib import Path

from kubernetes import client

from tests.bench.report import Result, Target
from tests.support import new_service
from tests.support.dev_loop import DevLoop, mark_catalog, serves_mark
from tests.support.kube import connect, temporary_namespace, wait_for
from tests.support.node import NODE_NAME, RELEASE, SERVICES, helm, installed_platform, platform_images

RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}


def progress(message: str) -> None:
    """What the benchmark is doing now, on stderr."""
    print(f"    {message}", file=sys.stderr, flush=True)


def node_is_up() -> bool:
    """The real node (`make node-up`) is Ready: the benchmark runs without being asked."""
    try:
        node = client.CoreV1Api(connect()).read_node(NODE_NAME)
    except Exception:  # noqa: BLE001 - no cluster, no node: not up
        return False
    conditions = node.status.conditions if node.status else None
    return any(c.type == "Ready" and c.status == "True" for c in conditions or [])


def _timed(edit: Callable[[], None], deliver: Callable[[], None], served: Callable[[], bool]) -> float:
    """Seconds from ``edit`` until ``served`` holds, ``deliver`` run in between."""
    started = time.monotonic()
    edit()
    deliver()
    wait_for(served, timeout=1200, interval=0.2, what="the edit served through the ingress")
    return time.monotonic() - started


def run(work: Path, rounds: int) -> list[Result]:
    """Both sides, ``rounds`` turns each; the namespaces are removed afterwards."""
    api = connect()
    with ExitStack() as stack:
        dev_root = new_service.copy_of_the_repository(work / "dev")
        namespace = stack.enter_context(temporary_namespace(api, RESTRICTED, fake_nodes=False))
        loop = DevLoop(api, dev_root, namespace, f"{namespace}.dev.bench", work / "skaffold.log")
        progress(f"make dev in {namespace}: building what the cache lacks and deploying")
        loop.start()
        stack.callback(loop.stop)
        loop.wait(partial(loop.routed, set(SERVICES)), timeout=2400, interval=2, what="make dev's platform")

        base_root = new_service.copy_of_the_repository(work / "baseline")
        progress("baseline: make images and helm install in a namespace of its own")
        images = platform_images(base_root)
        platform = stack.enter_context(installed_platform(api, images, root=base_root))
        chart = str(base_root / "charts" / "flotilla")

        def deliver_by_hand() -> None:
            platform.images = platform_images(base_root)
            helm("upgrade", RELEASE, chart, "--namespace", platform.namespace, *platform.values(),
                 "--timeout", "600s")  # fmt: skip

        flotilla: list[float] = []
        baseline: list[float] = []
        for turn in range(1, rounds + 1):
            token = f"bench-{uuid.uuid4().hex[:8]}"
            flotilla.append(
                _timed(partial(mark_catalog, dev_root, token), lambda: None, partial(loop.serves_mark, token))
            )
            token = f"bench-{uuid.uuid4().hex[:8]}"
            baseline.append(
                _timed(
                    partial(mark_catalog, base_root, token),
                    deliver_by_hand,
                    partial(serves_mark, platform.get, token),
                )
            )
            progress(
                f"round {turn}: make dev {flotilla[-1]:.1f}s, make images + helm upgrade {baseline[-1]:.1f}s"
            )
    return [
        Result(
            "dev_loop_edit_to_served",
            statistics.median(flotilla),
            statistics.median(baseline),
            " s",
            Target("<=", 0.5),
        )
    ]
