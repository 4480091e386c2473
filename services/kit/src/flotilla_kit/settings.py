"""Configuration from environment variables, validated once at start-up."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from environs import Env, EnvError, EnvValidationError
from marshmallow import ValidationError
from marshmallow.validate import OneOf, Range, Regexp


class ConfigError(RuntimeError):
    """A missing or invalid environment variable; the message names it."""


DEVELOPMENT = "development"
PRODUCTION = "production"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def read_env() -> Env:
    """A reader of the process environment that collects every error before raising."""
    return Env(eager=False, expand_vars=False)


def secret(env: Env, name: str, default: str | None = None, validate: Any = None) -> str | None:
    """A secret setting: variable ``name``, file ``<name>_FILE``, file ``$FLOTILLA_SECRETS_DIR/<name>``.

    Files (a mounted Secret) keep secrets out of the container's environment, which child
    processes, crash reports and ``kubectl describe`` show. A value from a file is validated too.
    """
    if name in os.environ:
        if f"{name}_FILE" in os.environ:
            raise ConfigError(f"invalid configuration: {name} and {name}_FILE: set one, not both")
        value: str | None = env.str(name, default, validate=validate)
        return value
    path = os.environ.get(f"{name}_FILE") or _in_secrets_dir(name)
    if path is None:
        return default
    try:
        value = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"invalid configuration: {name}_FILE: cannot read {path!r} ({exc})") from None
    for check in validate if isinstance(validate, list | tuple) else [validate] if validate else []:
        try:
            check(value)
        except ValidationError as exc:
            raise ConfigError(
                f"invalid configuration: {name} (from {path}): {' '.join(exc.messages)}"
            ) from None
    return value


def _in_secrets_dir(name: str) -> str | None:
    directory = os.environ.get("FLOTILLA_SECRETS_DIR")
    candidate = Path(directory) / name if directory else None
    return str(candidate) if candidate and candidate.is_file() else None


def finish(env: Env) -> None:
    """Raise one ``ConfigError`` naming every missing or invalid variable."""
    try:
        env.seal()
    except EnvValidationError as exc:
        messages = exc.error_messages
        if isinstance(messages, Mapping):
            problems = "; ".join(f"{name}: {' '.join(text)}" for name, text in messages.items())
        else:
            problems = "; ".join(messages)
        raise ConfigError(f"invalid configuration: {problems}") from None
    except EnvError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None


def readable_file(value: str) -> None:
    """Validator: ``value`` names a file this process can read."""
    if not (Path(value).is_file() and os.access(value, os.R_OK)):
        raise ValidationError(f"{value!r} is not a readable file")


API_DOCS_PATH = Regexp(
    r"^(/[-a-z0-9_.]+)+$",
    error="must be a path of lower-case letters, digits, '-', '_' and '.', without a trailing slash",
)


def parse_networks(value: str) -> tuple[Network, ...]:
    """Comma-separated addresses or CIDR blocks, IPv4 or IPv6 (``10.0.0.0/8, ::1``).

    A bad entry raises ``ValidationError`` naming it; host bits set (``10.0.0.1/8``) make one.
    """
    networks = []
    for entry in (part.strip() for part in value.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry))
        except ValueError as exc:
            raise ValidationError(f"bad entry {entry!r}: {exc}") from None
    return tuple(networks)


def ip_networks(value: str) -> None:
    """Validator: ``value`` is a list of addresses and CIDR blocks (``parse_networks``)."""
    parse_networks(value)


CRASH_AT_START_MESSAGE = (
    "FAULT_CRASH_AT_START is true: this release crashes at start on purpose "
    "(a fault injected for canary tests and demos); unset it to start"
)


@dataclass(frozen=True)
class FaultSettings:
    """Faults injected on purpose (``FAULT_*``) to make a bad release for canary tests and demos.

    All off by default; ``flotilla_kit.faults`` applies them.
    """

    error_ratio: float = 0.0
    delay_seconds: float = 0.0
    delay_ratio: float = 1.0
    not_ready: bool = False
    crash_at_start: bool = False

    @classmethod
    def from_env(cls, env: Env) -> FaultSettings:
        """Read the ``FAULT_*`` variables; ``finish(env)`` reports the bad ones."""
        share = Range(min=0, max=1)
        return cls(
            error_ratio=env.float("FAULT_ERROR_RATIO", 0.0, validate=share),
            delay_seconds=env.float("FAULT_DELAY_SECONDS", 0.0, validate=Range(min=0, max=300)),
            delay_ratio=env.float("FAULT_DELAY_RATIO", 1.0, validate=share),
            not_ready=env.bool("FAULT_NOT_READY", False),
            crash_at_start=env.bool("FAULT_CRASH_AT_START", False),
        )

    def active(self) -> dict[str, str]:
        """The variables of the faults switched on, with their values; empty when none is."""
        active: dict[str, str] = {}
        if self.error_ratio > 0:
            active["FAULT_ERROR_RATIO"] = f"{self.error_ratio:g}"
        if self.delay_seconds > 0 and self.delay_ratio > 0:
            active["FAULT_DELAY_SECONDS"] = f"{self.delay_seconds:g}"
            active["FAULT_DELAY_RATIO"] = f"{self.delay_ratio:g}"
        if self.not_ready:
            active["FAULT_NOT_READY"] = "true"
        if self.crash_at_start:
            active["FAULT_CRASH_AT_START"] = "true"
        return active

    def describe(self) -> str:
        """``FAULT_ERROR_RATIO=0.2, FAULT_NOT_READY=true``: the faults switched on, for a log line."""
        return ", ".join(f"{name}={value}" for name, value in self.active().items())


# OpenTelemetry's standard sampler names (OTEL_TRACES_SAMPLER). The SDK would log a warning and
# sample everything on a misspelt name; the kit refuses to start instead, naming the variable.
SAMPLER_NAMES = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
DEFAULT_SAMPLER = "parentbased_always_on"
_TRUE = {"true", "1", "yes", "on"}


@dataclass(frozen=True)
class TracingSettings:
    """Whether spans are exported, and which are sampled."""

    exporting: bool
    sampler_name: str
    ratio: float

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> TracingSettings:
        """Read OpenTelemetry's variables; a bad sampler or ratio raises ``ConfigError`` naming it."""
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        exporter = env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
        if exporter not in {"otlp", "none"}:
            raise ConfigError(
                f"invalid configuration: OTEL_TRACES_EXPORTER: {exporter!r} is not one of otlp, none"
            )
        disabled = env.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE
        sampler_name = env.get("OTEL_TRACES_SAMPLER", DEFAULT_SAMPLER).strip().lower()
        if sampler_name not in SAMPLER_NAMES:
            raise ConfigError(
                f"invalid configuration: OTEL_TRACES_SAMPLER: {sampler_name!r} is not one of "
                + ", ".join(SAMPLER_NAMES)
            )
        return cls(
            exporting=bool(endpoint) and exporter == "otlp" and not disabled,
            sampler_name=sampler_name,
            ratio=_ratio(env.get("OTEL_TRACES_SAMPLER_ARG")),
        )


