"""k8s/examples for real on the real node, as k8s/examples/README.md tells a user: the operator
alone from its chart, then the shop applied with `kubectl apply -k` through the README's own
overlay (the images pointed at this node's, one host for every route), then a customer's flow
through the ingress."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from kubernetes import client
from kubernetes.client import ApiClient

from tests.support.cases import Case
from tests.support.kube import ROOT, temporary_namespace, tool, wait_for
from tests.support.node import (
    GROUP,
    INGRESS_NAMESPACE,
    INGRESS_URL,
    PLURAL,
    VERSION,
    helm,
    wait_until_routed,
)

EXAMPLES = ROOT / "k8s" / "examples"
OPERATOR_CHART = ROOT / "charts" / "flotilla-operator"


@pytest.fixture(scope="module")
def example_namespace(kube: ApiClient, images: dict[str, str]) -> Iterator[str]:
    """A restricted namespace served by an operator installed alone from its chart."""
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    with temporary_namespace(kube, labels, fake_nodes=False) as namespace:
        repository, tag = images["operator"].rsplit(":", 1)
        release = f"op-{namespace}"
        helm("dependency", "build", str(OPERATOR_CHART))
        helm("install", release, str(OPERATOR_CHART), "--namespace", namespace,
             "--set", f"watchNamespace={namespace}", "--set", f"ingressNamespace={INGRESS_NAMESPACE}",
             "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
             "--wait", "--timeout", "300s")  # fmt: skip
        try:
            yield namespace
        finally:
            helm("uninstall", release, "--namespace", namespace, "--wait", "--timeout", "120s")


def overlay(directory: Path, example: str, images: dict[str, str], host: str | None) -> Path:
    """The README's "your registry, a host" kustomization over an example."""
    base = yaml.safe_load((EXAMPLES / example / "kustomization.yaml").read_text())
    replaced = []
    for entry in base["images"]:
        local = images["postgresql"] if entry["name"] == "postgres" else images[entry["name"].split("/")[-1]]
        name, tag = local.rsplit(":", 1)
        replaced.append({"name": entry["name"], "newName": name, "newTag": tag})
    kustomization: dict[str, Any] = {
        "resources": [os.path.relpath(EXAMPLES / example, directory)],
        "images": replaced,
    }
    if host:
        kustomization["patches"] = [
            {
                "target": {"kind": "Microservice"},
                "patch": yaml.safe_dump([{"op": "add", "path": "/spec/ingress/host", "value": host}]),
            }
        ]
    directory.mkdir(parents=True)
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return directory


def wait_microservices_ready(kube: ApiClient, namespace: str, names: set[str], timeout: float = 600) -> None:
    def ready() -> bool:
        items = client.CustomObjectsApi(kube).list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        done = {
            ms["metadata"]["name"]
            for ms in items["items"]
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in (ms.get("status") or {}).get("conditions", [])
            )
        }
        return done >= names

    wait_for(ready, timeout=timeout, interval=2, what=f"Microservices {sorted(names)} Ready")


def test_the_shop_example_serves_a_customer_through_the_ingress(
    kube: ApiClient, example_namespace: str, images: dict[str, str], tmp_path: Path, case: Case
) -> None:
    namespace, host = example_namespace, f"{example_namespace}.shop.test"
    applied = tool("kubectl", "apply", "-k", str(overlay(tmp_path / "my-shop", "shop", images, host)),
                   "-n", namespace)  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    wait_microservices_ready(kube, namespace, {"users", "catalog", "orders"})

    session = requests.Session()
    session.headers["Host"] = host

    def call(method: str, path: str, **kwargs: Any) -> requests.Response:
        return session.request(method, f"{INGRESS_URL}{path}", timeout=30, **kwargs)

    microservices = client.CustomObjectsApi(kube).list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL
    )
    wait_until_routed(host, [ms["spec"] for ms in microservices["items"]])
    products = call("GET", "/products?limit=10").json()["items"]
    assert {p["name"] for p in products} >= {"Ceramic mug", "Hand grinder"}  # demo products, from migrate

    email, password = f"shopper-{time.time_ns()}@example.com", "correct horse battery"
    registered = call(
        "POST", "/users/register", json={"email": email, "password": password, "name": "Shopper"}
    )
    assert registered.status_code == 201, registered.text
    login = call("POST", "/auth/login", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    bearer = {"Authorization": f"Bearer {login.json()['access_token']}"}
    mug = next(p for p in products if p["name"] == "Ceramic mug")
    order = call("POST", "/orders", json={"items": [{"product_id": mug["id"], "quantity": 2}]},
                 headers={**bearer, "Idempotency-Key": f"shop-{time.time_ns()}"})  # fmt: skip
    assert order.status_code == 201, order.text
    assert order.json()["status"] == "confirmed", order.json()  # orders got its token and reserved stock
    read = call("GET", f"/orders/{order.json()['id']}", headers=bearer)
    assert read.status_code == 200 and read.json() == order.json()
    stock = call("GET", f"/products/{mug['id']}").json()["stock"]
    assert stock == mug["stock"] - 2

    secret = client.CoreV1Api(kube).read_namespaced_secret("shop-secrets", namespace)
    admin_password = base64.b64decode(secret.data["admin-password"]).decode()
    admin = call("POST", "/auth/login", json={"email": "admin@flotilla.local", "password": admin_password})
    assert admin.status_code == 200, admin.text  # the bootstrap Job's password, seeded by users' migrate
    again = tool("kubectl", "apply", "-k", str(tmp_path / "my-shop"), "-n", namespace)
    assert again.returncode == 0 and "configured" not in again.stdout, again.stdout  # idempotent
    placed = order.json()
    case.saw(
        f"order {placed['id']} {placed['status']}, total {placed['total']}; "
        f"mug stock {mug['stock']} -> {stock}; {len(products)} demo products; admin login 200; "
        "re-applied unchanged"
    )


def test_the_hello_example_is_the_smallest_useful_microservice(
    kube: ApiClient, example_namespace: str, images: dict[str, str], tmp_path: Path
) -> None:
    namespace = example_namespace
    applied = tool("kubectl", "apply", "-k", str(overlay(tmp_path / "my-hello", "hello", images, None)),
                   "-n", namespace)  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    wait_microservices_ready(kube, namespace, {"hello"}, timeout=300)
    ms = client.CustomObjectsApi(kube).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "hello"
    )
    conditions = {c["type"]: c["status"] for c in ms["status"]["conditions"]}
    assert conditions["Migrated"] == "True"
    # In the pod itself, as the README's port-forward reaches it: its NetworkPolicy admits only
    # declared callers through the Service (hello has none), and egress only to what it declares.
    answered = tool(
        "kubectl", "exec", "-n", namespace, "deploy/hello", "--", "python", "-c",
        "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8000/products?limit=1').status)",
    )  # fmt: skip
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout.strip() == "200"
