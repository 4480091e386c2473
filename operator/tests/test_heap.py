"""The health port's heap page: off without tracing, allocation sites with it."""

from __future__ import annotations

import socket
import tracemalloc
from collections.abc import Iterator

import pytest
import requests

from flotilla_operator.health import serve_health
from flotilla_operator.heap import heap_report, start_tracing


@pytest.fixture
def port() -> Iterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = int(probe.getsockname()[1])
    server = serve_health(free, lambda: (True, {"role": "reconciling"}), {"/debug/heap": heap_report})
    yield free
    server.shutdown()


def test_the_heap_page_says_how_to_turn_tracing_on(port: int) -> None:
    tracemalloc.stop()
    answer = requests.get(f"http://127.0.0.1:{port}/debug/heap", timeout=5).json()
    assert answer == {
        "tracing": False,
        "error": "set FLOTILLA_OPERATOR_HEAP_PROFILE=true to trace allocations",
    }


def test_the_heap_page_names_the_sites_holding_memory(port: int) -> None:
    start_tracing()
    try:
        held = [bytearray(1000) for _ in range(2000)]  # about 2 MB from this line
        answer = requests.get(f"http://127.0.0.1:{port}/debug/heap", timeout=30).json()
    finally:
        tracemalloc.stop()
    assert answer["tracing"] is True and answer["traced_mb"] >= 2
    top = answer["by_line"][0]
    assert top["site"].endswith(f"test_heap.py:{held_line()}") and top["kb"] >= 2000
    assert top["blocks"] >= 2000
    assert any(site["site"].endswith("test_heap.py") for site in answer["by_file"])
    assert len(held) == 2000


def held_line() -> int:
    """The line above that allocates, found rather than written twice."""
    source = open(__file__).read().splitlines()  # noqa: SIM115 - a test reading itself
    return next(number for number, line in enumerate(source, 1) if "held = [bytearray" in line)


def test_the_health_port_names_its_pages_when_asked_for_another(port: int) -> None:
    answer = requests.get(f"http://127.0.0.1:{port}/nothing", timeout=5)
    assert answer.status_code == 404
    assert answer.json()["error"] == "no such path: /nothing; try /healthz, /debug/heap"
    assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json() == {"role": "reconciling"}
