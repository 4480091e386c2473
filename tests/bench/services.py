"""Service benchmarks: kit overhead, scaling with workers, authentication cost, the
service-to-service hop, worker memory.

The three services run as ``make test`` runs them (gunicorn, two workers, PostgreSQL); each
baseline runs under the very same gunicorn configuration beside them. Flotilla and its baseline
take turns, several rounds each, and the median round counts.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench import wrk
from tests.bench.histogram import quantile, scrape_buckets
from tests.bench.proc import children, rss_mb
from tests.bench.report import Result, Target
from tests.support.jaeger import JaegerServer, traces_of
from tests.support.platform import Platform, start_platform
from tests.support.processes import ServiceProcess

ROOT = Path(__file__).resolve().parents[2]
CONNECTIONS = 16
# The share of traces sampled in the tracing benchmark, as a busy production service would.
TRACED_SHARE = 0.1


@dataclass(frozen=True)
class Settings:
    """How long each load runs and how many rounds each side gets."""

    seconds: int = 10
    rounds: int = 3


def progress(message: str) -> None:
    """What the benchmark is doing now (stderr, so stdout keeps only the result lines)."""
    print(f"    {message}", file=sys.stderr, flush=True)


def baseline(name: str, factory: str, env: dict[str, str], log_dir: Path) -> ServiceProcess:
    """A baseline app from ``tests.bench.baselines`` under the kit's gunicorn configuration."""
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        "python:flotilla_kit.gunicorn_conf",
        f"tests.bench.baselines:{factory}",
    ]
    environment = {**env, "PYTHONPATH": str(ROOT), "FLOTILLA_SERVICE": name}
    return ServiceProcess(name, environment, log_dir, command=command).start()


def side_by_side(
    settings: Settings, flotilla: Callable[[], wrk.Load], base: Callable[[], wrk.Load]
) -> tuple[wrk.Load, wrk.Load]:
    """Alternate the two loads; the median round of each by requests per second."""
    flotilla(), base()  # warm-up: connection pools, caches, JIT-free but lazy imports
    ours, theirs = [], []
    for round_number in range(1, settings.rounds + 1):
        progress(f"round {round_number}/{settings.rounds}")
        ours.append(flotilla())
        theirs.append(base())
    for load in ours + theirs:
        if load.failures:
            raise RuntimeError(f"{load.failures} requests failed under load")
    return _median(ours), _median(theirs)


