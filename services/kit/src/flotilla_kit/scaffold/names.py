"""Which names a new service may take: what each name becomes must be valid and unique."""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterable

DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?")
"""A service's name: a Kubernetes name (RFC 1035 label), short enough for the names made from it.

scripts/services.py checks every entry of the services map with it."""

# Paths every service serves itself: a service named so would route them away from the others.
RESERVED = frozenset({"kit", "docs", "livez", "readyz", "metrics", "openapi"})


class BadName(ValueError):
    """A name a new service cannot take; the message says why."""


def module_name(name: str) -> str:
    """The service's Python package, ``flotilla_<name>`` with ``-`` as ``_``."""
    return f"flotilla_{name.replace('-', '_')}"


def check_name(name: str, taken: Iterable[str]) -> None:
    """Raise ``BadName`` unless ``name`` can be a new service's."""
    if not DNS_LABEL.fullmatch(name):
        raise BadName(
            f"{name!r} is not a DNS label: lower-case letters, digits and '-', starting with a letter, "
            "not ending with '-', at most 40 characters"
        )
    python_name = name.replace("-", "_")
    if keyword.iskeyword(python_name):
        raise BadName(f"{name!r} is a Python keyword: its package and variables could not be named after it")
    if name in RESERVED:
        raise BadName(f"{name!r} is reserved: every service serves /{name} itself")
    clashes = {other for other in taken if other.replace("-", "_") == python_name}
    if clashes:
        raise BadName(f"{name!r} clashes with the existing service {sorted(clashes)[0]!r}")
