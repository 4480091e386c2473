"""Each Microservice's series: set by its reconcile, gone with it, exported by the leader only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client
from prometheus_client import REGISTRY

from flotilla_operator.leadership import Election
from flotilla_operator.metrics import MICROSERVICES, set_leading

NAMES = (
    "flotilla_operator_microservice_scrape_targets",
    "flotilla_operator_microservice_ready",
    "flotilla_operator_microservice_rollout_phase",
)


def exported() -> dict[tuple[str, str], dict[str, float | str]]:
    """What a scrape shows now, per (namespace, name): each gauge's value (the phase's label)."""
    found: dict[tuple[str, str], dict[str, float | str]] = {}
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name in NAMES:
                gauge = sample.name.removeprefix("flotilla_operator_microservice_")
                entry = found.setdefault((sample.labels["namespace"], sample.labels["name"]), {})
                entry[gauge] = sample.labels.get("phase", sample.value)
    return found


def series(targets: int, ready: int, phase: str) -> dict[str, float | str]:
    return {"scrape_targets": targets, "ready": ready, "rollout_phase": phase}


@pytest.fixture
def leading() -> Iterator[None]:
    set_leading(True)
    yield
    set_leading(False)


@pytest.mark.usefixtures("leading")
def test_a_microservices_series_are_set_then_updated_in_place() -> None:
    MICROSERVICES.set("shop", "orders", "u1", scrape_targets=2, ready=False, phase="Stable")
    assert exported() == {("shop", "orders"): series(2, 0, "Stable")}
    MICROSERVICES.set("shop", "orders", "u1", scrape_targets=3, ready=True, phase="Progressing")
    # One series per gauge still: the phase's label moved, the old phase's series is gone.
    assert exported() == {("shop", "orders"): series(3, 1, "Progressing")}
    stable = {"namespace": "shop", "name": "orders", "phase": "Stable"}
    assert REGISTRY.get_sample_value("flotilla_operator_microservice_rollout_phase", stable) is None


@pytest.mark.usefixtures("leading")
def test_a_deleted_microservices_series_go_and_a_late_reconcile_brings_none_back() -> None:
    MICROSERVICES.set("shop", "orders", "u1", scrape_targets=2, ready=True, phase="Stable")
    MICROSERVICES.set("shop", "users", "u2", scrape_targets=1, ready=True, phase="Stable")
    MICROSERVICES.remove("shop", "orders", "u1")
    assert set(exported()) == {("shop", "users")}
    # A reconcile that read orders before its deletion ends after it.
    MICROSERVICES.set("shop", "orders", "u1", scrape_targets=2, ready=True, phase="Stable")
    assert set(exported()) == {("shop", "users")}
    # Made again under the same name: a new uid, new series.
    MICROSERVICES.set("shop", "orders", "u3", scrape_targets=1, ready=False, phase="Stable")
    assert set(exported()) == {("shop", "users"), ("shop", "orders")}
    MICROSERVICES.remove("shop", "orders", "u1")  # the old one's DELETED, late: not the new one's
    assert set(exported()) == {("shop", "users"), ("shop", "orders")}


@pytest.mark.usefixtures("leading")
def test_a_resync_drops_the_series_of_microservices_its_listing_did_not_show() -> None:
    MICROSERVICES.set("shop", "orders", "u1", scrape_targets=2, ready=True, phase="Stable")
    MICROSERVICES.set("shop", "gone", "u2", scrape_targets=1, ready=True, phase="Stable")
    mark = MICROSERVICES.mark()
    # Made while the listing was under way: not in it, and not gone.
    MICROSERVICES.set("shop", "new", "u3", scrape_targets=1, ready=False, phase="Stable")
    MICROSERVICES.prune([("shop", "orders")], mark)
    assert set(exported()) == {("shop", "orders"), ("shop", "new")}


def test_a_standby_exports_no_microservice_series() -> None:
    set_leading(False)
    MICROSERVICES.set("shop", "orders", "u1", scrape_targets=2, ready=True, phase="Stable")
    assert exported() == {}
    assert REGISTRY.get_sample_value("flotilla_operator_leader") == 0


def test_losing_the_lease_clears_every_microservice_series() -> None:
    election = Election(client.ApiClient(), "flotilla-operator", "flotilla", "replica-a", 10)
    election._started()
    try:
        MICROSERVICES.set("shop", "orders", "u1", scrape_targets=2, ready=True, phase="Stable")
        assert set(exported()) == {("shop", "orders")}
        election._stopped()  # a renewal failed: the supervisor relaunches the process next
        assert exported() == {}
        assert election.lost.is_set()
        # A reconcile still running before the relaunch sets nothing.
        MICROSERVICES.set("shop", "users", "u2", scrape_targets=1, ready=True, phase="Stable")
        assert exported() == {}
    finally:
        set_leading(False)


def test_the_registry_knows_the_series_names_without_collecting_them() -> None:
    set_leading(False)
    assert {family.name for family in MICROSERVICES.describe()} == set(NAMES)
