"""The kit's own version, as installed: what each service reports it runs on."""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "flotilla-kit"


@cache
def kit_version() -> str:
    """``0.1.0``; ``unknown`` when the kit runs from sources that were never installed."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"
