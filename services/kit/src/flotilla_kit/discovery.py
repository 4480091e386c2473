"""Where another service lives: ``<NAME>_URL`` when set, else its Kubernetes DNS name."""

from __future__ import annotations

import os
from pathlib import Path

from flotilla_kit.settings import ConfigError

NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def current_namespace() -> str | None:
    """The pod's namespace: ``POD_NAMESPACE`` or the service-account file."""
    namespace = os.environ.get("POD_NAMESPACE")
    if namespace:
        return namespace
    if NAMESPACE_FILE.is_file():
        return NAMESPACE_FILE.read_text().strip() or None
    return None


def url_variable(name: str) -> str:
    """The variable that names service ``name``'s base URL: ``users`` -> ``USERS_URL``."""
    return f"{name.upper().replace('-', '_')}_URL"


def is_declared(name: str) -> bool:
    """Whether ``name``'s URL is given (the operator sets it for every ``dependsOn`` entry)."""
    return bool(os.environ.get(url_variable(name)))


def service_url(name: str) -> str:
    """The base URL of service ``name``, without a trailing slash."""
    variable = url_variable(name)
    explicit = os.environ.get(variable)
    if explicit:
        return explicit.rstrip("/")
    namespace = current_namespace()
    if namespace is None:
        raise ConfigError(
            f"{variable} is not set and no Kubernetes namespace was found "
            f"(POD_NAMESPACE or {NAMESPACE_FILE}): set {variable} to {name}'s base URL"
        )
    domain = os.environ.get("CLUSTER_DOMAIN", "cluster.local")
    scheme = os.environ.get("SERVICE_SCHEME", "http")
    return f"{scheme}://{name}.{namespace}.svc.{domain}"


def require_services(*names: str) -> None:
    """Fail at start-up, naming the variable, when a dependency cannot be located."""
    for name in names:
        service_url(name)
