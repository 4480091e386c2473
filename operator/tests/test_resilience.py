"""Faults the operator must ride out: an API server away for a while, discovery shared by threads,
a CRD it may not write."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import kopf
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client import REGISTRY
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from flotilla_operator import handlers
from flotilla_operator import kube as kube_module
from flotilla_operator.retries import Retries
from flotilla_operator.settings import ConfigError, OperatorSettings


class _Unreachable:
    """A reconciler whose API server does not answer."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def request(self, *_: object) -> None:
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        MaxRetryError(None, "/apis", NewConnectionError(None, "[Errno 111] Connection refused")),  # type: ignore[arg-type]
        ProtocolError("Connection aborted.", ConnectionResetError(104, "Connection reset by peer")),
        ConnectionRefusedError(111, "Connection refused"),
    ],
    ids=["refused", "reset", "socket"],
)
def test_an_unreachable_api_server_is_retried_after_a_short_delay(
    monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    monkeypatch.setattr(handlers._State, "reconciler", _Unreachable(error))
    monkeypatch.setattr(handlers, "RETRIES", Retries())
    counted = {"error": "unreachable"}
    before = REGISTRY.get_sample_value("flotilla_operator_reconcile_errors_total", counted) or 0
    handlers._reconcile("shop", "orders")
    due = handlers.RETRIES.due_in(("shop", "orders"))
    assert due is not None
    assert due <= 5
    assert REGISTRY.get_sample_value("flotilla_operator_reconcile_errors_total", counted) == before + 1


def test_kopf_retries_its_requests_through_a_restart_never_pausing_long() -> None:
    settings = kopf.OperatorSettings()
    handlers.tune(settings)
    backoffs = list(settings.networking.error_backoffs)  # type: ignore[arg-type]
    assert max(backoffs) <= 5, "a watch would wait that long after the API server is back"
    assert sum(backoffs) >= 45, "a request would give up while the API server restarts"


class _Discoverer:
    """Stands for the client's discovery cache, which breaks when two threads are in it at once."""

    def __init__(self) -> None:
        self.inside = 0
        self.overlaps = 0
        self.guard = threading.Lock()

    def _enter(self) -> None:
        with self.guard:
            self.inside += 1
            self.overlaps += self.inside > 1
        time.sleep(0.001)
        with self.guard:
            self.inside -= 1

    def get(self, **_: object) -> object:
        self._enter()
        return object()

    def invalidate_cache(self) -> None:
        self._enter()


class _DynamicClient:
    def __init__(self, _: object) -> None:
        self.resources = _Discoverer()


def test_handler_threads_never_share_the_discovery_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kube_module, "OrjsonDynamicClient", _DynamicClient)
    kube = kube_module.Kube(client.ApiClient())

    def work(index: int) -> None:
        for _ in range(20):
            if index == 0:
                kube.forget_crds()  # a CRD went away: discovery is emptied and reloaded
            else:
                kube._resource("apps/v1", "Deployment")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(8)))
    assert kube.dynamic.resources.overlaps == 0


def _refuse(status: int) -> Any:
    def apply(_: object) -> None:
        raise ApiException(status=status, reason="Forbidden" if status == 403 else "Unavailable")

    return apply


def test_an_operator_that_may_not_write_its_crd_stops_and_says_how_to_go_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(handlers, "api_client", lambda: None)
    monkeypatch.setattr(handlers, "apply_crd", _refuse(403))
    with pytest.raises(kopf.PermanentError, match="FLOTILLA_OPERATOR_APPLY_CRD=false"):
        handlers.ensure_crd()
    monkeypatch.setattr(handlers, "apply_crd", _refuse(503))
    with pytest.raises(kopf.TemporaryError):
        handlers.ensure_crd()
    monkeypatch.setattr(handlers, "SETTINGS", replace(handlers.SETTINGS, apply_crd=False))
    handlers.ensure_crd()  # switched off: nothing is asked of the API server


@pytest.mark.parametrize(("raw", "expected"), [("", True), ("false", False), ("TRUE", True), ("0", False)])
def test_the_crd_self_apply_setting(monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool) -> None:
    monkeypatch.setenv("FLOTILLA_OPERATOR_APPLY_CRD", raw)
    monkeypatch.setenv("FLOTILLA_INGRESS_NAMESPACE", "traefik")
    settings = OperatorSettings.load()
    assert (settings.apply_crd, settings.ingress_namespace, settings.prometheus_namespace) == (
        expected,
        "traefik",
        "monitoring",
    )


def test_a_bad_crd_self_apply_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOTILLA_OPERATOR_APPLY_CRD", "maybe")
    with pytest.raises(ConfigError, match="FLOTILLA_OPERATOR_APPLY_CRD"):
        OperatorSettings.load()


@pytest.mark.parametrize(("raw", "expected"), [("", 10), ("12", 12), ("15.0", 15)])
def test_the_lease_lasts_whole_seconds(monkeypatch: pytest.MonkeyPatch, raw: str, expected: int) -> None:
    # The chart sets "10": as the float 10.0, the client's Lease record became "10.0", and its
    # int() of that failed every campaign of both replicas.
    monkeypatch.setenv("FLOTILLA_OPERATOR_LEASE_SECONDS", raw)
    lease_seconds = OperatorSettings.load().lease_seconds
    assert lease_seconds == expected and isinstance(lease_seconds, int)
    assert int(str(lease_seconds)) == expected  # what the client's LeaseLock does with it


@pytest.mark.parametrize(
    ("raw", "message"), [("7.5", "whole number"), ("5", "at least 6"), ("x", "not a number")]
)
def test_a_bad_lease_duration_is_named(monkeypatch: pytest.MonkeyPatch, raw: str, message: str) -> None:
    monkeypatch.setenv("FLOTILLA_OPERATOR_LEASE_SECONDS", raw)
    with pytest.raises(ConfigError, match=f"FLOTILLA_OPERATOR_LEASE_SECONDS: .*{message}"):
        OperatorSettings.load()
