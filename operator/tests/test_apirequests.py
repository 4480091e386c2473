"""The operator's requests, named as the API server's audit would name them."""

from __future__ import annotations

import pytest

from flotilla_operator.apirequests import describe

APPLY = {"Content-Type": "application/apply-patch+yaml"}
MERGE = {"content-type": "application/merge-patch+json"}
MS = "https://h/apis/flotilla.dev/v1alpha1"


@pytest.mark.parametrize(
    ("method", "url", "headers", "expected"),
    [
        (
            "PATCH",
            "https://10.0.0.1:6443/apis/apps/v1/namespaces/shop/deployments/o",
            APPLY,
            ("apply", "deployments"),
        ),
        (
            "GET",
            f"{MS}/namespaces/shop/microservices/orders",
            {},
            ("get", "microservices"),
        ),
        (
            "GET",
            f"{MS}/microservices?limit=500",
            {},
            ("list", "microservices"),
        ),
        (
            "PATCH",
            f"{MS}/namespaces/shop/microservices/orders/status",
            APPLY,
            ("apply", "microservices/status"),
        ),
        (
            "PATCH",
            f"{MS}/namespaces/shop/microservices/orders",
            MERGE,
            ("patch", "microservices"),
        ),
        ("POST", "https://h/api/v1/namespaces/shop/events", {}, ("create", "events")),
        ("GET", "https://h/api/v1/namespaces/shop", {}, ("get", "namespaces")),
        (
            "PUT",
            "https://h/apis/coordination.k8s.io/v1/namespaces/ops/leases/op",
            {},
            ("update", "leases"),
        ),
        ("DELETE", "https://h/apis/batch/v1/namespaces/shop/jobs/orders-migrate-1", {}, ("delete", "jobs")),
        ("GET", "https://h/apis", {}, ("get", "other")),
    ],
)
def test_each_request_is_named_by_verb_and_resource(
    method: str, url: str, headers: dict[str, str], expected: tuple[str, str]
) -> None:
    assert describe(method, url, headers) == expected
