"""kopf's warning about watched kinds with no CRD, as INFO when every one of them is optional.

The operator watches every kind of child it writes (``kube.CHILD_KINDS``), a ServiceMonitor's
and Traefik's among them. kopf warns at start, and on every CRD change, that a kind whose CRD is
missing "cannot be served"; for the optional kinds (``kube.OPTIONAL_KINDS``) that is expected,
and kopf starts watching each once its CRD appears.
"""

from __future__ import annotations

import logging
import re

from flotilla_operator.kube import OPTIONAL_KINDS

KOPF_OBSERVATION_LOGGER = "kopf._core.reactor.observation"
_UNRESOLVED = "Unresolved resources cannot be served"
_KIND = re.compile(r"any_name='([^']+)'")


class OptionalKindsUnresolved(logging.Filter):
    """Lower kopf's "unresolved resources" warning to INFO when it names optional kinds only."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.levelno == logging.WARNING and message.startswith(_UNRESOLVED):
            kinds = set(_KIND.findall(message))
            if kinds and kinds <= OPTIONAL_KINDS.keys():
                record.levelno, record.levelname = logging.INFO, "INFO"
                record.msg = (
                    f"optional kinds not installed, watched once their CRDs are: {', '.join(sorted(kinds))}"
                )
                record.args = ()
        return True


def install() -> None:
    """Attach the filter to kopf's logger of resource observation."""
    logging.getLogger(KOPF_OBSERVATION_LOGGER).addFilter(OptionalKindsUnresolved())
