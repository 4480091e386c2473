"""The newest version of each Microservice the operator has seen, and its body when it has it.

Versions come from the watch's events and from the operator's own writes. The body is kept from
the watch, as compact JSON without ``managedFields`` (about 2 kB each, where the parsed dict
would cost ten times that). A reconcile starts from the kept body only while it is the newest
version seen: a status the operator wrote a moment ago and the watch has not delivered yet means
a read from the API server. Without this, every event of a child (a Deployment's status moving
on) cost a GET of its Microservice.
"""

from __future__ import annotations

import json
import threading
from typing import Any

Key = tuple[str, str]  # (namespace, name)


def key_and_version(ms: dict[str, Any]) -> tuple[Key, str]:
    """A Microservice's (namespace, name) and its resourceVersion ("" when it has none)."""
    metadata = ms.get("metadata") or {}
    key = (str(metadata.get("namespace")), str(metadata.get("name")))
    return key, str(metadata.get("resourceVersion") or "")


def _behind(version: str, known: str | None) -> bool:
    """Whether ``version`` is older than ``known`` (resourceVersions are etcd revisions)."""
    try:
        return known is not None and int(version) < int(known)
    except ValueError:
        return False  # not numbers: no order to rely on, the later word wins


class Latest:
    """Newest versions and kept bodies, by (namespace, name); safe across threads."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._versions: dict[Key, str] = {}
        self._bodies: dict[Key, tuple[str, bytes]] = {}  # version, compact JSON

    def __len__(self) -> int:
        with self._guard:
            return len(self._bodies)

    def seen(self, ms: dict[str, Any]) -> None:
        """A version of ``ms`` exists (the operator wrote it, or an event showed it)."""
        key, version = key_and_version(ms)
        if version:
            with self._guard:
                if not _behind(version, self._versions.get(key)):
                    self._versions[key] = version

    def delivered(self, ms: dict[str, Any]) -> None:
        """The watch delivered ``ms``: its version is seen and its body kept."""
        key, version = key_and_version(ms)
        if not version:
            return
        metadata = {k: v for k, v in (ms.get("metadata") or {}).items() if k != "managedFields"}
        body = json.dumps({**ms, "metadata": metadata}, separators=(",", ":")).encode()
        with self._guard:
            if not _behind(version, self._versions.get(key)):  # a watch behind the operator's writes
                self._versions[key] = version
            self._bodies[key] = (version, body)

    def forget(self, key: Key) -> None:
        """The Microservice is gone."""
        with self._guard:
            self._versions.pop(key, None)
            self._bodies.pop(key, None)

    def if_newest(self, ms: dict[str, Any] | None) -> dict[str, Any] | None:
        """``ms`` when it is the newest version seen of it, else None (read it)."""
        if ms is None:
            return None
        key, version = key_and_version(ms)
        with self._guard:
            return ms if version and self._versions.get(key) == version else None

    def body(self, key: Key) -> dict[str, Any] | None:
        """The kept body of ``key`` when it is the newest version seen, else None (read it)."""
        with self._guard:
            version, body = self._bodies.get(key, ("", b""))
            if not version or self._versions.get(key) != version:
                return None
        found: dict[str, Any] = json.loads(body)
        return found
