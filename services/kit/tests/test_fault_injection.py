"""Faults injected on purpose (FAULT_*): a bad release for canary tests and demos."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import fault_service
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from flotilla_kit import faults
from flotilla_kit.problems import PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_BASE
from flotilla_kit.settings import ConfigError, FaultSettings, KitSettings

ROUTE = fault_service.ROUTE
FAULTED = PROBLEM_TYPE_BASE + "fault-injected"
EXEMPT = ("/livez", "/readyz", "/metrics", "/openapi.json")

MakeApp = Callable[..., Flask]


@pytest.fixture
def make_app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> MakeApp:
    """An app of ``fault_service`` with the given FAULT_* variables and a seeded RNG."""
    for name in os.environ:
        if name.startswith("FAULT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("FLOTILLA_DATA_DIR", str(tmp_path))

    def make(seed: int = 7, **env: str) -> Flask:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        app = fault_service.create_app(KitSettings.load(fault_service.NAME))
        app.extensions[faults.EXTENSION].rng = random.Random(seed)
        return app

    return make


def metric(client: FlaskClient, name: str, **labels: str) -> float:
    """One sample of the app's ``/metrics`` (0 when absent)."""
    text = client.get("/metrics").get_data(as_text=True)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def served_503(client: FlaskClient) -> float:
    return metric(client, "http_requests_total", method="GET", route=ROUTE, status="503")


class CountingRandom(random.Random):
    """A seeded RNG that counts its draws."""

    def __init__(self) -> None:
        super().__init__(1)
        self.draws = 0

    def random(self) -> float:
        self.draws += 1
        return super().random()


def test_no_fault_is_on_by_default(make_app: MakeApp) -> None:
    app = make_app()
    settings = KitSettings.load(fault_service.NAME).faults
    assert settings == FaultSettings()
    assert settings.active() == {}
    injector = app.extensions[faults.EXTENSION]
    assert injector.before_request not in app.before_request_funcs[None]  # nothing on the request path
    client = app.test_client()
    assert all(client.get(f"/things/{n}").status_code == 200 for n in range(100))
    assert client.get("/readyz").status_code == 200


def test_an_error_ratio_of_zero_never_faults(make_app: MakeApp) -> None:
    # With a delay on, the hook runs for every request and draws for the error too.
    app = make_app(FAULT_ERROR_RATIO="0", FAULT_DELAY_SECONDS="0.001")
    app.extensions[faults.EXTENSION].sleep = lambda _seconds: None
    client = app.test_client()
    before = served_503(client)
    assert all(client.get(f"/things/{n}").status_code == 200 for n in range(500))
    assert served_503(client) == before


def test_an_error_ratio_of_one_fails_every_request_with_a_counted_problem(make_app: MakeApp) -> None:
    client = make_app(FAULT_ERROR_RATIO="1").test_client()
    before = served_503(client)
    timed_before = metric(client, "http_request_duration_seconds_count", method="GET", route=ROUTE)

    for n in range(20):
        response = client.get(f"/things/{n}", headers={"X-Request-ID": f"canary-{n}"})
        assert response.status_code == 503
        assert response.mimetype == PROBLEM_CONTENT_TYPE
        assert response.headers["X-Request-ID"] == f"canary-{n}"
        problem = response.get_json(force=True)
        assert problem["type"] == FAULTED
        assert problem["status"] == 503
        assert "FAULT_ERROR_RATIO=1" in problem["detail"]
        assert "on purpose" in problem["detail"]

    assert served_503(client) == before + 20
    assert (
        metric(client, "http_request_duration_seconds_count", method="GET", route=ROUTE) == timed_before + 20
    )


def test_an_error_ratio_of_a_fifth_fails_a_fifth_of_the_requests(make_app: MakeApp) -> None:
    client = make_app(seed=2024, FAULT_ERROR_RATIO="0.2").test_client()
    before = served_503(client)
    statuses = [client.get(f"/things/{n}").status_code for n in range(2000)]
    failed = statuses.count(503)
    # Binomial(2000, 0.2): mean 400, standard deviation 17.9; +-60 is 3.35 of them.
    assert 340 <= failed <= 460, failed
    assert statuses.count(200) == 2000 - failed
    assert served_503(client) == before + failed


