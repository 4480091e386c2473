"""The platform on the real node: its images (in the node's registry), the umbrella chart
installed with them, and the ingress in front of it (scripts/cluster/node-up.sh, scripts/images.sh)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import requests
from kubernetes import client
from kubernetes.client import ApiClient

from scripts.services import services
from tests.support.kube import ROOT, temporary_namespace, tool, wait_for

NODE_NAME = os.environ.get("FLOTILLA_NODE_NAME", "flotilla-node")
INGRESS_URL = f"http://127.0.0.1:{os.environ.get('FLOTILLA_INGRESS_PORT', '8080')}"
# The node's registry (scripts/cluster/registry.sh): every image the node runs comes from it.
REGISTRY = f"localhost:{os.environ.get('FLOTILLA_REGISTRY_PORT', '5000')}"
RELEASE = "flotilla"
# The services, from the umbrella chart's services: map (scripts/services.py reads it).
SERVICE_ENTRIES = services()
SERVICES = tuple(SERVICE_ENTRIES)
DATABASES = tuple(name for name, entry in SERVICE_ENTRIES.items() if entry.get("database"))
INGRESS_NAMESPACE = "traefik"
PROMETHEUS_NAMESPACE = "monitoring"
GROUP, VERSION, PLURAL = "flotilla.dev", "v1alpha1", "microservices"


def helm(*args: str, timeout: float = 600) -> str:
    """helm, failing the test with its own message."""
    result = tool("helm", *args, timeout=timeout)
    assert result.returncode == 0, f"helm {' '.join(args[:2])}: {result.stderr}"
    return result.stdout


def platform_images(root: Path = ROOT) -> dict[str, str]:
    """Build (when their inputs changed) and push to the node's registry the platform's images:
    name -> reference.

    ``root`` is a checkout of the project: this one, or a copy with a service added (its images
    go into this checkout's node).
    """
    result = subprocess.run(
        [str(root / "scripts" / "images.sh"), "platform"],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
        env={
            **os.environ,
            "FLOTILLA_CLUSTER_DIR": str(ROOT / ".cluster"),
            "FLOTILLA_VENV": str(ROOT / ".venv"),
        },
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(line.split("=", 1) for line in result.stdout.split())


def wait_until_routed(host: str, specs: list[dict[str, Any]], timeout: float = 120) -> None:
    """Until the ingress hands each routed service's first path to the service under ``host``.

    The services answer every error as a problem document; the ingress's own 404 is plain text,
    and Traefik adds a path only once its Service has ready endpoints.
    """

    def answered_by_service(path: str) -> bool:
        try:
            response = requests.get(f"{INGRESS_URL}{path}", headers={"Host": host}, timeout=10)
        except requests.ConnectionError:
            return False
        return response.headers.get("Content-Type", "").startswith(
            ("application/json", "application/problem+json")
        )

    for spec in specs:
        ingress = spec.get("ingress") or {}
        for path in (ingress.get("paths") or [ingress.get("path")])[:1] if ingress else []:
            wait_for(partial(answered_by_service, path), timeout=timeout, interval=1,
                     what=f"the ingress route of {path}")  # fmt: skip


@contextmanager
def installed_platform(kube: ApiClient, images: dict[str, str], **options: Any) -> Iterator[Platform]:
    """The umbrella chart in a restricted namespace of its own, uninstalled afterwards.

    ``options`` go to ``Platform`` (``root`` and ``entries``: a chart of another checkout).
    """
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    with temporary_namespace(kube, labels, fake_nodes=False) as namespace:
        platform = Platform(kube, namespace, host=f"{namespace}.flotilla.test", images=images, **options)
        try:
            platform.install()
            yield platform
        finally:
            if platform.installed:
                helm("uninstall", RELEASE, "--namespace", namespace, "--wait", "--timeout", "120s")


def exec_in(namespace: str, target: str, *command: str) -> subprocess.CompletedProcess[str]:
    """``kubectl exec`` in a pod of ``target`` (deploy/NAME, pod/NAME), through the kubelet."""
    return tool("kubectl", "exec", "-n", namespace, target, "--", *command)


@dataclass
class Platform:
    """The umbrella chart in one namespace, reached through the ingress under its own host."""

    kube: ApiClient
    namespace: str
    host: str
    images: dict[str, str]
    installed: bool = False
    session: requests.Session = field(default_factory=requests.Session)
    # The checkout whose umbrella chart is installed, and its services map.
    root: Path = ROOT
    entries: dict[str, dict[str, Any]] = field(default_factory=lambda: SERVICE_ENTRIES)
    # More helm --set values, such as serviceDefaults.replicas for a second platform on the node.
    extra_values: dict[str, str] = field(default_factory=dict)

    def values(self) -> list[str]:
        """helm --set arguments: the images of this checkout (in the node's registry), this
        host, the operator watching this namespace only."""
        repository, tag = self.images["operator"].rsplit(":", 1)
        sets = {
            "postgresql.image": self.images["postgresql"],
            "ingress.host": self.host,
            "operator.ingressNamespace": INGRESS_NAMESPACE,
            "operator.prometheusNamespace": PROMETHEUS_NAMESPACE,
            "operator.watchNamespace": self.namespace,
            "operator.image.repository": repository,
            "operator.image.tag": tag,
            # The rollouts these tests make (new keys, certificates) are not what they try, and
            # no traffic judges them: plain rolling updates. tests/node/test_canary.py tries the
            # canary, the default, on the operator's own chart.
            "serviceDefaults.rollout.strategy": "RollingUpdate",
        }
        sets |= {f"services.{service}.image": self.images[service] for service in self.entries}
        sets |= self.extra_values
        return [argument for key, value in sets.items() for argument in ("--set", f"{key}={value}")]

    def microservices(self) -> list[dict[str, Any]]:
        listed = client.CustomObjectsApi(self.kube).list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL
        )
        return list(listed["items"])

    def install(self) -> None:
        """helm install, then wait until the operator has made every Microservice Ready and its
        Deployment is fully available, and the ingress routes this host here."""
        chart = str(self.root / "charts" / "flotilla")
        helm("dependency", "build", chart)
        helm("install", RELEASE, chart, "--namespace", self.namespace,
             *self.values(), "--wait", "--timeout", "600s")  # fmt: skip
        self.installed = True

        def all_ready() -> bool:
            ready = {
                ms["metadata"]["name"]
                for ms in self.microservices()
                if (ms.get("status") or {}).get("observedGeneration") == ms["metadata"]["generation"]
                and any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in (ms.get("status") or {}).get("conditions", [])
                )
            }
            return ready == set(self.entries)

        wait_for(all_ready, timeout=600, interval=2, what="every Microservice Ready through the operator")
        for name in self.entries:
            self.wait_available(name)
        self.wait_routed()

    def wait_available(self, deployment: str, timeout: float = 600) -> None:
        apps = client.AppsV1Api(self.kube)

        def available() -> bool:
            d = apps.read_namespaced_deployment(deployment, self.namespace)
            want = d.spec.replicas or 0
            status = d.status
            return bool(
                status.observed_generation == d.metadata.generation
                and (status.updated_replicas or 0) == want
                and (status.available_replicas or 0) == want
                and (status.replicas or 0) == want
            )

        wait_for(available, timeout=timeout, interval=1, what=f"deployment {deployment} available")

    def wait_routed(self) -> None:
        """Until the ingress routes this host to this release: the signing keys it serves are the
        ones this namespace's users service holds (a catch-all route of another release, such as
        `make up`'s, would answer too, with its own keys)."""
        own = exec_in(
            self.namespace, "deploy/users", "python", "-c",
            "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8000/.well-known/jwks.json').read().decode())",
        )  # fmt: skip
        assert own.returncode == 0, own.stderr
        keys = json.loads(own.stdout)

        def routed_here() -> bool:
            response = self.get("/.well-known/jwks.json")
            return response.status_code == 200 and response.json() == keys

        wait_for(routed_here, timeout=120, interval=1, what=f"the ingress route of {self.host}")
        wait_until_routed(self.host, [ms["spec"] for ms in self.microservices()])

    def url(self, path: str) -> str:
        return f"{INGRESS_URL}{path}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Host": self.host, **kwargs.pop("headers", {})}
        return self.session.request(method, self.url(path), headers=headers, timeout=30, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        try:
            return self.request("GET", path, **kwargs)
        except requests.ConnectionError:
            response = requests.Response()
            response.status_code = 599
            return response

    def admin_password(self) -> str:
        secret = client.CoreV1Api(self.kube).read_namespaced_secret(f"{RELEASE}-flotilla", self.namespace)
        return base64.b64decode(secret.data["admin-password"]).decode()

    def token(self, email: str, password: str) -> str:
        response = self.request("POST", "/auth/login", json={"email": email, "password": password})
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def customer_token(self) -> str:
        """A token of a newly registered customer, through the ingress."""
        email = f"e2e-{time.time_ns()}@example.com"
        registered = self.request(
            "POST",
            "/users/register",
            json={"email": email, "password": "correct horse battery", "name": "E2E"},
        )
        assert registered.status_code == 201, registered.text
        return self.token(email, "correct horse battery")

    def create_product(self, stock: int) -> int:
        """A new product, created by the chart's bootstrapped admin; returns its id."""
        admin = self.token("admin@flotilla.local", self.admin_password())
        product = self.request(
            "POST",
            "/products",
            json={
                "name": f"Lamp {time.time_ns()}",
                "description": "e2e",
                "price_cents": 1250,
                "currency": "EUR",
                "stock": stock,
            },
            headers={"Authorization": f"Bearer {admin}"},
        )
        assert product.status_code == 201, product.text
        return int(product.json()["id"])

    def customer_flow(self) -> dict[str, Any]:
        """Register, log in, have the admin add a product, order it, read the order back."""
        customer = self.customer_token()
        product_id = self.create_product(stock=5)
        order = self.request(
            "POST",
            "/orders",
            json={"items": [{"product_id": product_id, "quantity": 2}]},
            headers={"Authorization": f"Bearer {customer}", "Idempotency-Key": f"e2e-{time.time_ns()}"},
        )
        assert order.status_code == 201, order.text
        assert order.json()["status"] == "confirmed", order.json()
        read = self.request(
            "GET", f"/orders/{order.json()['id']}", headers={"Authorization": f"Bearer {customer}"}
        )
        assert read.status_code == 200, read.text
        stock = self.request("GET", f"/products/{product_id}").json()["stock"]
        return {"order": read.json(), "stock": stock, "total": order.json()["total"]}
