"""``python -m flotilla_operator [run|install-crd]``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any

import kopf
from prometheus_client import start_http_server

from flotilla_operator.crd import CRD_NAME, apply_crd
from flotilla_operator.health import serve_health
from flotilla_operator.heap import heap_report, start_tracing
from flotilla_operator.leadership import Election
from flotilla_operator.malloc import fix_mmap_threshold, limit_arenas
from flotilla_operator.metrics import set_leading
from flotilla_operator.settings import ConfigError, OperatorSettings
from flotilla_operator.supervisor import Carried, Supervisor


def install_crd() -> None:
    """Server-side apply the CRD and wait until it is served."""
    from flotilla_operator.handlers import api_client  # noqa: PLC0415 - reads settings on import

    try:
        apply_crd(api_client())
    except TimeoutError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"CustomResourceDefinition {CRD_NAME} applied and established")


def run() -> None:
    """Run the operator against the cluster of the current credentials.

    With leader election (the default), wait as a standby until this replica holds the Lease.
    """
    limit_arenas()  # before the threads start: each would otherwise get an arena of its own
    fix_mmap_threshold()
    settings = OperatorSettings.load()
    carried = Carried.load()
    from flotilla_operator import handlers  # noqa: PLC0415 - registers the handlers

    kopf.configure(log_format=kopf.LogFormat.JSON, log_prefix=True)
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # no line per handled event
    carried.restore_metrics()
    start_http_server(settings.metrics_port)
    election = (
        Election(
            handlers.api_client(),
            settings.lease_name,
            settings.lease_namespace,
            carried.identity,
            settings.lease_seconds,
        )
        if settings.leader_election
        else None
    )
    supervisor = Supervisor(carried, handlers.WATCHES, election)
    serve_health(settings.liveness_port, supervisor.report, {"/debug/heap": heap_report})
    terminating = handlers.STOP
    if election is not None:
        if not _wait_for_lease(election, terminating):
            return
        handlers.lead_with(election)
    else:
        set_leading(True)  # the only replica, reconciling
    supervisor.start()
    if settings.heap_profile:
        start_tracing()  # what the modules imported so far hold is the floor, measured apart
    namespaces = [settings.namespace] if settings.namespace else []
    try:
        kopf.run(
            standalone=True,
            identity=carried.identity,  # type: ignore[arg-type]  # a NewType of str
            clusterwide=not namespaces,
            namespaces=namespaces,
            stop_flag=terminating,
        )
    finally:
        if election is not None:
            election.release()


def _wait_for_lease(election: Election, terminating: threading.Event) -> bool:
    """Campaign until this replica leads (True), or until SIGTERM or SIGINT (False)."""

    def stop(signum: int, _: Any) -> None:
        terminating.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    logging.getLogger("flotilla.operator").info(
        "standing by for the Lease", extra={"identity": election.identity, "lease": election.lease}
    )
    election.start()
    while not election.leading.wait(0.5):
        if terminating.is_set():
            election.release()
            return False
    return True


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
