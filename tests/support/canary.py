"""A canary on the real node for the tests and the benchmark: one Microservice (the catalog image
alone on SQLite, as k8s/examples/hello) in a restricted namespace, served by an operator installed
alone from its chart and reading the node's Prometheus; steady traffic through the ingress; the
phases and weights a release goes through.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import urlsplit

import requests
from kubernetes import client
from kubernetes.client import ApiClient

from tests.support.kube import ROOT, temporary_namespace, wait_for
from tests.support.node import GROUP, INGRESS_NAMESPACE, INGRESS_URL, PLURAL, VERSION, helm, wait_until_routed
from tests.support.prometheus import node_prometheus_url

OPERATOR_CHART = ROOT / "charts" / "flotilla-operator"
NAME = "canary"
FAULT_TYPE = "fault-injected"
STEPS = [10, 25, 50]
POLICY: dict[str, Any] = {
    "steps": STEPS,
    "stepSeconds": 15,
    "progressDeadlineSeconds": 150,
    "analysis": {"minRequests": 10},
}
BASE_ENV = {"DATABASE_URL": "sqlite:////data/catalog.db", "SEED_DEMO_PRODUCTS": "true"}


@dataclass
class Traffic:
    """Steady GETs through the ingress from a thread; every answer's time (the wall clock, as the
    operator's status) and outcome kept."""

    host: str
    rate: float = 25.0
    answers: list[tuple[float, int, bool]] = field(default_factory=list)  # (time, status, injected)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        session = requests.Session()
        session.headers["Host"] = self.host
        while not self._stop.is_set():
            began = time.time()
            try:
                response = session.get(f"{INGRESS_URL}/products?limit=1", timeout=10)
                injected = FAULT_TYPE in response.text if response.status_code >= 500 else False
                self.answers.append((time.time(), response.status_code, injected))
            except requests.RequestException:
                self.answers.append((time.time(), 0, False))
            time.sleep(max(0.0, 1 / self.rate - (time.time() - began)))

    def failed(self, since: float = 0.0) -> list[tuple[float, int, bool]]:
        return [answer for answer in self.answers if answer[0] >= since and answer[1] != 200]

    def __enter__(self) -> Traffic:
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


def ended_at(state: dict[str, Any]) -> float:
    """When the operator says the release ended (``status.rollout.endedAt``), on the wall clock."""
    return datetime.fromisoformat(str(state["endedAt"]).removesuffix("Z")).replace(tzinfo=UTC).timestamp()


def read(kube: ApiClient, namespace: str) -> dict[str, Any]:
    """The Microservice."""
    found = client.CustomObjectsApi(kube).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, NAME
    )
    return cast(dict[str, Any], found)


def rollout(kube: ApiClient, namespace: str) -> dict[str, Any]:
    return (read(kube, namespace).get("status") or {}).get("rollout") or {}


def patch(kube: ApiClient, namespace: str, body: dict[str, Any]) -> None:
    client.CustomObjectsApi(kube).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, NAME, body, _content_type="application/merge-patch+json"
    )


def release_env(kube: ApiClient, namespace: str, **env: str) -> None:
    """Set the pods' env (a new revision): the base entries plus ``env``."""
    entries = [{"name": key, "value": value} for key, value in {**BASE_ENV, **env}.items()]
    patch(kube, namespace, {"spec": {"env": entries}})


