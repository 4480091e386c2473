"""Adding a service is `flotilla new`: its folder under services/ and one entry in the services map.
In a copy of this repository, a fourth service (tests/support/new_service.py) is built by the copy's own
scripts/images.sh, installed with the copy's umbrella chart, and comes up through the operator
on the real node, routed, scraped and isolated like the three others."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from kubernetes import client
from kubernetes.client import ApiClient

from scripts.services import services
from tests.support import new_service
from tests.support.cases import Case
from tests.support.kube import wait_for
from tests.support.node import REGISTRY, Platform, exec_in, installed_platform, platform_images
from tests.support.policies import check_network_policies
from tests.support.prometheus import node_prometheus_url


@pytest.fixture(scope="module")
def extended(
    kube: ApiClient, images: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    """The copy with the fourth service, its images built, its chart installed in a namespace."""
    root = new_service.copy_of_the_repository(tmp_path_factory.mktemp("repository"))
    new_service.add_the_service(root)
    entries = services(chart_values=root / "charts" / "flotilla" / "values.yaml")
    assert list(entries)[-1] == new_service.NAME  # one map entry, read by the one reader
    built = platform_images(root)
    # Beside the session's platform on the node's 2 CPUs: one replica of each service here.
    one_replica = {"serviceDefaults.replicas": "1"}
    with installed_platform(kube, built, root=root, entries=entries, extra_values=one_replica) as platform:
        yield platform


def test_a_fourth_service_is_built_deployed_and_routed_like_the_others(
    kube: ApiClient, extended: Platform, images: dict[str, str], case: Case
) -> None:
    name, namespace = new_service.NAME, extended.namespace
    # The three services' images are the same builds (same inputs): only the new one was added.
    assert {key: extended.images[key] for key in images} == images
    assert extended.images[name].startswith(f"{REGISTRY}/flotilla/{name}:")

    microservice = client.CustomObjectsApi(kube).get_namespaced_custom_object(
        "flotilla.dev", "v1alpha1", namespace, "microservices", name
    )
    deployment = client.AppsV1Api(kube).read_namespaced_deployment(name, namespace)
    assert [ref.kind for ref in deployment.metadata.owner_references] == ["Microservice"]
    assert deployment.spec.template.spec.containers[0].image == extended.images[name]

    greeted = extended.request("POST", new_service.PATH, json={"name": "ada"})
    assert greeted.status_code == 200, greeted.text
    assert greeted.json() == {"greeting": "Hello, ada!"}
    assert greeted.headers["X-Request-ID"]
    page = extended.get(f"/docs/{name}/")  # its API page, routed beside its API
    assert page.status_code == 200
    assert f'"url": "/docs/{name}/openapi.json"' in page.text

    # Scraped: a ServiceMonitor of the operator's (the real node's cluster has its CRD) selects
    # the Service, whose endpoint answers /metrics with the kit's metrics of that request.
    monitor = client.CustomObjectsApi(kube).get_namespaced_custom_object(
        "monitoring.coreos.com", "v1", namespace, "servicemonitors", name
    )
    service = client.CoreV1Api(kube).read_namespaced_service(name, namespace)
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service.metadata.labels.items()
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    metrics = exec_in(
        namespace, f"deploy/{name}", "python", "-c",
        "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8000/metrics').read().decode())",
    )  # fmt: skip
    assert metrics.returncode == 0, metrics.stderr
    served = f'http_requests_total{{method="POST",route="{new_service.PATH}",status="200"}}'
    assert served in metrics.stdout, metrics.stdout[-2000:]
    # The node's Prometheus scrapes it: the dashboards' service variable
    # (label_values(http_requests_total, job)) lists it.
    prometheus = node_prometheus_url()

    def listed() -> list[str] | None:
        answer = requests.get(
            f"{prometheus}/api/v1/label/job/values",
            params={"match[]": f'http_requests_total{{namespace="{namespace}"}}'},
            timeout=10,
        ).json()
        return answer["data"] if name in answer.get("data", []) else None

    jobs = wait_for(listed, timeout=120, interval=2, what=f"{name} among the jobs Prometheus scraped")

    # Isolated: its pods and every other one admit exactly what the resources declare.
    checked = check_network_policies(kube, extended)
    assert any(pod.startswith(f"{name}-") for pod in checked), checked
    assert microservice["status"]["url"] == f"http://{name}.{namespace}.svc.cluster.local"
    case.saw(
        f"{name}: image {extended.images[name]}, POST {new_service.PATH} -> {greeted.json()}, "
        f"ServiceMonitor {monitor['metadata']['name']}, scraped jobs {jobs}, "
        f"{len(checked)} pods' NetworkPolicies as declared"
    )
