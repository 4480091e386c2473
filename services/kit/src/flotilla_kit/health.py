"""``/livez`` and ``/readyz`` with pluggable readiness checks."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask, Response, current_app, jsonify

from flotilla_kit.problems import problem_response
from flotilla_kit.version import kit_version

ReadinessCheck = Callable[[], None]
"""A check raises (any exception, with a short message) when the service cannot serve."""

EXTENSION = "flotilla_health"
log = logging.getLogger("flotilla.health")


def add_readiness_check(app: Flask, name: str, check: ReadinessCheck) -> None:
    """Make ``/readyz`` depend on ``check``."""
    app.extensions[EXTENSION][name] = check


def init_app(app: Flask) -> None:
    """Serve the liveness and readiness endpoints."""
    app.extensions[EXTENSION] = {}

    @app.get("/livez")
    def livez() -> Response:
        return jsonify(status="ok", kit=kit_version())

    @app.get("/readyz")
    def readyz() -> Response:
        results: dict[str, str] = {}
        for name, check in current_app.extensions[EXTENSION].items():
            try:
                check()
            except Exception as exc:  # noqa: BLE001 - any failure means not ready
                # The reason goes to the log only: an exception's text may name hosts and users.
                log.warning("readiness check failed", extra={"check": name, "error": str(exc)})
                results[name] = "failing"
            else:
                results[name] = "ok"
        failing = sorted(name for name, result in results.items() if result != "ok")
        if failing:
            return problem_response(
                503,
                {
                    "type": "about:blank",
                    "title": "Service Unavailable",
                    "status": 503,
                    "detail": f"not ready: {', '.join(failing)}",
                    "checks": results,
                },
            )
        return jsonify(status="ok", checks=results)
