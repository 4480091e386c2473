"""The reliability and security suite (`make test-reliability`): bad input, attacks, faults.

Every test here is marked ``reliability``; the main run leaves them out and `make test` runs
them as a session of their own, which prints the summary table of tests/support/cases.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from tests.support.convergence import StartOperator, microservices
from tests.support.kube import wait_for
from tests.support.operator import (
    GROUP,
    PLURAL,
    VERSION,
    OperatorProcess,
    install_crd,
    least_privilege_kubeconfig,
)

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.reliability)


@pytest.fixture(scope="module")
def microservice_crd(kube: ApiClient) -> None:
    """The Microservice CRD, installed as an admin does."""
    install_crd()


@pytest.fixture(scope="module")
def operator_kubeconfig(
    kube: ApiClient, microservice_crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Credentials bound to the operator's ClusterRole (and its leader-election Role) only."""
    return least_privilege_kubeconfig(kube, tmp_path_factory.mktemp("operator") / "kubeconfig")


@pytest.fixture
def start_operator(
    kube: ApiClient, namespace: str, operator_kubeconfig: Path, tmp_path: Path
) -> Iterator[StartOperator]:
    """Start operator processes for one test; every one is stopped afterwards.

    The test's Microservices go first: the namespace is deleted in the background, and the
    next test's operator (cluster-wide) would otherwise find them there, half deleted.
    ``lease`` names a Lease the processes share (replicas of one operator).
    """
    started: list[OperatorProcess] = []

    def start(
        settings: dict[str, str], lease: str | None = None, kubeconfig: Path | None = None
    ) -> OperatorProcess:
        process = OperatorProcess(
            kubeconfig or operator_kubeconfig, tmp_path / f"operator-{len(started)}.log", settings, lease
        )
        started.append(process)
        process.start()
        return process

    yield start
    try:
        client.CustomObjectsApi(kube).delete_collection_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL
        )
        wait_for(lambda: not microservices(kube, namespace), timeout=60, what="the Microservices to go")
    finally:
        for process in started:
            process.stop()
