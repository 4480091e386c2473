"""The service client against real sockets: retries, timeouts, the circuit breaker, metrics."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from flotilla_kit.http_client import OUTBOUND_REQUESTS, ClientPolicy, ServiceClient, UpstreamUnavailable


class ScriptedServer(ThreadingHTTPServer):
    """Answers with the next status of its script (then 200), recording each request."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[str, dict[str, str]]] = []
        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: ScriptedServer

    def _answer(self) -> None:
        self.server.requests.append((self.command, dict(self.headers)))
        status = self.server.statuses.pop(0) if self.server.statuses else 200
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST = _answer  # noqa: N815 - http.server's handler names

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    scripted = ScriptedServer([])
    thread = threading.Thread(target=scripted.serve_forever, daemon=True)
    thread.start()
    yield scripted
    scripted.shutdown()
    scripted.server_close()


def dead_url() -> str:
    scripted = ScriptedServer([])
    url = scripted.url
    scripted.server_close()
    return url


FAST = ClientPolicy(retries=2, backoff_initial=0.01, backoff_max=0.02, failure_threshold=3, reset_seconds=0.5)


def test_idempotent_calls_are_retried_through_transient_failures(server: ScriptedServer) -> None:
    server.statuses = [503, 502]
    response = ServiceClient("scripted", server.url, policy=FAST).request("GET", "/thing")
    assert response.status_code == 200
    assert len(server.requests) == 3


def test_non_idempotent_calls_are_not_retried(server: ScriptedServer) -> None:
    server.statuses = [503]
    with pytest.raises(UpstreamUnavailable):
        ServiceClient("scripted", server.url, policy=FAST).request("POST", "/thing", json={})
    assert len(server.requests) == 1


def test_posts_marked_idempotent_are_retried(server: ScriptedServer) -> None:
    server.statuses = [503]
    response = ServiceClient("scripted", server.url, policy=FAST).request(
        "POST", "/thing", json={}, idempotent=True
    )
    assert response.status_code == 200
    assert len(server.requests) == 2


def test_client_errors_are_returned_not_retried(server: ScriptedServer) -> None:
    server.statuses = [409]
    response = ServiceClient("scripted", server.url, policy=FAST).request("GET", "/thing")
    assert response.status_code == 409
    assert len(server.requests) == 1


def test_an_unreachable_target_fails_fast_and_opens_the_circuit() -> None:
    client = ServiceClient("unreachable", dead_url(), policy=FAST)
    started = time.monotonic()
    for _ in range(FAST.failure_threshold):
        with pytest.raises(UpstreamUnavailable):
            client.request("GET", "/")
    assert client.breaker.current_state == "open"
    with pytest.raises(UpstreamUnavailable, match="circuit open"):
        client.request("GET", "/")
    assert time.monotonic() - started < 2
    assert OUTBOUND_REQUESTS.labels("unreachable", "GET", "circuit_open")._value.get() >= 1


def test_a_refused_connection_is_not_retried_and_fails_at_once() -> None:
    client = ServiceClient("refusing", dead_url(), policy=FAST)
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable, match="connection refused"):
        client.request("GET", "/")
    assert time.monotonic() - started < 0.5
    assert OUTBOUND_REQUESTS.labels("refusing", "GET", "error")._value.get() == 1  # one attempt


def test_the_backoff_jitter_is_in_proportion_to_the_backoff(server: ScriptedServer) -> None:
    """Three waits of 10, 20 and 40 ms, each with at most 10 ms of jitter (not up to a second)."""
    server.statuses = [503] * 3
    policy = ClientPolicy(retries=3, backoff_initial=0.01, backoff_max=5, failure_threshold=10)
    started = time.monotonic()
    response = ServiceClient("jittered", server.url, policy=policy).request("GET", "/")
    assert response.status_code == 200
    assert time.monotonic() - started < 1.0


def test_an_open_circuit_lets_one_trial_call_through_after_the_reset_time(server: ScriptedServer) -> None:
    client = ServiceClient("half-open", server.url, policy=FAST)
    server.statuses = [503] * 3
    with pytest.raises(UpstreamUnavailable):
        client.request("GET", "/")
    assert client.breaker.current_state == "open"
    calls = len(server.requests)
    with pytest.raises(UpstreamUnavailable, match="circuit open"):
        client.request("GET", "/")
    assert len(server.requests) == calls  # refused without a call while open
    time.sleep(FAST.reset_seconds + 0.1)
    assert client.request("GET", "/").status_code == 200  # the trial call, and it succeeded
    assert len(server.requests) == calls + 1
    assert client.breaker.current_state == "closed"


def test_a_connection_broken_in_the_middle_of_the_answer_is_a_transient_failure() -> None:
    """A target killed while answering: headers came, the body never did (not a 500 upstream)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def answer_half() -> None:
            for _ in range(3):  # the first attempt and both retries
                connection, _address = listener.accept()
                with connection:
                    connection.recv(65536)
                    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 226\r\n\r\n")

        thread = threading.Thread(target=answer_half, daemon=True)
        thread.start()
        client = ServiceClient("broken", f"http://127.0.0.1:{listener.getsockname()[1]}", policy=FAST)
        with pytest.raises(UpstreamUnavailable, match="connection broken"):
            client.request("GET", "/")
        thread.join(5)
