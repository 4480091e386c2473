"""kopf's event handlers decide when a Microservice is reconciled; kopf keeps nothing on it."""

from __future__ import annotations

import copy
from typing import Any, cast

import kopf
import pytest
from kubernetes.client.exceptions import ApiException
from prometheus_client import REGISTRY
from samples import delivered

from flotilla_operator import handlers
from flotilla_operator.diffbase import NoDiffBase, needing_a_diff
from flotilla_operator.kube import CHILD_KINDS, OPTIONAL_KINDS, WATCHED_KINDS
from flotilla_operator.latest import Latest
from flotilla_operator.metrics import MICROSERVICES, set_leading
from flotilla_operator.reconcile import Dependents
from flotilla_operator.release import COMMAND_ANNOTATION
from flotilla_operator.render import ConfigMissing, ConfigRef
from flotilla_operator.retries import Retries


class _Recorder:
    """A reconciler that records what it was asked to reconcile, failing while told to."""

    def __init__(self) -> None:
        self.dependents = Dependents()
        self.requests: list[tuple[str, str, bool]] = []
        self.failing: Exception | None = None

    def request(self, namespace: str, name: str, ms: dict[str, Any] | None = None) -> None:
        self.requests.append((namespace, name, ms is not None))
        if self.failing is not None:
            raise self.failing


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> _Recorder:
    reconciler = _Recorder()
    monkeypatch.setattr(handlers._State, "reconciler", reconciler)
    monkeypatch.setattr(handlers._State, "asked", {})
    monkeypatch.setattr(handlers._State, "ready", {})
    monkeypatch.setattr(handlers, "LATEST", Latest())
    monkeypatch.setattr(handlers, "RETRIES", Retries())
    return reconciler


def _ms(generation: int = 1, version: str = "10", uid: str = "u1", **metadata: Any) -> dict[str, Any]:
    return delivered(generation, version, uid, **metadata)


def _event(ms: dict[str, Any], type: str | None) -> None:
    handler: Any = handlers.microservice_event  # as kopf calls it, with the arguments it reads
    handler(body=kopf.Body(cast(Any, ms)), namespace="shop", name="orders", type=type)


def test_a_microservice_is_reconciled_when_it_asks_for_something_new(recorder: _Recorder) -> None:
    _event(_ms(), None)  # kopf's listing at start: every Microservice once
    _event(_ms(version="11"), "MODIFIED")  # its status written: nothing new asked
    assert recorder.requests == [("shop", "orders", True)]
    _event(_ms(generation=2, version="12"), "MODIFIED")  # its spec changed
    _event(_ms(generation=2, version="13", annotations={COMMAND_ANNOTATION: "promote"}), "MODIFIED")
    assert len(recorder.requests) == 3
    _event(_ms(generation=2, version="14"), None)  # a listing after a watch restart
    assert len(recorder.requests) == 4  # the command's removal is news as well
    _event(_ms(generation=2, version="15"), None)
    assert len(recorder.requests) == 4


def test_a_microservice_made_again_under_its_name_is_reconciled(recorder: _Recorder) -> None:
    _event(_ms(), "ADDED")
    _event(_ms(uid="u2", version="20"), "ADDED")  # its DELETED lost in a watch gap
    assert len(recorder.requests) == 2
    _event(_ms(uid="u2", version="21"), "DELETED")
    _event(_ms(uid="u2", version="22"), "ADDED")
    assert len(recorder.requests) == 3


def test_a_failed_reconcile_waits_in_the_queue_not_for_the_next_event(recorder: _Recorder) -> None:
    recorder.failing = ConnectionRefusedError(111, "Connection refused")
    _event(_ms(), "ADDED")
    due = handlers.RETRIES.due_in(("shop", "orders"))
    assert due is not None and 0 < due <= handlers.UNREACHABLE_RETRY_SECONDS
    _event(_ms(version="11"), "MODIFIED")  # a status write does not retry early
    assert len(recorder.requests) == 1
    recorder.failing = None
    assert handlers.RETRIES.take_due(wait=5) == [("shop", "orders")]
    handlers._reconcile("shop", "orders")  # as the retry thread does
    assert recorder.requests[-1] == ("shop", "orders", True)  # from the newest body delivered
    assert (len(handlers.RETRIES), handlers.RETRIES.failures(("shop", "orders"))) == (0, 0)
    handlers._wrote("Microservice", _ms(version="12"))  # a status write the watch has not delivered
    handlers._reconcile("shop", "orders")
    assert recorder.requests[-1] == ("shop", "orders", False)  # read anew


