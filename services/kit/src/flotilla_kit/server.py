"""Settings of the gunicorn server every service runs under."""

from __future__ import annotations

import os
import shutil
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from marshmallow.validate import Range

from flotilla_kit.settings import ConfigError, finish, read_env, readable_file


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
    tls_cert_file: str | None = None
    tls_key_file: str | None = None

    @property
    def bind(self) -> str:
        """Gunicorn's bind address."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def load(cls) -> ServerSettings:
        """Read HOST, PORT, WEB_CONCURRENCY, GUNICORN_*, TLS_* and PROMETHEUS_MULTIPROC_DIR."""
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
        cert_file = env.str("TLS_CERT_FILE", None, validate=readable_file)
        key_file = env.str("TLS_KEY_FILE", None, validate=readable_file)
        metrics_dir = env.str(
            "PROMETHEUS_MULTIPROC_DIR",
            str(Path(tempfile.gettempdir()) / "flotilla-metrics" / f"{service}-{port}"),
        )
        finish(env)
        check_certificate(cert_file, key_file)
        return cls(
            metrics_dir=Path(metrics_dir),
            tls_cert_file=cert_file,
            tls_key_file=key_file,
            **fields,  # type: ignore[arg-type]
        )


def check_certificate(cert_file: str | None, key_file: str | None) -> None:
    """Both TLS files or neither, and a key that opens without a password and fits the certificate.

    Checked here because gunicorn loads them only at a worker's first connection.
    """
    if (cert_file is None) != (key_file is None):
        raise ConfigError("invalid configuration: TLS_CERT_FILE and TLS_KEY_FILE: set both or neither")
    if cert_file is None:
        return

    def no_password() -> str:
        raise ValueError("the key is encrypted")

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert_file, key_file, no_password)
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(
            "invalid configuration: TLS_CERT_FILE and TLS_KEY_FILE: not a PEM certificate with its "
            f"matching, unencrypted private key ({exc})"
        ) from None


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
    """Drop a dead worker's live gauges and its exemplars (its counters still count)."""
    # Imported here: prometheus_client picks multiprocess mode from the environment on import.
    from prometheus_client import multiprocess  # noqa: PLC0415

    from flotilla_kit.exemplars import forget_worker  # noqa: PLC0415

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        forget_worker(directory, pid)
