"""The operator's configuration, from environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from flotilla_operator.render import INGRESS_NAMESPACE, PROMETHEUS_NAMESPACE


class ConfigError(RuntimeError):
    """A bad environment variable; the message names it."""


def _number(name: str, default: float, minimum: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: not a number: {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name}: must be at least {minimum}")
    return value


def _whole(name: str, default: int, minimum: int) -> int:
    """A whole number (a Lease's duration is an int32 of seconds: "10.0" was 10.0, which it refused)."""
    value = _number(name, default, minimum)
    if not float(value).is_integer():
        raise ConfigError(f"{name}: must be a whole number of seconds, not {value}")
    return int(value)


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"{name}: must be true or false, not {raw!r}")
    return raw in ("true", "1", "yes")


def _url(name: str) -> str | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    if not raw.startswith(("http://", "https://")):
        raise ConfigError(f"{name}: must be an http:// or https:// URL, not {raw!r}")
    return raw


SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_LEASE_NAME = "flotilla-operator"


def _lease_namespace() -> str:
    """Where the Lease lives: as set, else the pod's own namespace, else ``default``."""
    for name in ("FLOTILLA_OPERATOR_LEASE_NAMESPACE", "POD_NAMESPACE"):
        if os.environ.get(name):
            return os.environ[name]
    if SERVICE_ACCOUNT_NAMESPACE.is_file():
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    return "default"


@dataclass(frozen=True)
class OperatorSettings:
    """How often to resync, how many workers, where to serve health and metrics."""

    resync_seconds: float
    workers: int
    metrics_port: int
    liveness_port: int
    namespace: str | None
    watch_timeout_seconds: float
    crd_cache_seconds: float
    apply_crd: bool
    ingress_namespace: str
    prometheus_namespace: str
    prometheus_url: str | None
    leader_election: bool
    lease_name: str
    lease_namespace: str
    lease_seconds: int
    watch_grace_seconds: float
    heap_profile: bool

    @classmethod
    def load(cls) -> OperatorSettings:
        """Read FLOTILLA_* and WATCH_NAMESPACE; raise ``ConfigError`` naming a bad one."""
        return cls(
            resync_seconds=_number("FLOTILLA_OPERATOR_RESYNC_SECONDS", 60, 1),
            workers=int(_number("FLOTILLA_OPERATOR_WORKERS", 8, 1)),
            metrics_port=int(_number("FLOTILLA_OPERATOR_METRICS_PORT", 9090, 1)),
            liveness_port=int(_number("FLOTILLA_OPERATOR_LIVENESS_PORT", 8080, 1)),
            namespace=os.environ.get("WATCH_NAMESPACE") or None,
            watch_timeout_seconds=_number("FLOTILLA_OPERATOR_WATCH_TIMEOUT_SECONDS", 300, 10),
            crd_cache_seconds=_number("FLOTILLA_OPERATOR_CRD_CACHE_SECONDS", 30, 0),
            # Off where the operator may not write CRDs: then whoever installs it upgrades the CRD.
            apply_crd=_flag("FLOTILLA_OPERATOR_APPLY_CRD", True),
            # Where the ingress controller and Prometheus run: their pods may call every service.
            ingress_namespace=os.environ.get("FLOTILLA_INGRESS_NAMESPACE") or INGRESS_NAMESPACE,
            prometheus_namespace=os.environ.get("FLOTILLA_PROMETHEUS_NAMESPACE") or PROMETHEUS_NAMESPACE,
            # Where canary analysis reads the kit's metrics; unset: readiness and restarts only.
            prometheus_url=_url("FLOTILLA_PROMETHEUS_URL"),
            # One replica reconciles at a time, the holder of a coordination.k8s.io Lease.
            leader_election=_flag("FLOTILLA_OPERATOR_LEADER_ELECTION", True),
            lease_name=os.environ.get("FLOTILLA_OPERATOR_LEASE_NAME") or DEFAULT_LEASE_NAME,
            lease_namespace=_lease_namespace(),
            # A standby takes over this long after the leader's last renewal.
            lease_seconds=_whole("FLOTILLA_OPERATOR_LEASE_SECONDS", 10, 6),
            # How long a watch stream may owe a change it should have delivered.
            watch_grace_seconds=_number("FLOTILLA_OPERATOR_WATCH_GRACE_SECONDS", 20, 1),
            # Trace allocations and serve them on /debug/heap (liveness port): costs memory.
            heap_profile=_flag("FLOTILLA_OPERATOR_HEAP_PROFILE", False),
        )