@dataclass
class Timeline:
    """The phases and weights seen while a release ran, each with its time."""

    entries: list[tuple[float, str, int, str]] = field(default_factory=list)

    def watch(self, kube: ApiClient, namespace: str, until: set[str], timeout: float) -> dict[str, Any]:
        began = time.time()

        def done() -> dict[str, Any] | None:
            ms = read(kube, namespace)
            status = ms.get("status") or {}
            state = status.get("rollout") or {}
            # The operator has seen the spec the test just changed: the state is about it.
            current = status.get("observedGeneration") == ms["metadata"]["generation"]
            entry = (
                time.time(),
                state.get("phase", ""),
                int(state.get("weight", 0)),
                state.get("reason", ""),
            )
            if not self.entries or self.entries[-1][1:] != entry[1:]:
                self.entries.append(entry)
                print(f"  +{entry[0] - began:6.1f}s {entry[1]:<12} weight {entry[2]:>3}% {entry[3]}")
            settled = current and state.get("phase") in until and not state.get("draining")
            return state if settled else None

        state: dict[str, Any] = wait_for(
            done, timeout=timeout, interval=0.2, what=f"the release to end in {sorted(until)}"
        )
        return state

    def first(self, phase: str) -> float:
        return next(at for at, seen, *_ in self.entries if seen == phase)

    def weights(self) -> set[int]:
        return {weight for _, _, weight, _ in self.entries}


@contextmanager
def canary_namespace(kube: ApiClient, images: dict[str, str], rollout_spec: dict[str, Any]) -> Iterator[str]:
    """A restricted namespace: an operator alone from its chart (reading the node's Prometheus)
    and the Microservice, released once and routed."""
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    with temporary_namespace(kube, labels, fake_nodes=False) as namespace:
        repository, tag = images["operator"].rsplit(":", 1)
        release = f"op-{namespace}"
        helm("install", release, str(OPERATOR_CHART), "--namespace", namespace,
             "--set", f"watchNamespace={namespace}", "--set", f"ingressNamespace={INGRESS_NAMESPACE}",
             "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
             *prometheus_values(), "--wait", "--timeout", "300s")  # fmt: skip
        try:
            create_service(kube, namespace, images["catalog"], rollout_spec)
            yield namespace
        finally:
            helm("uninstall", release, "--namespace", namespace, "--wait", "--timeout", "120s")


def prometheus_values() -> list[str]:
    """The operator chart's values that point canary analysis at the node's Prometheus and let
    the operator connect there (its NetworkPolicy), as `make up` sets them."""
    url = node_prometheus_url()
    host = urlsplit(url).hostname
    return ["--set", f"prometheus.url={url}", "--set", f"networkPolicy.prometheus.cidr={host}/32"]


def create_service(kube: ApiClient, namespace: str, image: str, rollout_spec: dict[str, Any]) -> None:
    """The Microservice and its volume; back once its first release serves through the ingress."""
    claim = client.V1PersistentVolumeClaim(
        metadata=client.V1ObjectMeta(name="canary-data"),
        spec=client.V1PersistentVolumeClaimSpec(
            access_modes=["ReadWriteOnce"],
            resources=client.V1VolumeResourceRequirements(requests={"storage": "64Mi"}),
        ),
    )
    client.CoreV1Api(kube).create_namespaced_persistent_volume_claim(namespace, claim)
    spec: dict[str, Any] = {
        "image": image,
        "replicas": 2,
        "migrate": True,
        "env": [{"name": key, "value": value} for key, value in BASE_ENV.items()],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "canary-data"}}],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        "ingress": {"host": f"{namespace}.canary.test", "paths": ["/products"]},
        "metrics": {"interval": "5s"},
        "rollout": rollout_spec,
    }
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Microservice",
        "metadata": {"name": NAME},
        "spec": spec,
    }
    client.CustomObjectsApi(kube).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)

    def first_release() -> bool:
        state = rollout(kube, namespace)
        return state.get("phase") == "Stable" and bool(state.get("stableRevision"))

    wait_for(first_release, timeout=300, interval=2, what="the first release")
    wait_until_routed(f"{namespace}.canary.test", [spec])


def events(kube: ApiClient, namespace: str) -> list[client.CoreV1Event]:
    listed = client.CoreV1Api(kube).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={NAME}"
    )
    return sorted(listed.items, key=lambda e: str(e.metadata.creation_timestamp))
