"""One JSON object per log line on stdout, carrying the service, request ID and trace ID."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from flask import Flask, Response, g, request
from pythonjsonlogger.orjson import OrjsonFormatter

from flotilla_kit import tracing
from flotilla_kit.context import current_request_id, route_template

FORMAT = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"
RENAMED = {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"}


class ContextFilter(logging.Filter):
    """Adds the service name, the current request's ID and the current span's IDs to each record."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id()
        if not hasattr(record, "trace_id"):
            record.trace_id, record.span_id = tracing.current_ids()
        return True


def json_formatter() -> logging.Formatter:
    """The formatter every Flotilla process uses, gunicorn's own logs included."""
    # orjson: a line costs a fraction of the standard library's encoding (UTF-8, like before).
    return OrjsonFormatter(FORMAT, rename_fields=RENAMED, datefmt="%Y-%m-%dT%H:%M:%S%z")


def configure_logging(service: str, level: str) -> None:
    """Send every logger's records to stdout as JSON; idempotent."""
    root = logging.getLogger()
    root.setLevel(level)
    for handler in list(root.handlers):
        if getattr(handler, "_flotilla", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(json_formatter())
    handler.addFilter(ContextFilter(service))
    handler._flotilla = True  # type: ignore[attr-defined]
    root.addHandler(handler)


access_log = logging.getLogger("flotilla.access")


def init_app(app: Flask) -> None:
    """Log one access line per request: method, route template, status, duration."""

    @app.before_request
    def _start_clock() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _log_access(response: Response) -> Response:
        started = g.get("started")
        fields: dict[str, Any] = {
            "method": request.method,
            "route": route_template(),
            "path": request.path,
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - started) * 1000, 3) if started else None,
            "remote_addr": request.remote_addr,
        }
        access_log.info("request", extra=fields)
        return response