def test_the_kit_endpoints_are_never_faulted(make_app: MakeApp) -> None:
    app = make_app(FAULT_ERROR_RATIO="1", FAULT_DELAY_SECONDS="1")
    rng = CountingRandom()
    app.extensions[faults.EXTENSION].rng = rng
    client = app.test_client()
    for _ in range(3):
        for path in EXEMPT:
            started = time.perf_counter()
            response = client.get(path)
            assert response.status_code == 200, path
            assert time.perf_counter() - started < 1, path
        assert client.get("/nowhere").status_code == 404  # not a route of the service
    assert rng.draws == 0


def test_a_delay_holds_each_request_and_is_timed_by_the_metrics(make_app: MakeApp) -> None:
    client = make_app(FAULT_DELAY_SECONDS="0.05").test_client()
    total_before = metric(client, "http_request_duration_seconds_sum", method="GET", route=ROUTE)
    for n in range(3):
        started = time.perf_counter()
        assert client.get(f"/things/{n}").status_code == 200
        assert time.perf_counter() - started >= 0.05
    total = metric(client, "http_request_duration_seconds_sum", method="GET", route=ROUTE)
    assert total - total_before >= 0.15


def test_a_delay_ratio_delays_that_share_of_the_requests(make_app: MakeApp) -> None:
    app = make_app(seed=11, FAULT_DELAY_SECONDS="0.25", FAULT_DELAY_RATIO="0.25")
    waits: list[float] = []
    app.extensions[faults.EXTENSION].sleep = waits.append
    client = app.test_client()
    assert all(client.get(f"/things/{n}").status_code == 200 for n in range(800))
    # Binomial(800, 0.25): mean 200, standard deviation 12.2; +-40 is 3.3 of them.
    assert 160 <= len(waits) <= 240, len(waits)
    assert set(waits) == {0.25}


def test_not_ready_fails_readyz_naming_the_setting(make_app: MakeApp) -> None:
    client = make_app(FAULT_NOT_READY="true").test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.mimetype == PROBLEM_CONTENT_TYPE
    problem = response.get_json(force=True)
    assert "FAULT_NOT_READY" in problem["detail"]
    assert problem["checks"]["FAULT_NOT_READY"] == "failing"
    assert client.get("/livez").status_code == 200
    assert client.get("/things/1").status_code == 200  # serves, only never becomes ready


def test_crash_at_start_stops_the_app_factory(make_app: MakeApp) -> None:
    with pytest.raises(faults.CrashAtStart, match="FAULT_CRASH_AT_START"):
        make_app(FAULT_CRASH_AT_START="true")


def test_active_faults_are_logged_at_start(make_app: MakeApp, caplog: pytest.LogCaptureFixture) -> None:
    make_app(FAULT_ERROR_RATIO="0.2", FAULT_DELAY_SECONDS="0.5", FAULT_NOT_READY="yes")
    [record] = [r for r in caplog.records if r.name == "flotilla.faults"]
    assert record.levelname == "WARNING"
    assert record.getMessage() == (
        "faults injected on purpose: FAULT_ERROR_RATIO=0.2, FAULT_DELAY_SECONDS=0.5, "
        "FAULT_DELAY_RATIO=1, FAULT_NOT_READY=true"
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FAULT_ERROR_RATIO", "1.5"),
        ("FAULT_ERROR_RATIO", "abc"),
        ("FAULT_ERROR_RATIO", "-0.1"),
        ("FAULT_ERROR_RATIO", "nan"),
        ("FAULT_DELAY_SECONDS", "-1"),
        ("FAULT_DELAY_SECONDS", "soon"),
        ("FAULT_DELAY_SECONDS", "inf"),
        ("FAULT_DELAY_RATIO", "2"),
        ("FAULT_NOT_READY", "maybe"),
        ("FAULT_CRASH_AT_START", "perhaps"),
    ],
)
def test_a_bad_fault_setting_is_named_at_start(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FLOTILLA_DATA_DIR", str(tmp_path))
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=f"invalid configuration: {name}: "):
        KitSettings.load(fault_service.NAME)