def test_a_deleted_microservice_is_not_retried(recorder: _Recorder) -> None:
    recorder.failing = ConnectionRefusedError(111, "Connection refused")
    _event(_ms(), "ADDED")
    _event(_ms(version="11"), "DELETED")
    assert len(handlers.RETRIES) == 0


def test_a_deleted_microservices_series_go_with_its_deleted_event(recorder: _Recorder) -> None:
    ready = ("flotilla_operator_microservice_ready", {"namespace": "shop", "name": "orders"})
    set_leading(True)
    try:
        _event(_ms(), "ADDED")
        MICROSERVICES.set("shop", "orders", "u1", scrape_targets=2, ready=True, phase="Stable")
        assert REGISTRY.get_sample_value(*ready) == 1
        _event(_ms(version="11"), "DELETED")
        assert REGISTRY.get_sample_value(*ready) is None
        MICROSERVICES.set("shop", "orders", "u2", scrape_targets=2, ready=True, phase="Stable")
        _event(_ms(version="12", uid="u2", deletionTimestamp="2026-01-01T00:00:00Z"), "MODIFIED")
        assert REGISTRY.get_sample_value(*ready) is None  # being deleted: gone already
    finally:
        set_leading(False)


@pytest.mark.parametrize(
    ("error", "label", "longest"),
    [
        (ApiException(status=409, reason="Conflict"), "api_409", 2),
        (ApiException(status=503, reason="Unavailable"), "api_503", 5),
        (ConfigMissing([ConfigRef("ConfigMap", "orders-config")]), "config_missing", 5),
        (ValueError("a bug"), "ValueError", 60),
    ],
)
def test_each_failure_is_counted_and_paused_for(
    recorder: _Recorder, error: Exception, label: str, longest: float
) -> None:
    recorder.failing = error
    for _ in range(8):
        handlers._reconcile("shop", "orders")
    assert handlers.RETRIES.failures(("shop", "orders")) == 8
    assert 0 < (handlers.RETRIES.due_in(("shop", "orders")) or 0) <= longest
    assert handlers._failure(error, 1)[0] == label


def test_no_handler_needs_kopfs_diff_base_and_it_copies_nothing() -> None:
    assert needing_a_diff(kopf.get_default_registry()) == []
    body = kopf.Body(cast(Any, _ms()))
    before = copy.deepcopy(dict(body))
    assert NoDiffBase().build(body=body) == {}
    assert NoDiffBase().fetch(body=body) is None
    assert dict(body) == before


def test_every_kind_of_child_but_the_optional_ones_is_watched() -> None:
    watched = {
        (handler.selector.group, handler.selector.version, handler.selector.any_name)
        for handler in kopf.get_default_registry()._watching.get_all_handlers()
        if handler.fn is handlers._child_changed and handler.selector is not None
    }
    expected = {(*CHILD_KINDS[kind].rpartition("/")[::2], kind) for kind in WATCHED_KINDS}
    assert watched == expected
    assert set(WATCHED_KINDS) == set(CHILD_KINDS) - set(OPTIONAL_KINDS)  # those: each resync lists them


def test_an_event_behind_the_operators_own_write_is_not_reconciled_as_delivered(recorder: _Recorder) -> None:
    handlers._wrote("Microservice", _ms(version="30"))  # its status, written a moment ago
    _event(_ms(version="29", annotations={COMMAND_ANNOTATION: "abort"}), "MODIFIED")  # the watch behind
    assert recorder.requests == [("shop", "orders", False)]  # read anew, not decided from version 29
