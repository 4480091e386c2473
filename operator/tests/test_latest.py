"""A Microservice's kept body stands for a read only while it is the newest version seen."""

from __future__ import annotations

from typing import Any

from samples import delivered

from flotilla_operator.latest import Latest

KEY = ("shop", "orders")


def ms(version: str, **status: Any) -> dict[str, Any]:
    return {**delivered(version=version), "status": status}


def test_the_delivered_body_is_kept_without_its_managed_fields() -> None:
    latest = Latest()
    latest.delivered(ms("7", readyReplicas=1))
    kept = latest.body(KEY)
    assert kept is not None
    assert kept["status"] == {"readyReplicas": 1}
    assert kept["spec"] == delivered()["spec"]
    assert "managedFields" not in kept["metadata"]
    kept["status"]["readyReplicas"] = 9  # a copy: the caller may change it
    assert (latest.body(KEY) or {})["status"] == {"readyReplicas": 1}


def test_a_newer_version_written_and_not_delivered_yet_means_a_read() -> None:
    latest = Latest()
    latest.delivered(ms("7"))
    latest.seen(ms("8"))  # the operator's status write
    assert latest.body(KEY) is None
    assert latest.if_newest(ms("7")) is None
    latest.delivered(ms("8"))  # its echo
    assert latest.body(KEY) is not None
    assert latest.if_newest(ms("8")) is not None


def test_a_forgotten_microservice_has_no_body() -> None:
    latest = Latest()
    latest.delivered(ms("7"))
    latest.forget(KEY)
    assert (latest.body(KEY), len(latest)) == (None, 0)


def test_a_delivery_older_than_a_write_does_not_become_the_newest() -> None:
    latest = Latest()
    latest.seen(ms("9"))  # the operator's write
    latest.delivered(ms("8"))  # the watch, behind
    assert latest.body(KEY) is None
    assert latest.if_newest(ms("8")) is None
    assert latest.if_newest(ms("9")) is not None
