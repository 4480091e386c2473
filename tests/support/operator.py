"""The operator as a process, with only the permissions of its ClusterRole."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, cast

import requests
import yaml
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException
from prometheus_client.parser import text_string_to_metric_families

from tests.support.kube import kubeconfig_path
from tests.support.processes import free_port, wait_until_answering

MANIFESTS = Path(__file__).resolve().parents[2] / "operator" / "src" / "flotilla_operator" / "manifests"
OPERATOR_NAMESPACE = "flotilla-system"
SERVICE_ACCOUNT = "flotilla-operator-test"
GROUP, VERSION, PLURAL = "flotilla.dev", "v1alpha1", "microservices"


def install_crd() -> None:
    """Install the Microservice CRD as an admin does (``python -m flotilla_operator install-crd``)."""
    installed = subprocess.run(
        [sys.executable, "-m", "flotilla_operator", "install-crd"],
        env={**os.environ, "KUBECONFIG": str(kubeconfig_path())},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if installed.returncode != 0:
        raise RuntimeError(f"install-crd failed: {installed.stderr}")


def microservice(name: str, **spec: Any) -> dict[str, Any]:
    """A Microservice body with a placeholder image and ``spec``.

    Its releases are plain rolling updates unless ``spec`` sets ``rollout``: the tests of
    children, drift and config watch the Deployment take each change at once; the canary's own
    tests (tests/cluster/test_canary.py, tests/node/test_canary.py) run the default strategy.
    """
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Microservice",
        "metadata": {"name": name},
        "spec": {
            "image": "registry.example/flotilla/service:1.0",
            "rollout": {"strategy": "RollingUpdate"},
            **spec,
        },
    }


def create(kube: ApiClient, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    """Create a Microservice."""
    api = client.CustomObjectsApi(kube)
    return cast(dict[str, Any], api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body))


def _ignore_conflict(call: Any, *args: Any, **kwargs: Any) -> None:
    try:
        call(*args, **kwargs)
    except ApiException as exc:
        if exc.status != 409:
            raise


def binding(
    role_kind: str, role: str, service_account: str, *, name: str | None = None, namespace: str | None = None
) -> dict[str, Any]:
    """A (Cluster)RoleBinding of ``role`` to a service account of flotilla-system."""
    metadata = {"name": name or role, **({"namespace": namespace} if namespace else {})}
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": f"{role_kind}Binding",
        "metadata": metadata,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": OPERATOR_NAMESPACE}],
    }


def least_privilege_kubeconfig(api: ApiClient, path: Path) -> Path:
    """A kubeconfig for a service account bound to the operator's ClusterRole only."""
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    _ignore_conflict(
        core.create_namespace, client.V1Namespace(metadata=client.V1ObjectMeta(name=OPERATOR_NAMESPACE))
    )
    _ignore_conflict(
        core.create_namespaced_service_account,
        OPERATOR_NAMESPACE,
        client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=SERVICE_ACCOUNT)),
    )
    role = yaml.safe_load((MANIFESTS / "rbac.yaml").read_text())
    rbac.patch_cluster_role(
        role["metadata"]["name"],
        role,
        field_manager="tests",
        force=True,
        _content_type="application/apply-patch+yaml",
    )
    rbac.patch_cluster_role_binding(
        SERVICE_ACCOUNT,
        binding("ClusterRole", role["metadata"]["name"], SERVICE_ACCOUNT, name=SERVICE_ACCOUNT),
        field_manager="tests",
        force=True,
        _content_type="application/apply-patch+yaml",
    )
    grant_leases(api, OPERATOR_NAMESPACE)
    return service_account_kubeconfig(api, SERVICE_ACCOUNT, path)


