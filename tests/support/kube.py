"""A live Kubernetes API for tests: the local control plane, or whatever KUBECONFIG names."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

ROOT = Path(__file__).resolve().parents[2]
LOCAL_KUBECONFIG = ROOT / ".cluster" / "kubeconfig"
# The pinned tools, where scripts/cluster/lib.sh builds them (FLOTILLA_CACHE, XDG_CACHE_HOME).
_CACHE = Path(
    os.environ.get("FLOTILLA_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "flotilla"
)
BIN = Path(os.environ.get("FLOTILLA_CLUSTER_BIN") or _CACHE / "cluster" / "bin")


def kubeconfig_path() -> Path:
    """``KUBECONFIG`` when set (a kind cluster, say), else the one ``make cluster-up`` writes."""
    return Path(os.environ.get("KUBECONFIG") or LOCAL_KUBECONFIG)


def tool(
    name: str, *args: str, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the pinned helm or kubectl (of the cluster's build) against the test cluster."""
    return subprocess.run(
        [str(BIN / name), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "KUBECONFIG": str(kubeconfig_path())},
    )


def connect() -> client.ApiClient:
    """An API client for the live cluster; a clear error when there is none."""
    path = kubeconfig_path()
    if not path.is_file():
        raise RuntimeError(
            f"no kubeconfig at {path}: run 'make cluster-up' (make test does) or set KUBECONFIG"
        )
    api = config.new_client_from_config(config_file=str(path))
    try:
        client.VersionApi(api).get_code(_request_timeout=5)
    except Exception as exc:
        raise RuntimeError(f"the cluster of {path} does not answer: {exc}") from exc
    return api


def wait_for(
    condition: Callable[[], Any], *, timeout: float = 60, interval: float = 0.25, what: str = "condition"
) -> Any:
    """Poll until ``condition()`` returns something truthy; return it."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


# kwok's fake nodes are tainted (scripts/cluster/up.sh): a namespace carrying these annotations
# has its pods placed there (PodNodeSelector) and tolerating the taint (PodTolerationRestriction).
FAKE_NODE_ANNOTATIONS = {
    "scheduler.alpha.kubernetes.io/node-selector": "type=kwok",
    "scheduler.alpha.kubernetes.io/defaultTolerations": (
        '[{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}]'
    ),
}


@contextmanager
def temporary_namespace(
    api: client.ApiClient, labels: dict[str, str] | None = None, *, fake_nodes: bool = True
) -> Iterator[str]:
    """A namespace of its own for one test, deleted afterwards.

    Its pods go to kwok's fake nodes unless ``fake_nodes`` is false (the real node's tests).
    """
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(api)
    metadata = client.V1ObjectMeta(
        name=name, labels=labels or {}, annotations=FAKE_NODE_ANNOTATIONS if fake_nodes else {}
    )
    core.create_namespace(client.V1Namespace(metadata=metadata))
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name, propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise
