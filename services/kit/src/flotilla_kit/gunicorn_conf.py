"""The one gunicorn configuration of every service: ``gunicorn -c python:flotilla_kit.gunicorn_conf``."""

from __future__ import annotations

import gc
import importlib
from pathlib import Path
from typing import Any

from gunicorn.glogging import Logger

# Nothing here may import prometheus_client before export_metrics_dir has run.
from flotilla_kit.server import (
    ServerSettings,
    export_metrics_dir,
    logging_config,
    mark_worker_dead,
    prepare_multiprocess_directory,
)


class AppLogsAccess(Logger):  # type: ignore[misc]  # gunicorn has no type hints
    """gunicorn's logger without its access line: the app writes one JSON line per request.

    With ``logconfig_dict`` set, gunicorn would build every access line and drop it.
    """

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        """Nothing: see the app's ``flotilla.access`` records."""


_settings = ServerSettings.load()
export_metrics_dir(_settings)

bind = [_settings.bind]
# A listening socket per worker (SO_REUSEPORT): the kernel spreads new connections over the
# workers. With one shared socket, a worker awake first took every keep-alive connection of a
# burst and the other idled: make bench measured half the throughput in one run of three.
reuse_port = True
workers = _settings.workers
worker_class = "gthread"
threads = _settings.threads
timeout = _settings.timeout
graceful_timeout = _settings.graceful_timeout
keepalive = _settings.keepalive
proc_name = f"flotilla-{_settings.service}"
worker_tmp_dir = "/dev/shm" if Path("/dev/shm").is_dir() else None  # noqa: S108 - heartbeat files
accesslog = None  # the app logs one JSON line per request itself
logger_class = AppLogsAccess
errorlog = "-"
logconfig_dict = logging_config(_settings.service)
forwarded_allow_ips = "127.0.0.1,::1"
# HTTPS on the same port when TLS_CERT_FILE and TLS_KEY_FILE are set (health endpoints included).
certfile = _settings.tls_cert_file
keyfile = _settings.tls_key_file
control_socket_disable = True  # one per host would clash between services; unused
# Imported once by the master, before it forks the workers: the kit and the libraries every
# service is built from. A worker's resident set then counts only the pages of their shared
# libraries that serving touches, not the many that importing them did (cryptography's and
# libpq's above all): make bench measured 6 MB less per worker. The service's own modules stay
# out, so that the workers a HUP starts import them afresh (the dev loop syncs them), and so does
# the HTTP client, which the users service does not load. tests/test_worker_memory.py checks both.
PRELOADED = ("flotilla_kit.app", "psycopg")


def on_starting(_server: Any) -> None:
    """Start each run with an empty metrics directory, then import what the workers share."""
    prepare_multiprocess_directory(_settings.metrics_dir)
    for module in PRELOADED:
        importlib.import_module(module)


def when_ready(_server: Any) -> None:
    """Before the first fork: the workers' garbage collections never touch the master's objects.

    Their pages stay shared instead of being copied into each worker: make bench measured 10 MB
    less PSS per worker (RSS counts a shared page all the same).
    """
    gc.freeze()


def child_exit(_server: Any, worker: Any) -> None:
    """A dead worker's live gauges stop counting."""
    mark_worker_dead(worker.pid)
