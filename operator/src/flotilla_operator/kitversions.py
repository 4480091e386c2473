"""Which kit each service runs on, as its pods report it to Prometheus (``flotilla_kit_info``).

Every pod of a service on the kit exports ``flotilla_kit_info{version="..."} 1``; the
ServiceMonitor labels it with the namespace and the Service (``job``, the Microservice's name).
One query a resync reads them all, and each Microservice's status gets ``kitVersion``: its
pods' versions, several while a release runs two images. The operator does not call the
services: Prometheus, which every service's NetworkPolicy admits, already does.
"""

from __future__ import annotations

import threading
from collections import defaultdict

from flotilla_operator.prometheus import Prometheus

Key = tuple[str, str]  # (namespace, name)
QUERY = "max by (namespace, job, version) (flotilla_kit_info)"


class KitVersions:
    """The kit versions last read, by Microservice."""

    def __init__(self) -> None:
        self._versions: dict[Key, str] = {}
        self._lock = threading.Lock()

    def refresh(self, prometheus: Prometheus) -> None:
        """Read every service's versions (the next reconcile of each writes its status)."""
        found: dict[Key, set[str]] = defaultdict(set)
        for labels in prometheus.series(QUERY):
            if {"namespace", "job", "version"} <= labels.keys():
                found[(labels["namespace"], labels["job"])].add(labels["version"])
        versions = {key: ", ".join(sorted(values)) for key, values in found.items()}
        with self._lock:
            self._versions = versions

    def version(self, key: Key) -> str | None:
        """The versions of ``key``'s pods (``0.1.0``, or ``0.1.0, 0.2.0`` mid-release); None: not seen."""
        with self._lock:
            return self._versions.get(key)