# The real entry points, in subprocesses: the service's CLI and gunicorn.


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def service_env(tmp_path: Path) -> dict[str, str]:
    """The environment of ``fault_service`` in a subprocess, without any inherited FAULT_*."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("FAULT_")}
    path = os.pathsep.join(p for p in (str(Path(__file__).parent), env.get("PYTHONPATH")) if p)
    env |= {
        "PYTHONPATH": path,
        "FLOTILLA_DATA_DIR": str(tmp_path),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        "WEB_CONCURRENCY": "2",
    }
    return env


def run(args: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, check=False)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "fault_service", *args]


@pytest.mark.parametrize(("name", "value"), [("FAULT_ERROR_RATIO", "1.5"), ("FAULT_ERROR_RATIO", "abc")])
def test_serve_refuses_a_bad_fault_setting_naming_it(
    name: str, value: str, service_env: dict[str, str]
) -> None:
    for command in ("check-config", "serve"):
        result = run(cli(command), {**service_env, name: value})
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert f"invalid configuration: {name}: " in result.stderr
        assert "Traceback" not in result.stderr


def test_crash_at_start_makes_serve_exit_non_zero(service_env: dict[str, str]) -> None:
    env = {**service_env, "FAULT_CRASH_AT_START": "true"}
    result = run(cli("serve"), env)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "error: FAULT_CRASH_AT_START is true: this release crashes at start on purpose" in result.stderr
    assert "Traceback" not in result.stderr
    checked = run(cli("check-config"), env)  # a valid configuration, with a warning
    assert checked.returncode == 0, checked.stderr
    assert "warning: faults injected on purpose: FAULT_CRASH_AT_START=true" in checked.stderr


def test_crash_at_start_halts_gunicorn_itself(service_env: dict[str, str]) -> None:
    """Run by gunicorn without the CLI, the workers fail to boot and the master exits non-zero."""
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        "python:flotilla_kit.gunicorn_conf",
        "fault_service:create_app()",
    ]
    result = run(command, {**service_env, "FAULT_CRASH_AT_START": "true"})
    assert result.returncode != 0, (result.stdout, result.stderr)
    assert "FAULT_CRASH_AT_START is true" in result.stdout + result.stderr


@pytest.fixture
def served(service_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``fault_service serve`` under gunicorn (two workers), failing every request; its URL and log."""
    log = tmp_path / "service.log"
    env = {**service_env, "FAULT_ERROR_RATIO": "1", "FAULT_DELAY_SECONDS": "0.01"}
    url = f"http://127.0.0.1:{env['PORT']}"
    with log.open("wb") as out:
        process = subprocess.Popen(cli("serve"), env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:
                if requests.get(f"{url}/livez", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        yield url, log
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def test_faults_under_gunicorn_with_two_workers_are_counted_across_workers(served: tuple[str, Path]) -> None:
    url, log = served
    with requests.Session() as session:
        for n in range(20):
            response = session.get(f"{url}/things/{n}", timeout=5)
            assert response.status_code == 503
            assert response.headers["Content-Type"] == PROBLEM_CONTENT_TYPE
            assert response.json()["type"] == FAULTED
        assert all(session.get(url + path, timeout=5).status_code == 200 for path in EXEMPT)
        text = session.get(f"{url}/metrics", timeout=5).text
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    [counted] = [
        s.value
        for s in samples
        if s.name == "http_requests_total" and s.labels == {"method": "GET", "route": ROUTE, "status": "503"}
    ]
    [timed] = [
        s.value
        for s in samples
        if s.name == "http_request_duration_seconds_sum" and s.labels == {"method": "GET", "route": ROUTE}
    ]
    assert counted == 20
    assert timed >= 20 * 0.01
    warnings = [
        line
        for line in map(json.loads, filter(None, log.read_text().splitlines()))
        if line.get("logger") == "flotilla.faults"
    ]
    assert warnings, log.read_text()
    assert all(w["level"] == "WARNING" and "FAULT_ERROR_RATIO=1" in w["message"] for w in warnings)
