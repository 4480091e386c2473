"""Faults under load: the catalog killed, PostgreSQL restarted, while orders keep coming.

The platform here runs on a PostgreSQL server of its own, so restarting it disturbs nothing else.
Every order of the load has its own Idempotency-Key; afterwards each key is replayed and the
databases are checked: one order per key, stock taken once per confirmed order, nothing held.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from collections.abc import Iterator

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.cases import Case
from tests.support.load import Load, Outcome
from tests.support.platform import Platform, start_platform
from tests.support.postgres import PostgresServer, query

STOCK = 1_000_000
THREADS = 4
DOWN_SECONDS = 5.0  # over twice CIRCUIT_RESET_SECONDS: half-open trials fail while it is down
FAIL_FAST_SECONDS = 1.0  # the bound for an order while the catalog is down
CIRCUIT_OPEN = 2.0


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this module's own."""
    server = PostgresServer().start()
    yield server
    server.remove()


@pytest.fixture(scope="module")
def faulty(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """A platform of its own on that server; a replay takes over an order stalled for 3 s."""
    running = start_platform(
        tmp_path_factory.mktemp("fault-logs"),
        tmp_path_factory.mktemp("fault-keys"),
        instance="faults",
        server=postgres.url,
        env={"ORDER_STALE_PENDING_SECONDS": "3"},
    )
    yield running
    running.stop()


def circuit_state(platform: Platform) -> float:
    """The orders service's breaker state towards the catalog (0 closed, 1 half-open, 2 open)."""
    text = requests.get(f"{platform.orders.url}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "http_client_circuit_state" and sample.labels.get("target") == "catalog":
                return float(sample.value)
    return 0.0


def circuit_transitions(platform: Platform) -> list[str]:
    """The orders log's breaker transitions towards the catalog, e.g. ``closed->open``."""
    transitions = []
    for line in platform.orders.log_lines():
        if '"circuit state changed"' not in line:
            continue
        record = json.loads(line)
        if record.get("target") == "catalog":
            transitions.append(f"{record['from_state']}->{record['to_state']}")
    return transitions


def orders_by_key(platform: Platform, product_id: int) -> dict[str, list[tuple[str, str]]]:
    """The orders database's orders of the product: (id, status) per Idempotency-Key."""
    rows = query(
        platform.database_urls["orders"],
        "SELECT o.idempotency_key, o.id, o.status FROM orders o "
        "JOIN order_items i ON i.order_id = o.id WHERE i.product_id = %s",
        product_id,
    )
    found: dict[str, list[tuple[str, str]]] = {}
    for key, order_id, status in rows:
        found.setdefault(str(key), []).append((str(order_id), str(status)))
    return found


def check_replays_and_stock(
    platform: Platform, load: Load, outcomes: list[Outcome], product_id: int, case: Case
) -> list[Outcome]:
    """Replay every key: one order each, confirmed; stock taken once per order; nothing held."""
    replays = load.replay_all(outcomes)
    case.tried(len(replays))
    assert Counter(r.status for r in replays) == {201: len(outcomes)}, Counter(
        (r.status, r.problem) for r in replays
    )
    for first, replay in zip(outcomes, replays, strict=True):
        if first.order_id is not None:  # a 201, or a failed order the problem named
            assert replay.order_id == first.order_id, (first, replay)
    stored = orders_by_key(platform, product_id)
    assert set(stored) == {o.key for o in outcomes}
    assert all(len(orders) == 1 for orders in stored.values()), "a key with two orders"
    assert {replay.order_id for replay in replays} == {orders[0][0] for orders in stored.values()}
    assert {orders[0][1] for orders in stored.values()} == {"confirmed"}
    confirmed = len(stored)
    assert platform.stock_of(product_id) == STOCK - confirmed
    assert platform.reserved_quantities(product_id).get("committed") == confirmed
    assert platform.reserved_quantities(product_id).get("held", 0) == 0
    case.saw(f"replayed {len(replays)} keys: {confirmed} orders, stock taken {confirmed}, 0 held")
    return replays


def test_catalog_killed_under_load_fails_orders_fast_and_recovers_without_a_restart(
    faulty: Platform, case: Case
) -> None:
    product = faulty.create_product(stock=STOCK)
    tokens = [faulty.customer_token() for _ in range(THREADS)]
    orders_pids = faulty.orders.pids()
    states: list[float] = []
    with Load(faulty, tokens, [{"product_id": product["id"], "quantity": 1}], THREADS) as load:
        load.wait_for_successes(20)
        faulty.catalog.kill()
        killed = time.monotonic()
        try:
            while time.monotonic() < killed + DOWN_SECONDS:
                states.append(circuit_state(faulty))
                time.sleep(0.2)
        finally:
            restarting = time.monotonic()
            faulty.catalog.start()  # the same port: orders finds it where it was
        ready = time.monotonic()
        recovered = load.wait_for_recovery(since=ready)
        deadline = time.monotonic() + 30
        while circuit_state(faulty) != 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        closed_again = circuit_state(faulty) == 0
    outcomes = load.outcomes
    case.tried(len(outcomes))

    down = [o for o in outcomes if killed <= o.started < restarting]
    in_flight = [o for o in outcomes if o.started < killed <= o.ended]
    latencies = sorted(o.seconds for o in down)
    case.saw(
        f"{len(outcomes)} orders, {len(down)} started while the catalog was down: "
        f"{dict(Counter((o.status, o.problem) for o in down))}, "
        f"median {statistics.median(latencies) * 1000:.0f} ms, slowest {latencies[-1] * 1000:.0f} ms"
    )
    case.saw(f"in flight at the kill: {dict(Counter(o.status for o in in_flight))}")
    assert len(down) >= 10, load.summary()
    assert {(o.status, o.problem) for o in down} == {(503, "upstream-unavailable")}
    assert all(o.retry_after for o in down)
    assert latencies[-1] < FAIL_FAST_SECONDS, f"an order took {latencies[-1]:.2f}s while the catalog was down"
    assert {o.status for o in outcomes} <= {201, 503}, Counter((o.status, o.problem) for o in outcomes)

    transitions = circuit_transitions(faulty)
    case.saw(f"circuit: max state {max(states):g} while down; transitions {dict(Counter(transitions))}")
    assert CIRCUIT_OPEN in states, f"the circuit never showed open: {states}"
    assert "closed->open" in transitions
    assert "half-open->open" in transitions  # a trial after the reset time, while still down
    assert closed_again, "the circuit did not close again after the catalog came back"
    assert faulty.orders.pids() == orders_pids, "orders was restarted"
    case.saw(f"recovered {recovered - ready:.1f}s after the catalog was ready; orders not restarted")

    failed = requests.get(
        f"{faulty.orders.url}/orders/{down[0].order_id}",
        headers={"Authorization": f"Bearer {down[0].token}"},
        timeout=10,
    )
    assert failed.json()["status"] == "failed"  # a defined end state, holding no stock
    check_replays_and_stock(faulty, load, outcomes, product["id"], case)


def test_postgresql_restarted_under_load_loses_no_acknowledged_order(
    faulty: Platform, postgres: PostgresServer, case: Case
) -> None:
    product = faulty.create_product(stock=STOCK)
    tokens = [faulty.customer_token() for _ in range(THREADS)]
    pids = {service.name: service.pids() for service in faulty.services()}
    assert {len(family) for family in pids.values()} == {3}, pids  # gunicorn and its two workers
    with Load(faulty, tokens, [{"product_id": product["id"], "quantity": 1}], THREADS) as load:
        load.wait_for_successes(20)
        restarting = time.monotonic()
        postgres.restart()
        restarted = time.monotonic()
        recovered = load.wait_for_recovery(since=restarted)
    outcomes = load.outcomes
    case.tried(len(outcomes))

    answers = Counter((o.status, o.problem) for o in outcomes)
    slowest = max(o.seconds for o in outcomes)
    case.saw(
        f"{len(outcomes)} orders; restart took {restarted - restarting:.1f}s; answers {dict(answers)}; "
        f"slowest {slowest:.2f}s; recovered {recovered - restarted:.1f}s after the restart"
    )
    assert {o.status for o in outcomes} <= {201, 503}, answers  # never a 500, always an answer
    refused = [o for o in outcomes if o.status == 503]
    # The orders database answers database-unavailable; the catalog's, seen through the
    # catalog, makes orders answer upstream-unavailable.
    assert {o.problem for o in refused} <= {"database-unavailable", "upstream-unavailable"}, answers
    assert all(o.retry_after for o in refused)
    assert refused, "the restart disturbed no order: the test proved nothing"
    assert {service.name: service.pids() for service in faulty.services()} == pids, "a process was restarted"

    acknowledged = {o.key: o.order_id for o in outcomes if o.status == 201}
    stored = orders_by_key(faulty, product["id"])
    assert all(stored[key] == [(order_id, "confirmed")] for key, order_id in acknowledged.items())
    case.saw(f"{len(acknowledged)} acknowledged orders all stored and confirmed; same pids")
    check_replays_and_stock(faulty, load, outcomes, product["id"], case)
