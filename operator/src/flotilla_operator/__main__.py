"""``python -m flotilla_operator [run|install-crd]``."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys

import kopf

from flotilla_operator.crd import CRD_NAME, apply_crd
from flotilla_operator.settings import ConfigError, OperatorSettings


def install_crd() -> None:
    """Server-side apply the CRD and wait until it is served."""
    from flotilla_operator.handlers import api_client  # noqa: PLC0415 - reads settings on import

    try:
        apply_crd(api_client())
    except TimeoutError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"CustomResourceDefinition {CRD_NAME} applied and established")


def run() -> None:
    """Run the operator against the cluster of the current credentials."""
    settings = OperatorSettings.load()
    import flotilla_operator.handlers  # noqa: F401, PLC0415 - registers the handlers

    namespaces = [settings.namespace] if settings.namespace else []
    kopf.configure(log_format=kopf.LogFormat.JSON, log_prefix=True)
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # no line per handled event
    kopf.run(
        standalone=True,
        # kopf's default identity asks the passwd database for the user, and the image's
        # numeric user 10001 has no entry there: the pod's name and the pid identify us.
        identity=f"{socket.gethostname()}/{os.getpid()}",  # type: ignore[arg-type]  # a NewType of str
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=f"http://0.0.0.0:{settings.liveness_port}/healthz",
    )


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="flotilla-operator", description=__doc__)
    parser.add_argument("command", nargs="?", default="run", choices=["run", "install-crd"])
    arguments = parser.parse_args()
    try:
        install_crd() if arguments.command == "install-crd" else run()
    except ConfigError as exc:
        print(f"error: invalid configuration: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