def _ratio(raw: str | None) -> float:
    if raw is None or not raw.strip():
        return 1.0
    try:
        ratio = float(raw)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise ConfigError(
            f"invalid configuration: OTEL_TRACES_SAMPLER_ARG: {raw!r} is not a number from 0 to 1"
        )
    return ratio


@dataclass(frozen=True)
class KitSettings:
    """Settings every service shares."""

    service_name: str
    environment: str
    log_level: str
    data_dir: Path
    database_url: str
    database_wait_seconds: float
    max_content_length: int
    jwt_issuer: str
    jwt_audience: str
    jwks_url: str | None
    ca_bundle: str | None
    http_timeout_seconds: float
    http_retries: int
    circuit_failure_threshold: int
    circuit_reset_seconds: float
    trusted_proxies: tuple[Network, ...]
    api_docs_path: str | None
    revocations_url: str | None
    revocation_refresh_seconds: float
    revocation_max_staleness_seconds: float
    faults: FaultSettings
    tracing: TracingSettings

    @property
    def is_development(self) -> bool:
        """True when running on the embedded development defaults."""
        return self.environment == DEVELOPMENT

    @classmethod
    def fields_from(cls, env: Env, service_name: str) -> dict[str, Any]:
        """Read the shared variables; ``finish(env)`` reports every problem at once."""
        data_dir = Path(env.str("FLOTILLA_DATA_DIR", ".flotilla")).resolve()
        return {
            "service_name": service_name,
            "environment": env.str("FLOTILLA_ENV", DEVELOPMENT, validate=OneOf([DEVELOPMENT, PRODUCTION])),
            "log_level": env.str(
                "LOG_LEVEL",
                "INFO",
                validate=OneOf(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]),
            ),
            "data_dir": data_dir,
            "database_url": secret(env, "DATABASE_URL", f"sqlite:///{data_dir / (service_name + '.db')}"),
            # How long `migrate` waits for the database to answer (a fresh PostgreSQL starts slowly).
            "database_wait_seconds": env.float(
                "DATABASE_WAIT_SECONDS", 120.0, validate=Range(min=0, max=3600)
            ),
            "max_content_length": env.int("MAX_CONTENT_LENGTH", 64 * 1024, validate=Range(min=1024)),
            "jwt_issuer": env.str("JWT_ISSUER", "flotilla-users"),
            "jwt_audience": env.str("JWT_AUDIENCE", "flotilla"),
            "jwks_url": env.str("JWKS_URL", None),
            # Verification cannot be switched off: only another CA bundle file may replace the roots.
            "ca_bundle": env.str("TLS_CA_FILE", None, validate=readable_file),
            "http_timeout_seconds": env.float("HTTP_TIMEOUT_SECONDS", 2.0, validate=Range(min=0.05, max=300)),
            "http_retries": env.int("HTTP_RETRIES", 2, validate=Range(min=0, max=10)),
            "revocations_url": env.str("REVOCATIONS_URL", None),
            "revocation_refresh_seconds": env.float(
                "REVOCATION_REFRESH_SECONDS", 5.0, validate=Range(min=0.1, max=300)
            ),
            "revocation_max_staleness_seconds": env.float(
                "REVOCATION_MAX_STALENESS_SECONDS", 60.0, validate=Range(min=0, max=3600)
            ),
            "circuit_failure_threshold": env.int("CIRCUIT_FAILURE_THRESHOLD", 5, validate=Range(min=1)),
            "circuit_reset_seconds": env.float("CIRCUIT_RESET_SECONDS", 10.0, validate=Range(min=0.1)),
            # Proxies whose X-Forwarded-For names the client (the ingress controller's pods).
            "trusted_proxies": parse_networks(env.str("TRUSTED_PROXIES", "", validate=ip_networks) or ""),
            # The interactive API page; the operator sets the path it routes, /docs/<Microservice>.
            "api_docs_path": env.str("API_DOCS_PATH", f"/docs/{service_name}", validate=API_DOCS_PATH)
            if env.bool("API_DOCS", True)
            else None,
            "faults": FaultSettings.from_env(env),
            # OpenTelemetry's own variables (OTEL_*), read as its SDK reads them.
            "tracing": TracingSettings.from_env(),
        }

    @classmethod
    def load(cls, service_name: str) -> KitSettings:
        """Settings of a service that needs nothing beyond the shared ones."""
        env = read_env()
        fields = cls.fields_from(env, service_name)
        finish(env)
        return cls(**fields)
