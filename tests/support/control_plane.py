"""The processes of the local control plane (scripts/cluster/up.sh), for fault tests.

up.sh starts each component in a session of its own, its pid in ``.cluster/pids/NAME.pid`` and
its output in ``.cluster/logs/NAME.log``; a component restarted here keeps to that layout, so
``make cluster-down`` stops the new process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml

from tests.support.kube import LOCAL_KUBECONFIG, kubeconfig_path

STATE = LOCAL_KUBECONFIG.parent
PIDS, LOGS, PKI = STATE / "pids", STATE / "logs", STATE / "pki"
# Restarted components are children of the test process: kept here, never garbage-collected
# (a collected Popen of a live process warns).
_STARTED: list[subprocess.Popen[bytes]] = []


@dataclass(frozen=True)
class Restart:
    """One restart: how long the old process took to stop, and the new one to answer /readyz."""

    old_pid: int
    new_pid: int
    stopped_in: float
    killed: bool
    """Whether the old process needed SIGKILL (it closes its port at once, then may linger)."""
    ready_in: float
    ready_at: float
    """``time.monotonic()`` when /readyz first answered 200."""


def _server(kubeconfig: Path) -> str:
    config = yaml.safe_load(kubeconfig.read_text())
    return str(config["clusters"][0]["cluster"]["server"])


def is_local() -> bool:
    """Whether the tests' cluster is the one ``make cluster-up`` runs on this machine."""
    used = kubeconfig_path()
    if not LOCAL_KUBECONFIG.is_file() or not used.is_file():
        return False
    return used.resolve() == LOCAL_KUBECONFIG.resolve() or _server(used) == _server(LOCAL_KUBECONFIG)


def _pid(name: str) -> int:
    path = PIDS / f"{name}.pid"
    if not path.is_file():
        raise RuntimeError(f"no {path}: is the local cluster up ('make cluster-up')?")
    pid = int(path.read_text().strip())
    if not _running(pid):
        raise RuntimeError(f"{name} (pid {pid}) is not running: see {LOGS / name}.log")
    return pid


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _nul_separated(path: Path) -> list[str]:
    return [part.decode() for part in path.read_bytes().split(b"\0") if part]


def api_ready(timeout: float = 2) -> bool:
    """Whether the API server's /readyz answers 200 (as up.sh asks it, with the admin's certificate)."""
    try:
        response = requests.get(
            f"{_server(LOCAL_KUBECONFIG)}/readyz",
            cert=(str(PKI / "admin.crt"), str(PKI / "admin.key")),
            verify=str(PKI / "ca.crt"),
            timeout=timeout,
        )
    except requests.RequestException:
        return False
    return response.status_code == 200


def restart_component(name: str, stop: float = 10) -> tuple[int, subprocess.Popen[bytes], float, bool]:
    """Stop a running component (SIGTERM, SIGKILL after ``stop`` s) and start it again.

    The new process gets the same executable, command line, environment and working directory.
    Returns (old pid, new process, seconds to stop, whether it took SIGKILL).
    """
    pid = _pid(name)
    proc = Path(f"/proc/{pid}")
    command = _nul_separated(proc / "cmdline")
    # A binary rebuilt since the start reads "PATH (deleted)": the same command runs the new one.
    executable = os.readlink(proc / "exe").removesuffix(" (deleted)")
    environment = dict(entry.split("=", 1) for entry in _nul_separated(proc / "environ") if "=" in entry)
    directory = os.readlink(proc / "cwd")
    began = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    deadline, killed = began + stop, False
    while _running(pid):
        if time.monotonic() > deadline and not killed:
            os.kill(pid, signal.SIGKILL)
            killed = True
        time.sleep(0.05)
    stopped_in = time.monotonic() - began
    with (LOGS / f"{name}.log").open("ab") as log:
        log.write(f"\n--- restarted by the tests at {time.strftime('%H:%M:%S')} ---\n".encode())
        log.flush()
        process = subprocess.Popen(
            [executable, *command[1:]],
            env=environment,
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _STARTED.append(process)
    pid_file = PIDS / f"{name}.pid"
    pid_file.with_suffix(".new").write_text(f"{process.pid}\n")
    pid_file.with_suffix(".new").replace(pid_file)
    return pid, process, stopped_in, killed


def restart_apiserver(ready_timeout: float = 120) -> Restart:
    """Restart the local kube-apiserver with its own command line; return once /readyz answers.

    It stops listening as soon as it gets SIGTERM, but its HTTP server then waits up to a minute
    for open watch streams: after 10 s it is killed (as a kubelet would, with a short grace period).
    """
    if not is_local():
        raise RuntimeError(f"{kubeconfig_path()} is not the local cluster's kubeconfig")
    old_pid, process, stopped_in, killed = restart_component("kube-apiserver")
    started_at = time.monotonic()
    deadline = started_at + ready_timeout
    while not api_ready():
        if process.poll() is not None:
            raise RuntimeError(f"kube-apiserver exited ({process.returncode}): {_tail('kube-apiserver')}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"kube-apiserver not ready in {ready_timeout}s: {_tail('kube-apiserver')}")
        time.sleep(0.1)
    ready_at = time.monotonic()
    return Restart(old_pid, process.pid, stopped_in, killed, ready_at - started_at, ready_at)


def _tail(name: str, lines: int = 30) -> str:
    text = (LOGS / f"{name}.log").read_text(errors="replace")
    return "\n".join(text.splitlines()[-lines:])
