"""The kit versions the services' pods report, read in one Prometheus query a resync."""

from __future__ import annotations

from typing import cast

from flotilla_operator.kitversions import QUERY, KitVersions
from flotilla_operator.prometheus import Prometheus


class FakePrometheus:
    def __init__(self, *series: dict[str, str]) -> None:
        self.answer = list(series)
        self.queries: list[str] = []

    def series(self, query: str) -> list[dict[str, str]]:
        self.queries.append(query)
        return self.answer


def series(namespace: str, job: str, version: str) -> dict[str, str]:
    return {"namespace": namespace, "job": job, "version": version}


def test_each_microservice_gets_its_pods_versions_and_a_refresh_replaces_them() -> None:
    prometheus = FakePrometheus(
        series("shop", "orders", "0.1.0"),
        series("shop", "catalog", "0.2.0"),
        series("shop", "catalog", "0.1.0"),  # mid-release: two images
        {"namespace": "shop", "version": "9.9.9"},  # not a service's (no job): ignored
    )
    versions = KitVersions()
    versions.refresh(cast(Prometheus, prometheus))
    assert prometheus.queries == [QUERY]
    assert versions.version(("shop", "orders")) == "0.1.0"
    assert versions.version(("shop", "catalog")) == "0.1.0, 0.2.0"
    assert versions.version(("shop", "users")) is None

    prometheus.answer = [series("shop", "orders", "0.1.0"), series("shop", "catalog", "0.2.0")]
    versions.refresh(cast(Prometheus, prometheus))
    assert versions.version(("shop", "catalog")) == "0.2.0"
    assert versions.version(("shop", "orders")) == "0.1.0"
