"""Settings of the gunicorn server every service runs under."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from marshmallow.validate import Range

from flotilla_kit.settings import finish, read_env


@dataclass(frozen=True)
class ServerSettings:
    """Where and how gunicorn serves: read from the environment, validated."""

    service: str
    host: str
    port: int
    workers: int
    threads: int
    timeout: int
    graceful_timeout: int
    keepalive: int
    metrics_dir: Path

    @property
    def bind(self) -> str:
        """Gunicorn's bind address."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def load(cls) -> ServerSettings:
        """Read HOST, PORT, WEB_CONCURRENCY, GUNICORN_* and PROMETHEUS_MULTIPROC_DIR."""
        env = read_env()
        service = env.str("FLOTILLA_SERVICE", "flotilla")
        port = env.int("PORT", 8000, validate=Range(min=1, max=65535))
        fields = {
            "service": service,
            "host": env.str("HOST", "0.0.0.0"),  # noqa: S104 - a server listens on all addresses
            "port": port,
            "workers": env.int("WEB_CONCURRENCY", 2, validate=Range(min=1, max=64)),
            "threads": env.int("GUNICORN_THREADS", 4, validate=Range(min=1, max=64)),
            "timeout": env.int("GUNICORN_TIMEOUT", 30, validate=Range(min=1)),
            "graceful_timeout": env.int("GUNICORN_GRACEFUL_TIMEOUT", 25, validate=Range(min=1)),
            "keepalive": env.int("GUNICORN_KEEPALIVE", 5, validate=Range(min=0)),
        }
        metrics_dir = env.str(
            "PROMETHEUS_MULTIPROC_DIR",
            str(Path(tempfile.gettempdir()) / "flotilla-metrics" / f"{service}-{port}"),
        )
        finish(env)
        return cls(metrics_dir=Path(metrics_dir), **fields)  # type: ignore[arg-type]


def logging_config(service: str) -> dict[str, object]:
    """Gunicorn's own log lines as JSON on stdout, like the app's."""
    handler = {
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stdout",
        "formatter": "json",
        "filters": ["context"],
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "flotilla_kit.logs.json_formatter"}},
        "filters": {"context": {"()": "flotilla_kit.logs.ContextFilter", "service": service}},
        "handlers": {"stdout": handler},
        # The app's own records reach stdout through the handler the kit adds in each worker.
        "root": {"level": "INFO", "handlers": []},
        "loggers": {
            "gunicorn.error": {"handlers": ["stdout"], "level": "INFO", "propagate": False},
            "gunicorn.access": {"handlers": ["stdout"], "level": "WARNING", "propagate": False},
        },
    }


def export_metrics_dir(settings: ServerSettings) -> None:
    """Set before anything imports prometheus_client, so that workers run in multiprocess mode."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(settings.metrics_dir)


def prepare_multiprocess_directory(path: str | os.PathLike[str]) -> None:
    """Empty (or create) the directory workers share; called once by the master at start."""
    directory = Path(path)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)


def mark_worker_dead(pid: int) -> None:
    """Drop a dead worker's live gauges (its counters still count)."""
    # Imported here: prometheus_client picks multiprocess mode from the environment on import.
    from prometheus_client import multiprocess  # noqa: PLC0415

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
