"""`make dev` driven from Python: scripts/dev/dev.sh (skaffold dev, node profile) in a copy of the
repository, in a namespace and under an ingress host of its own, and the edits a developer makes.

tests/node/test_dev_loop.py and the dev-loop benchmark (tests/bench/dev_loop.py) share it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import requests
from kubernetes import client
from kubernetes.client import ApiClient

from tests.support.kube import BIN, ROOT, kubeconfig_path
from tests.support.node import GROUP, INGRESS_URL, PLURAL, VERSION

CATALOG_APP = Path("services/catalog/src/flotilla_catalog/app.py")
CATALOG_PROJECT = Path("services/catalog/pyproject.toml")
# The header the edits add to every catalog response: visible through the ingress.
MARK_HEADER = "X-Dev-Loop"
_MARK_BLOCK = """
    @app.after_request
    def dev_loop_mark(response: Response) -> Response:
        response.headers["{header}"] = "{token}"
        return response

    return app
"""


def mark_catalog(root: Path, token: str) -> None:
    """The catalog answers every request with ``X-Dev-Loop: token``: its app module, edited."""
    path = root / CATALOG_APP
    text = path.read_text()
    if MARK_HEADER in text:
        text = re.sub(rf'(headers\["{MARK_HEADER}"\] = )"[^"]*"', rf'\1"{token}"', text)
    else:
        head, tail = text.rsplit("\n    return app\n", 1)
        assert not tail.strip(), f"{CATALOG_APP} no longer ends with 'return app'"
        # The module has `from __future__ import annotations`: Response needs no import.
        text = head + _MARK_BLOCK.format(header=MARK_HEADER, token=token)
    path.write_text(text)


def serves_mark(get: Callable[[str], requests.Response | None], token: str) -> bool:
    """The catalog answers ``get`` (through the ingress) with ``token`` in its mark header."""
    answer = get("/products?limit=1")
    return answer is not None and answer.status_code == 200 and answer.headers.get(MARK_HEADER) == token


def touch_catalog_project(root: Path, token: str) -> None:
    """A change skaffold cannot sync (the catalog's pyproject.toml): a rebuild and a rollout."""
    path = root / CATALOG_PROJECT
    path.write_text(path.read_text() + f"# dev loop {token}\n")


@dataclass
class DevLoop:
    """``make dev`` in ``root`` (a copy of the repository), on the real node."""

    kube: ApiClient
    root: Path
    namespace: str
    host: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    session: requests.Session = field(default_factory=requests.Session)
    _log: IO[bytes] | None = None

    def environment(self) -> dict[str, str]:
        """This checkout's cluster, virtualenv and tools; the copy's namespace and host."""
        return {
            **os.environ,
            "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "KUBECONFIG": str(kubeconfig_path()),
            "FLOTILLA_CLUSTER_DIR": str(ROOT / ".cluster"),
            "FLOTILLA_VENV": str(ROOT / ".venv"),
            "FLOTILLA_NAMESPACE": self.namespace,
            "FLOTILLA_INGRESS_HOST": self.host,
            "SKAFFOLD_UPDATE_CHECK": "false",
        }

    def start(self) -> None:
        """scripts/dev/dev.sh in the copy, its output in ``log_path``; no port forwards (they
        would take 8001-8003 from a `make run` of the user)."""
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [str(self.root / "scripts" / "dev" / "dev.sh"), "--port-forward=off"],
            cwd=self.root,
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 300) -> int:
        """Ctrl-C: SIGINT to skaffold (dev.sh execs it), which removes the release; its exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(30)
        if self._log is not None:
            self._log.close()
        return int(self.process.returncode)

    def get(self, path: str) -> requests.Response | None:
        """GET through the ingress under this loop's host; None when nothing answers."""
        try:
            return self.session.get(f"{INGRESS_URL}{path}", headers={"Host": self.host}, timeout=10)
        except requests.RequestException:
            return None

    def wait(
        self, condition: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.2
    ) -> float:
        """Poll ``condition`` until it holds; the monotonic time it did. Fails at once, with
        skaffold's last lines, when skaffold has exited."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return time.monotonic()
            if not self.running():
                raise AssertionError(f"skaffold exited while waiting for {what}:\n{self.tail()}")
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}:\n{self.tail()}")

    def microservices(self) -> list[dict[str, Any]]:
        listed: dict[str, Any] = client.CustomObjectsApi(self.kube).list_namespaced_custom_object(  # type: ignore[assignment]
            GROUP, VERSION, self.namespace, PLURAL
        )
        return list(listed["items"])

    def routed(self, names: set[str]) -> bool:
        """Every Microservice of ``names`` exists, and the first path of each routed one is
        answered by the service (JSON; the ingress's own 404 is plain text); /products is 200."""
        specs = {ms["metadata"]["name"]: ms["spec"] for ms in self.microservices()}
        if set(specs) != names:
            return False
        for spec in specs.values():
            paths = (spec.get("ingress") or {}).get("paths") or []
            answer = self.get(paths[0]) if paths else None
            if paths and (answer is None or "json" not in answer.headers.get("Content-Type", "")):
                return False
        products = self.get("/products?limit=1")
        return products is not None and products.status_code == 200

    def serves_mark(self, token: str) -> bool:
        """The catalog answers through this loop's ingress host with ``token`` in its mark header."""
        return serves_mark(self.get, token)