def service_account_kubeconfig(api: ApiClient, service_account: str, path: Path) -> Path:
    """A kubeconfig with a two-hour token of ``service_account`` (in flotilla-system)."""
    token = (
        client.CoreV1Api(api)
        .create_namespaced_service_account_token(
            service_account,
            OPERATOR_NAMESPACE,
            client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=7200)
            ),
        )
        .status.token
    )
    configuration = api.configuration
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "test",
                "cluster": {"server": configuration.host, "certificate-authority": configuration.ssl_ca_cert},
            }
        ],
        "users": [{"name": service_account, "user": {"token": token}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": service_account}}],
        "current-context": "test",
    }
    path.write_text(yaml.safe_dump(kubeconfig))
    return path


def grant_leases(api: ApiClient, namespace: str) -> None:
    """Bind the operator's leader-election Role (its package's manifest) in ``namespace``."""
    role = yaml.safe_load((MANIFESTS / "leader-election.yaml").read_text())
    role["metadata"]["namespace"] = namespace
    rbac = client.RbacAuthorizationV1Api(api)
    rbac.patch_namespaced_role(
        role["metadata"]["name"],
        namespace,
        role,
        field_manager="tests",
        force=True,
        _content_type="application/apply-patch+yaml",
    )
    rbac.patch_namespaced_role_binding(
        role["metadata"]["name"],
        namespace,
        binding("Role", role["metadata"]["name"], SERVICE_ACCOUNT, namespace=namespace),
        field_manager="tests",
        force=True,
        _content_type="application/apply-patch+yaml",
    )


class OperatorProcess:
    """``python -m flotilla_operator`` against the test cluster.

    Each start campaigns for a Lease of its own in ``flotilla-system`` (it leads at once) unless
    ``lease`` names one to share (replicas of one operator).
    """

    def __init__(
        self,
        kubeconfig: Path,
        log_path: Path,
        settings: dict[str, str] | None = None,
        lease: str | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.shared_lease = lease
        self.lease_name = ""  # the Lease it campaigns for, once started
        # The tests' quick resync and CRD cache, unless ``settings`` chooses.
        self.settings = (
            {
                "FLOTILLA_OPERATOR_RESYNC_SECONDS": "3",
                "FLOTILLA_OPERATOR_CRD_CACHE_SECONDS": "1",
            }
            if settings is None
            else settings
        )
        self.metrics_port = free_port()
        self.liveness_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.lease_name = self.shared_lease or f"flotilla-operator-{uuid.uuid4().hex[:8]}"
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "FLOTILLA_OPERATOR_METRICS_PORT": str(self.metrics_port),
            "FLOTILLA_OPERATOR_LIVENESS_PORT": str(self.liveness_port),
            "FLOTILLA_OPERATOR_LEASE_NAME": self.lease_name,
            "FLOTILLA_OPERATOR_LEASE_NAMESPACE": OPERATOR_NAMESPACE,
            **self.settings,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flotilla_operator"],
            env=env,
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until_answering(
            f"http://127.0.0.1:{self.liveness_port}/healthz",
            self.process,
            "the operator",
            lambda: self.log_path.read_text()[-3000:],
        )

    def health(self, path: str = "/healthz", timeout: float = 2) -> tuple[int, dict[str, Any]]:
        """``/healthz`` or another page of its port: status code and JSON ((0, {}) while nothing listens)."""
        try:
            answer = requests.get(f"http://127.0.0.1:{self.liveness_port}{path}", timeout=timeout)
        except requests.RequestException:
            return 0, {}
        return answer.status_code, answer.json()

    def metric(self, name: str, **labels: str) -> float:
        """The sum of one metric's samples matching ``labels`` (0 when it has none, or no answer)."""
        return sum(
            value
            for found, value in self.samples(name)
            if all(found.get(key) == wanted for key, wanted in labels.items())
        )

    def samples(self, name: str) -> list[tuple[dict[str, str], float]]:
        """Each sample of one metric: its labels and value (none when the operator does not answer)."""
        try:
            text = requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2).text
        except requests.RequestException:
            return []
        return [
            (sample.labels, sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name
        ]

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, as when a node dies."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
