"""kopf's diff base, switched off: the operator registers no on.create/on.update handlers.

For every event of every watched kind, kopf builds the object's "essence" (a deep copy of the
whole body) and a progress-free copy of it, then diffs it against the one stored in an
annotation, whether or not a handler will read the diff. Only changing handlers (on.create,
on.update, on.delete, on.resume) and daemons or timers read it. With none registered, this
storage keeps and builds nothing; ``needing_a_diff`` lets a test prove none is registered.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import kopf


class NoDiffBase(kopf.DiffBaseStorage):
    """A diff base that is always empty and never stored."""

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def needing_a_diff(registry: kopf.OperatorRegistry) -> list[str]:
    """The ids of the handlers in ``registry`` that read kopf's diff (changing ones, daemons)."""
    found = [*registry._changing.get_all_handlers(), *registry._spawning.get_all_handlers()]
    return [str(handler.id) for handler in found]
