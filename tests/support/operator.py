"""The operator as a process, with only the permissions of its ClusterRole."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import yaml
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

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
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": SERVICE_ACCOUNT},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": role["metadata"]["name"],
        },
        "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": OPERATOR_NAMESPACE}],
    }
    rbac.patch_cluster_role_binding(
        SERVICE_ACCOUNT,
        binding,
        field_manager="tests",
        force=True,
        _content_type="application/apply-patch+yaml",
    )
    token = core.create_namespaced_service_account_token(
        SERVICE_ACCOUNT,
        OPERATOR_NAMESPACE,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=7200)
        ),
    ).status.token
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
        "users": [{"name": SERVICE_ACCOUNT, "user": {"token": token}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": SERVICE_ACCOUNT}}],
        "current-context": "test",
    }
    path.write_text(yaml.safe_dump(kubeconfig))
    return path


class OperatorProcess:
    """``python -m flotilla_operator`` against the test cluster."""

    def __init__(self, kubeconfig: Path, log_path: Path, settings: dict[str, str] | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        # The tests' quick resync, re-apply and CRD cache, unless ``settings`` chooses.
        self.settings = (
            {
                "FLOTILLA_OPERATOR_RESYNC_SECONDS": "3",
                "FLOTILLA_OPERATOR_REAPPLY_SECONDS": "5",
                "FLOTILLA_OPERATOR_CRD_CACHE_SECONDS": "1",
            }
            if settings is None
            else settings
        )
        self.metrics_port = free_port()
        self.liveness_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "FLOTILLA_OPERATOR_METRICS_PORT": str(self.metrics_port),
            "FLOTILLA_OPERATOR_LIVENESS_PORT": str(self.liveness_port),
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