def _median(loads: list[wrk.Load]) -> wrk.Load:
    return sorted(loads, key=lambda load: load.rps)[len(loads) // 2]


@contextmanager
def running_platform(work: Path) -> Iterator[Platform]:
    """The three services on fresh databases, stopped afterwards."""
    (work / "logs").mkdir(parents=True, exist_ok=True)
    (work / "keys").mkdir(parents=True, exist_ok=True)
    platform = start_platform(work / "logs", work / "keys", instance="bench")
    try:
        yield platform
    finally:
        platform.stop()


def product_reads(
    platform: Platform, settings: Settings, ours: ServiceProcess, theirs: ServiceProcess
) -> tuple[wrk.Load, wrk.Load]:
    """``GET /products/{id}`` of one new product from two servers on the catalog's database."""
    path = f"/products/{platform.create_product(stock=100)['id']}"

    def read(process: ServiceProcess) -> Callable[[], wrk.Load]:
        return lambda: wrk.run(process.url + path, seconds=settings.seconds, connections=CONNECTIONS)

    return side_by_side(settings, read(ours), read(theirs))


def kit_overhead(platform: Platform, bare: ServiceProcess, settings: Settings) -> list[Result]:
    """catalog ``GET /products/{id}`` against a bare Flask app doing the same read."""
    ours, theirs = product_reads(platform, settings, platform.catalog, bare)
    return [
        Result("kit_overhead_rps", ours.rps, theirs.rps, " req/s", Target(">=", 0.85)),
        Result("kit_overhead_p99", ours.p99_ms, theirs.p99_ms, " ms", Target("<=", 1.25)),
    ]


def scaling(two_workers: wrk.Load, one_worker: wrk.Load) -> Result:
    """Requests per second at two gunicorn workers over one: it falls when a worker's efficiency does."""
    return Result("kit_scaling_2_over_1", two_workers.rps, one_worker.rps, " req/s", Target(">=", 1.7))


def kit_scaling(platform: Platform, log_dir: Path, settings: Settings) -> list[Result]:
    """catalog ``GET /products/{id}`` at two workers (the platform's) against a catalog at one."""
    one_worker = ServiceProcess("catalog", {**platform.catalog.env, "WEB_CONCURRENCY": "1"}, log_dir)
    try:
        one_worker.start()  # inside: a catalog that never answered is stopped too
        two, one = product_reads(platform, settings, platform.catalog, one_worker)
    finally:
        one_worker.stop()
    return [scaling(two, one)]


def tracing_overhead(platform: Platform, work: Path, settings: Settings) -> list[Result]:
    """catalog ``GET /products/{id}`` traced (10 % sampled, exported to a real Jaeger) against
    the platform's catalog, whose tracing is off (no exporter)."""
    jaeger = JaegerServer(work / "jaeger").start()
    sampled = jaeger.otel_env("parentbased_traceidratio", TRACED_SHARE)
    sampled.pop("OTEL_BSP_SCHEDULE_DELAY")  # exported as in production: every 5 s
    traced = ServiceProcess("catalog", {**platform.catalog.env, **sampled}, work / "logs")
    try:
        traced.start()
        ours, theirs = product_reads(platform, settings, traced, platform.catalog)
        exported = len(traces_of(jaeger.query_url, "catalog", limit=100_000))
        progress(f"Jaeger holds {exported} traces of the traced catalog")
        if not exported:
            raise RuntimeError("the traced catalog exported no trace to Jaeger")
    finally:
        traced.stop()
        jaeger.stop()
    return [Result("tracing_overhead_rps", ours.rps, theirs.rps, " req/s", Target(">=", 0.9))]


def customer_reads(
    platform: Platform, settings: Settings, path: str, ours: ServiceProcess, theirs: ServiceProcess
) -> tuple[wrk.Load, wrk.Load]:
    """A customer's ``GET path`` on two processes of one service, side by side."""
    headers = {"Authorization": f"Bearer {platform.customer_token()}"}

    def read(process: ServiceProcess) -> wrk.Load:
        return wrk.run(process.url + path, seconds=settings.seconds, connections=CONNECTIONS, headers=headers)

    return side_by_side(settings, lambda: read(ours), lambda: read(theirs))


def auth_cost(platform: Platform, unverified: ServiceProcess, settings: Settings) -> list[Result]:
    """``GET /users/me`` against the same app with token verification taken out."""
    ours, theirs = customer_reads(platform, settings, "/users/me", platform.users, unverified)
    return [Result("auth_cost_rps", ours.rps, theirs.rps, " req/s", Target(">=", 0.8))]


def revocation_cost(platform: Platform, unchecked: ServiceProcess, settings: Settings) -> list[Result]:
    """orders ``GET /orders`` against the same app without the revocation check."""
    ours, theirs = customer_reads(platform, settings, "/orders", platform.orders, unchecked)
    return [Result("auth_revocation_cost_rps", ours.rps, theirs.rps, " req/s", Target(">=", 0.9))]


def service_to_service(platform: Platform, settings: Settings) -> list[Result]:
    """``POST /orders`` end to end, against the catalog's own ``POST /reservations`` it calls."""
    items = [{"product_id": platform.create_product(stock=10**9)["id"], "quantity": 1}]
    customer = {"Authorization": f"Bearer {platform.customer_token()}"}
    service = {"Authorization": f"Bearer {platform.service_token('orders')}"}

    def posts(url: str, headers: dict[str, str], body: dict[str, Any], connections: int) -> wrk.Load:
        return wrk.run(
            url,
            seconds=settings.seconds,
            connections=connections,
            headers=headers,
            post_json=json.dumps(body),
            key_prefix=uuid.uuid4().hex,
        )

    def orders(connections: int) -> wrk.Load:
        return posts(platform.orders.url + "/orders", customer, {"items": items}, connections)

    def reservations(connections: int) -> wrk.Load:
        # The very call orders makes: committed at once, in one currency.
        body = {"key": "{{key}}", "items": items, "commit": True, "same_currency": True}
        return posts(platform.catalog.url + "/reservations", service, body, connections)

    ours, theirs = side_by_side(settings, lambda: orders(CONNECTIONS), lambda: reservations(CONNECTIONS))
    # The hop alone, one order at a time: orders' own histogram of its calls to the catalog,
    # against the same call made straight to the catalog.
    progress("the hop to the catalog, one request at a time")
    metrics = platform.orders.url + "/metrics"
    labels = {"target": "catalog", "method": "POST"}
    before = scrape_buckets(metrics, "http_client_request_duration_seconds", **labels)
    orders(1)
    after = scrape_buckets(metrics, "http_client_request_duration_seconds", **labels)
    hop_p50_ms = quantile(0.5, before, after) * 1000
    direct_p50_ms = reservations(1).p50_ms
    return [
        Result("orders_post_rps", ours.rps, theirs.rps, " req/s", Target(">=", 0.6)),
        Result("orders_post_p99", ours.p99_ms, theirs.p99_ms, " ms", None),
        Result(
            "orders_catalog_hop_p50",
            hop_p50_ms,
            direct_p50_ms,
            " ms",
            Target("<", 3, of="flotilla", unit=" ms"),
        ),
    ]


def worker_rss_mb(process: ServiceProcess) -> list[float]:
    """Resident memory of each gunicorn worker (the master's children), in MiB."""
    assert process.process is not None
    return [rss_mb(pid) for pid in children(process.process.pid)]


def worker_memory(platform: Platform, bare: ServiceProcess) -> list[Result]:
    """The largest worker of each service after the loads, against the bare Flask app's."""
    baseline_mb = max(worker_rss_mb(bare))
    return [
        Result(
            f"worker_rss_{service.name}",
            max(worker_rss_mb(service)),
            baseline_mb,
            " MB",
            Target("<=", 80, of="flotilla", unit=" MB"),
        )
        for service in platform.services()
    ]


def run(work: Path, settings: Settings) -> list[Result]:
    """Every service benchmark, in one platform with its baselines beside it."""
    with running_platform(work) as platform:
        progress(
            "starting the baselines: a bare Flask catalog, users without token verification, "
            "orders without the revocation check"
        )
        bare = baseline("catalog-bare", "catalog_bare()", platform.catalog.env, work / "logs")
        unverified = baseline("users-unverified", "users_unverified()", platform.users.env, work / "logs")
        unchecked = baseline("orders-unchecked", "orders_unchecked()", platform.orders.env, work / "logs")
        try:
            results = []
            progress("kit overhead: GET /products/{id}, catalog vs bare Flask")
            results += kit_overhead(platform, bare, settings)
            progress("tracing overhead: GET /products/{id}, catalog traced (10% sampled) vs not")
            results += tracing_overhead(platform, work, settings)
            progress("scaling: GET /products/{id}, catalog at 2 gunicorn workers vs 1")
            results += kit_scaling(platform, work / "logs", settings)
            progress("authentication cost: GET /users/me, verified vs not")
            results += auth_cost(platform, unverified, settings)
            progress("revocation cost: GET /orders, checked vs not")
            results += revocation_cost(platform, unchecked, settings)
            progress("service to service: POST /orders vs the catalog's POST /reservations")
            results += service_to_service(platform, settings)
            results += worker_memory(platform, bare)
            return results
        finally:
            bare.stop()
            unverified.stop()
            unchecked.stop()
