"""Faults injected on purpose: a bad release for canary tests and demos, off by default.

The ``FAULT_*`` settings (``settings.FaultSettings``) make a share of the service's requests
fail with 503 or wait, ``/readyz`` fail, or the process crash at start, so that a canary's
analysis sees a bad release and rolls it back. The kit's health, metrics and OpenAPI endpoints
are never faulted (except ``/readyz`` by ``FAULT_NOT_READY``).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from flask import Flask, request

from flotilla_kit import health
from flotilla_kit.problems import Problem
from flotilla_kit.settings import CRASH_AT_START_MESSAGE, FaultSettings

EXTENSION = "flotilla_faults"
PROBLEM_SLUG = "fault-injected"
NOT_READY_CHECK = "FAULT_NOT_READY"
# Route rules, not paths: what probes and Prometheus call, and the API's description.
EXEMPT_RULES = frozenset({"/livez", "/readyz", "/metrics", "/openapi.json"})

log = logging.getLogger("flotilla.faults")


class CrashAtStart(RuntimeError):
    """Raised by the app factory when ``FAULT_CRASH_AT_START`` is true.

    An exception, not ``SystemExit``: gunicorn halts with a non-zero status when a worker fails
    to boot by an exception, but starts another worker after one that exits.
    """


class FaultInjector:
    """Decides, request by request, which to delay and which to fail.

    ``rng`` is the only source of chance and ``sleep`` the only wait: tests seed or replace them.
    One per worker process, seeded apart.
    """

    def __init__(self, settings: FaultSettings, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.rng = rng if rng is not None else random.Random()  # noqa: S311 - chance, not secrets
        self.sleep: Callable[[float], None] = time.sleep

    def before_request(self) -> None:
        """Delay and fail the request as the settings say; after metrics and logs started timing it."""
        rule = request.url_rule
        if rule is None or rule.rule in EXEMPT_RULES:
            return  # a 404 or 405, or the kit's own endpoints
        settings = self.settings
        if settings.delay_seconds > 0 and self.rng.random() < settings.delay_ratio:
            self.sleep(settings.delay_seconds)
        if settings.error_ratio > 0 and self.rng.random() < settings.error_ratio:
            raise Problem(
                503,
                PROBLEM_SLUG,
                f"This failure was injected on purpose (FAULT_ERROR_RATIO={settings.error_ratio:g}): "
                "this release is faulty for a canary test or a demo.",
                title="Fault injected on purpose",
            )


def _never_ready() -> None:
    raise RuntimeError("FAULT_NOT_READY is true: this release never becomes ready (injected on purpose)")


def init_app(app: Flask, settings: FaultSettings, rng: random.Random | None = None) -> FaultInjector:
    """Apply the faults of ``settings``; with none set, nothing is added to the request path.

    Call after ``metrics``, ``logs`` and ``health``: the injected 503s and delays are then counted,
    timed and logged like real ones, and ``/readyz`` can be made to fail.
    """
    if settings.crash_at_start:
        log.critical(CRASH_AT_START_MESSAGE)
        raise CrashAtStart(CRASH_AT_START_MESSAGE)
    injector = FaultInjector(settings, rng)
    app.extensions[EXTENSION] = injector
    active = settings.active()
    if not active:
        return injector
    log.warning("faults injected on purpose: %s", settings.describe(), extra={"faults": active})
    if settings.not_ready:
        health.add_readiness_check(app, NOT_READY_CHECK, _never_ready)
    if settings.error_ratio > 0 or "FAULT_DELAY_SECONDS" in active:
        app.before_request(injector.before_request)
    return injector
