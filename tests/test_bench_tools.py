"""The tools ``make bench`` measures with count right (their figures are never asserted here)."""

from __future__ import annotations

import math
import shutil

import pytest
import requests

from tests.bench import wrk
from tests.bench.histogram import quantile, scrape_buckets
from tests.bench.report import Result, Target
from tests.bench.services import scaling
from tests.support.kube import wait_for
from tests.support.platform import Platform
from tests.test_observability import metric_value


@pytest.fixture(autouse=True, scope="module")
def _wrk_installed() -> None:
    assert shutil.which("wrk"), "wrk is missing: scripts/wrk.sh installs it (make test does)"


def counted(platform: Platform, service: str, name: str, **labels: str) -> float:
    text = requests.get(f"{getattr(platform, service).url}/metrics", timeout=10).text
    return metric_value(text, name, **labels)


def test_wrk_counts_every_request_the_service_served(platform: Platform) -> None:
    product = platform.create_product(stock=1)
    labels = {"route": "/products/{product_id}", "status": "200"}
    before = counted(platform, "catalog", "http_requests_total", **labels)
    load = wrk.run(f"{platform.catalog.url}/products/{product['id']}", seconds=1, connections=2)
    after = counted(platform, "catalog", "http_requests_total", **labels)
    assert load.failures == 0
    # wrk counts the responses it read; a request cut off at the deadline may be served unread.
    assert 0 <= (after - before) - load.requests <= 2
    assert 0 < load.p50_ms <= load.p99_ms


def test_wrk_posts_each_order_under_a_key_of_its_own(platform: Platform) -> None:
    product = platform.create_product(stock=10**6)
    before = counted(platform, "orders", "flotilla_orders_total", outcome="confirmed")
    replays = counted(platform, "orders", "flotilla_orders_total", outcome="replayed")
    load = wrk.run(
        f"{platform.orders.url}/orders",
        seconds=1,
        connections=2,
        threads=2,
        headers={"Authorization": f"Bearer {platform.customer_token()}"},
        post_json=f'{{"items": [{{"product_id": {product["id"]}, "quantity": 1}}]}}',
    )
    assert load.failures == 0 and load.requests > 0

    def settled() -> float | None:
        """Orders confirmed, once the one wrk left in flight at its deadline has finished."""
        confirmed = counted(platform, "orders", "flotilla_orders_total", outcome="confirmed") - before
        return confirmed if platform.stock_of(product["id"]) == 10**6 - confirmed else None

    confirmed = wait_for(settled, timeout=10, what="the stock taken to match the orders confirmed")
    assert 0 <= confirmed - load.requests <= 2
    assert counted(platform, "orders", "flotilla_orders_total", outcome="replayed") == replays


def test_histogram_quantiles_interpolate_like_prometheus() -> None:
    before = {0.001: 0.0, 0.005: 0.0, 0.01: 0.0, math.inf: 0.0}
    after = {0.001: 10.0, 0.005: 30.0, 0.01: 40.0, math.inf: 40.0}
    # 20 of 40 observations: halfway through the (0.001, 0.005] bucket's 20.
    assert quantile(0.5, before, after) == pytest.approx(0.001 + 0.004 * 10 / 20)
    assert quantile(0.25, before, after) == pytest.approx(0.001)
    assert math.isnan(quantile(0.5, after, after))


def test_histogram_buckets_come_from_a_real_scrape(platform: Platform) -> None:
    buckets = scrape_buckets(f"{platform.catalog.url}/metrics", "http_request_duration_seconds")
    assert math.inf in buckets and buckets[math.inf] >= max(buckets.values())


def test_a_result_line_has_the_documented_shape() -> None:
    result = Result("kit_overhead_rps", 850.0, 1000.0, " req/s", Target(">=", 0.85))
    assert result.line() == (
        "kit_overhead_rps: flotilla=850 req/s baseline=1000 req/s ratio=0.85 target=ratio>=0.85"
    )
    assert result.met
    assert Result("rss", 81.0, 60.0, " MB", Target("<=", 80, of="flotilla", unit=" MB")).met is False


def test_the_scaling_line_compares_two_workers_with_one() -> None:
    one = wrk.Load(requests=8000, seconds=10.0, p50_ms=10.0, p99_ms=30.0, failures=0)
    two = wrk.Load(requests=14000, seconds=10.0, p50_ms=8.0, p99_ms=25.0, failures=0)
    result = scaling(two, one)
    assert result.line() == (
        "kit_scaling_2_over_1: flotilla=1400 req/s baseline=800 req/s ratio=1.75 target=ratio>=1.7"
    )
    assert result.met
    assert scaling(wrk.Load(12000, 10.0, 8.0, 25.0, 0), one).met is False


def test_a_profile_sample_counts_for_the_innermost_part_of_the_service_it_is_in() -> None:
    from tests.bench.profile import breakdown

    collapsed = "\n".join(
        [
            "run (gunicorn/workers/gthread.py:1);wsgi_app (flask/app.py:2);"
            "_log_access (flotilla_kit/logs.py:3);format (pythonjsonlogger/core.py:4);"
            "dumps (orjson/__init__.py:5) 7",
            "run (gunicorn/workers/gthread.py:1);get (flotilla_catalog/routes.py:9);"
            "execute (sqlalchemy/engine/base.py:1);wait (psycopg/connection.py:2) 5",
            "select (selectors.py:1) 2",
        ]
    )
    assert breakdown(collapsed) == {
        "access log (JSON line)": 7,
        "psycopg (PostgreSQL round trip)": 5,
        "other (interpreter, threads)": 2,
    }
