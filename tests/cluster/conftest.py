"""The operator, running with least privilege, for the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes.client import ApiClient

from tests.support.operator import OperatorProcess, install_crd, least_privilege_kubeconfig


@pytest.fixture(scope="session")
def operator(
    kube: ApiClient, microservice_crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The CRD installed (as an admin would), and the operator running under its ClusterRole."""
    directory = tmp_path_factory.mktemp("operator")
    process = OperatorProcess(
        least_privilege_kubeconfig(kube, directory / "kubeconfig"), directory / "operator.log"
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def microservice_crd() -> None:
    """Operator mode renders Microservice resources: the API server must know the kind."""
    install_crd()
