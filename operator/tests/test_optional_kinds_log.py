"""kopf's warning about kinds with no CRD: INFO for the optional kinds, a warning for any other."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from flotilla_operator.optional_kinds_log import KOPF_OBSERVATION_LOGGER, install

TRAEFIK = "Selector(group='traefik.io', version='v1alpha1', any_name='{}')"


@pytest.fixture
def kopf_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    logger = logging.getLogger(KOPF_OBSERVATION_LOGGER)
    saved = list(logger.filters)
    install()
    caplog.set_level(logging.DEBUG, KOPF_OBSERVATION_LOGGER)
    yield caplog
    logger.filters[:] = saved


def _warn(selectors: str) -> logging.LogRecord:
    logging.getLogger(KOPF_OBSERVATION_LOGGER).warning(
        f"Unresolved resources cannot be served (try creating their CRDs): {selectors}"
    )
    return (logging.getLogger().handlers and None) or None  # type: ignore[return-value]


def test_optional_kinds_without_their_crds_are_info(kopf_log: pytest.LogCaptureFixture) -> None:
    _warn(", ".join(TRAEFIK.format(kind) for kind in ("IngressRoute", "TraefikService")))
    (record,) = kopf_log.records
    assert record.levelname == "INFO"
    assert record.getMessage().endswith("IngressRoute, TraefikService")


def test_any_other_kind_without_its_crd_stays_a_warning(kopf_log: pytest.LogCaptureFixture) -> None:
    _warn(f"{TRAEFIK.format('IngressRoute')}, Selector(group='flotilla.dev', any_name='Microservice')")
    (record,) = kopf_log.records
    assert record.levelname == "WARNING"
    assert "Microservice" in record.getMessage()
