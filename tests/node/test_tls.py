"""HTTPS inside the cluster on the real node: the chart's ``tls.enabled`` with its generated CA.

Every service then answers HTTPS only, on its Service's port 443; each one calls its dependencies
over HTTPS, verifying them with the release's CA; the probes, the ServiceMonitors and the ingress
routes (Traefik to HTTPS backends, through the operator's ServersTransports) follow. The
customer flow passes through it all, then the release goes back to plain HTTP for the tests after.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from tests.support.cases import Case
from tests.support.kube import wait_for
from tests.support.node import RELEASE, Platform, exec_in, helm

CA_FILE = "/etc/flotilla/tls/ca.crt"  # where the operator mounts a service's TLS Secret

# Run in a service's container: one GET, printed as a line of JSON (status, or the error's type).
PROBE = """
import json, ssl, sys, urllib.request
url, cafile = sys.argv[1], sys.argv[2] or None
context = ssl.create_default_context(cafile=cafile) if url.startswith("https") else None
try:
    with urllib.request.urlopen(url, timeout=10, context=context) as response:
        print(json.dumps({"status": response.status}))
except Exception as error:
    reason = getattr(error, "reason", error)
    print(json.dumps({"error": type(reason).__name__, "detail": str(reason)[:200]}))
"""


def upgrade(platform: Platform, *, tls: bool) -> None:
    """``helm upgrade --reuse-values`` with tls.enabled set; wait until every service rolled."""
    chart = str(platform.root / "charts" / "flotilla")
    helm("upgrade", RELEASE, chart, "--namespace", platform.namespace, "--reuse-values",
         "--set", f"tls.enabled={str(tls).lower()}", "--wait", "--timeout", "600s")  # fmt: skip
    apps = client.AppsV1Api(platform.kube)
    wanted = "HTTPS" if tls else "HTTP"

    def rolled(name: str) -> Callable[[], bool]:
        def check() -> bool:
            deployment = apps.read_namespaced_deployment(name, platform.namespace)
            probe = deployment.spec.template.spec.containers[0].readiness_probe
            return str(probe.http_get.scheme or "HTTP") == wanted

        return check

    for name in platform.entries:
        wait_for(rolled(name), timeout=180, interval=1, what=f"{name}'s probes on {wanted}")
        platform.wait_available(name)


def fetch(platform: Platform, service: str, url: str, cafile: str = "") -> dict[str, str | int]:
    """GET ``url`` from a pod of ``service`` (so through its NetworkPolicy), trusting ``cafile``."""
    done = exec_in(platform.namespace, f"deploy/{service}", "python", "-c", PROBE, url, cafile)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


@pytest.fixture
def tls_platform(platform: Platform) -> Iterator[Platform]:
    upgrade(platform, tls=True)
    try:
        yield platform
    finally:
        upgrade(platform, tls=False)
        platform.wait_routed()


@pytest.mark.reliability
def test_with_tls_every_hop_is_https_and_the_customer_flow_passes(
    kube: ApiClient, tls_platform: Platform, case: Case
) -> None:
    platform = tls_platform
    namespace = platform.namespace
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    seen: list[str] = []

    for name in platform.entries:
        ports = [(p.name, p.port) for p in core.read_namespaced_service(name, namespace).spec.ports]
        assert ports == [("https", 443)], (name, ports)
        container = apps.read_namespaced_deployment(name, namespace).spec.template.spec.containers[0]
        probes = [container.liveness_probe, container.readiness_probe, container.startup_probe]
        assert {probe.http_get.scheme for probe in probes} == {"HTTPS"}, name
        urls = {e.name: e.value for e in container.env or [] if e.name.endswith("_URL") and e.value}
        assert all(url.startswith("https://") for url in urls.values()), (name, urls)
    seen.append("every Service on 443 https, every probe HTTPS, every dependency URL https")

    # orders calls users and catalog: over HTTPS with the CA; plain HTTP and an unknown CA fail.
    for target in ("users", "catalog"):
        base = f"{target}.{namespace}.svc.cluster.local"
        assert fetch(platform, "orders", f"https://{base}/readyz", CA_FILE) == {"status": 200}
        plain = fetch(platform, "orders", f"http://{base}:443/readyz")
        assert "status" not in plain, plain
        unknown_ca = fetch(platform, "orders", f"https://{base}/readyz")  # the image's public roots
        assert unknown_ca.get("error") == "SSLCertVerificationError", unknown_ca
    seen.append("orders -> users and catalog: HTTPS with the CA 200; plain HTTP and public roots refused")

    custom = client.CustomObjectsApi(kube)
    for name in platform.entries:
        monitor = custom.get_namespaced_custom_object(
            "monitoring.coreos.com", "v1", namespace, "servicemonitors", name
        )
        endpoint = monitor["spec"]["endpoints"][0]
        assert (endpoint["scheme"], endpoint["port"]) == ("https", "https"), endpoint
        assert endpoint["tlsConfig"]["serverName"] == f"{name}.{namespace}.svc", endpoint
        transport = custom.get_namespaced_custom_object(
            "traefik.io", "v1alpha1", namespace, "serverstransports", name
        )
        assert transport["spec"]["serverName"] == f"{name}.{namespace}.svc", transport
    seen.append("ServiceMonitors scrape https; Traefik verifies each backend by its ServersTransport")

    result = platform.customer_flow()  # through Traefik, and orders -> users, catalog over HTTPS
    assert result["order"]["status"] == "confirmed" and result["stock"] == 3, result
    seen.append(f"customer flow through the ingress: order {result['order']['id']} confirmed")

    output = helm("test", RELEASE, "--namespace", namespace, "--logs", "--timeout", "300s")
    assert "Phase:          Succeeded" in output, output
    for name in platform.entries:
        assert f"{name} 200 " in output, output
    seen.append("helm test: every /readyz over HTTPS with the release's CA")

    case.tried(len(platform.entries))
    case.saw("; ".join(seen))
