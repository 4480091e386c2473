"""The operator's own writes, recognised when their watch events come back."""

from __future__ import annotations

from typing import Any

from flotilla_operator.echoes import Echoes


def body(version: str | None, name: str = "orders", namespace: str = "shop") -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if version is not None:
        metadata["resourceVersion"] = version
    return {"metadata": metadata}


def test_the_version_written_comes_back_as_an_echo_once() -> None:
    echoes = Echoes()
    echoes.wrote("Deployment", body("7"))
    assert echoes.is_echo("Deployment", body("7"))
    assert not echoes.is_echo("Deployment", body("7"))  # a second delivery is news again
    assert len(echoes) == 0


def test_another_version_kind_or_object_is_news() -> None:
    echoes = Echoes()
    echoes.wrote("Deployment", body("7"))
    assert not echoes.is_echo("Deployment", body("8"))  # the controller's status update
    assert not echoes.is_echo("Service", body("7"))
    assert not echoes.is_echo("Deployment", body("7", name="users"))
    assert not echoes.is_echo("Deployment", body("7", namespace="other"))
    assert not echoes.is_echo("Deployment", body(None))
    assert echoes.is_echo("Deployment", body("7"))


def test_a_newer_write_replaces_the_older_and_a_deletion_forgets_it() -> None:
    echoes = Echoes()
    echoes.wrote("Deployment", body("7"))
    echoes.wrote("Deployment", body("9"))
    assert not echoes.is_echo("Deployment", body("7"))
    assert len(echoes) == 1
    echoes.forget("Deployment", body("10"))
    assert len(echoes) == 0
    echoes.wrote("Deployment", body(None))  # no version, nothing to recognise
    assert len(echoes) == 0
