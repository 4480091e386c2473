"""``make run``, as the README says, in a copy of the repository with a service made by
``flotilla new`` for each combination of its choices: it serves them beside the others, and
Ctrl-C stops everything.

The copy makes its own virtualenv (``make run`` installs what it needs); it must never touch the
tests' own.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.support.new_service import CHOICES, copy_of_the_repository
from tests.support.processes import BIN, free_port

PLATFORM = ("users", "catalog", "orders")


@dataclass
class Running:
    root: Path
    process: subprocess.Popen[str]
    log: Path
    ports: dict[str, int]

    def output(self) -> str:
        return self.log.read_text()

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"


# `make run` with SIGINT as a terminal gives it: a shell started in the background ignores it,
# and bash cannot trap a signal ignored when it started (run.sh stops its services on Ctrl-C
# through a trap).
MAKE_RUN = (
    "import os, signal; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp('make', ['make', 'run'])"
)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    root = copy_of_the_repository(tmp_path_factory.mktemp("repository"))
    for name, (args, _database, _auth) in CHOICES.items():
        made = subprocess.run(
            [str(BIN / "flotilla"), "--root", str(root), "new", name, *args],
            capture_output=True,
            text=True,
            check=False,
        )
        assert made.returncode == 0, made.stderr
    ports = {service: free_port() for service in (*PLATFORM, *CHOICES)}
    env = {key: value for key, value in os.environ.items() if key not in {"FLOTILLA_VENV", "VIRTUAL_ENV"}}
    env.update({f"{service.upper().replace('-', '_')}_PORT": str(port) for service, port in ports.items()})
    log = root / "make-run.log"
    with log.open("w") as output:
        # Its own session: SIGINT to the group is a Ctrl-C in the terminal.
        process = subprocess.Popen(
            [sys.executable, "-c", MAKE_RUN], cwd=root, env=env, stdout=output, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )  # fmt: skip
    started = Running(root, process, log, ports)
    deadline = time.monotonic() + 600  # a cold virtualenv of the copy included
    while "press Ctrl-C to stop" not in started.output():
        assert process.poll() is None, started.output()[-3000:]
        assert time.monotonic() < deadline, started.output()[-3000:]
        time.sleep(1)
    yield started
    if process.poll() is None:  # Ctrl-C, as its test does: the script stops the services it started
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            # The services run in sessions of their own: stop them by their virtualenv's path.
            subprocess.run(["pkill", "-TERM", "-f", str(root / ".venv" / "bin")], check=False)


def test_make_run_lists_every_service_of_the_map_and_runs_the_example_flow(running: Running) -> None:
    output = running.output()
    for service, port in running.ports.items():
        assert re.search(rf"^  {service} +http://127\.0\.0\.1:{port} +\(API page: ", output, re.MULTILINE), (
            service
        )
    for name, (_args, database, _auth) in CHOICES.items():
        assert (f"{name}: database at the newest revision" in output) == database, name
    assert "the example flow failed" not in output
    assert '"status":"confirmed"' in output


def admin_token(running: Running) -> str:
    secrets = dict(
        line.split("=", 1)
        for line in (running.root / ".run/secrets.env").read_text().splitlines()
        if "=" in line
    )
    login = requests.post(
        f"{running.url('users')}/auth/login",
        json={"email": "admin@flotilla.local", "password": secrets["ADMIN_PASSWORD"]},
        timeout=10,
    )
    assert login.status_code == 200, login.text
    return str(login.json()["access_token"])


@pytest.mark.parametrize("name", list(CHOICES))
def test_each_new_service_serves_its_sample_resource(running: Running, name: str) -> None:
    _args, database, auth = CHOICES[name]
    service = running.url(name)
    checks = {"database": "ok"} if database else {}
    if auth:
        checks |= {"revocations": "ok", "signing_keys": "ok"}
    assert requests.get(f"{service}/readyz", timeout=10).json() == {"checks": checks, "status": "ok"}
    path, body = (
        (f"/{name}/items", {"name": "a kite"}) if database else (f"/{name}/greetings", {"name": "Ada"})
    )
    anonymous = requests.post(f"{service}{path}", json=body, timeout=10)
    if auth:
        assert anonymous.status_code == 401
        headers = {"Authorization": f"Bearer {admin_token(running)}"}
        answered = requests.post(f"{service}{path}", json=body, headers=headers, timeout=10)
    else:
        answered = anonymous
    assert answered.status_code == (201 if database else 200), answered.text
    if database:
        assert requests.get(f"{service}{path}", timeout=10).json()["items"] == [answered.json()]
    else:
        assert answered.json() == {"greeting": "Hello, Ada!"}
    assert requests.get(f"{service}/docs", timeout=10).url == f"{service}/docs/{name}/"


def test_ctrl_c_stops_every_service(running: Running) -> None:
    os.killpg(running.process.pid, signal.SIGINT)
    running.process.wait(timeout=60)
    assert "all stopped" in running.output()
    for service in running.ports:
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{running.url(service)}/livez", timeout=2)
