"""Run Flotilla services the way production does: their own CLI, under gunicorn."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import requests

BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_answering(
    url: str,
    process: subprocess.Popen[bytes],
    what: str,
    details: Callable[[], str],
    timeout: float = 60,
    verify: str | bool = True,
) -> None:
    """Poll ``url`` until it answers 200 while ``process`` lives; else a RuntimeError with ``details()``.

    ``verify``: the CA bundle that checks an HTTPS server's certificate.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited: {details()}")
        try:
            if requests.get(url, timeout=1, verify=verify).status_code == 200:
                return
        except requests.RequestException:
            pass  # not listening yet
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer {url} within {timeout}s: {details()}")


def run_cli(service: str, *args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``flotilla-<service> <args>`` to completion."""
    return subprocess.run(
        [str(BIN / f"flotilla-{service}"), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class ServiceProcess:
    """One service under gunicorn on a loopback port, its JSON logs in a file.

    ``command`` defaults to the service's own ``flotilla-<name> serve``. With ``TLS_CERT_FILE`` in
    ``env`` it serves HTTPS, checked against ``verify`` (default: the ``TLS_CA_FILE`` it trusts).
    """

    def __init__(
        self,
        name: str,
        env: Mapping[str, str],
        log_dir: Path,
        port: int | None = None,
        command: list[str] | None = None,
        verify: str | bool | None = None,
    ) -> None:
        self.name = name
        self.port = port or free_port()
        self.env = {**os.environ, **env, "PORT": str(self.port), "HOST": "127.0.0.1"}
        self.scheme = "https" if self.env.get("TLS_CERT_FILE") else "http"
        self.verify: str | bool = (self.env.get("TLS_CA_FILE") or True) if verify is None else verify
        self.log_path = log_dir / f"{name}-{self.port}.log"
        self.command = command or [str(BIN / f"flotilla-{name}"), "serve"]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL."""
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def migrate(self) -> None:
        """Run the service's migrations (and bootstrap) once."""
        result = run_cli(self.name, "migrate", env=self.env)
        assert result.returncode == 0, result.stderr

    def start(self, timeout: float = 60, until: str = "/readyz") -> ServiceProcess:
        """Start and wait until ``until`` answers 200."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until_answering(
            f"{self.url}{until}", self.process, self.name, self.log_tail, timeout, self.verify
        )
        return self

    def freeze(self) -> None:
        """SIGSTOP to every process of the service: it accepts connections and never answers."""
        assert self.process is not None and self.process.poll() is None
        os.killpg(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT: a frozen service goes on."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGCONT)

    def stop(self, timeout: float = 30) -> None:
        """Graceful stop (SIGTERM to the gunicorn master), then a kill if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        self.thaw()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def kill(self) -> None:
        """SIGKILL to every process of the service at once: a crash, no graceful anything."""
        assert self.process is not None and self.process.poll() is None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def pids(self) -> set[int]:
        """The gunicorn master and its workers now."""
        assert self.process is not None
        master = self.process.pid
        family = {master}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # gone meanwhile
            if int(fields[1]) == master:  # the parent's pid, after the state
                family.add(int(stat.parent.name))
        return family

    def restart(self) -> None:
        """Stop, then start on the same port."""
        self.stop()
        self.start()

    def log_tail(self, lines: int = 30) -> str:
        """The end of the log, for failure messages."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def log_lines(self) -> list[str]:
        """Every log line so far."""
        return self.log_path.read_text(errors="replace").splitlines()
