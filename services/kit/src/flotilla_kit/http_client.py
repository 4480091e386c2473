"""The service-to-service HTTP client: pooled, timed out, retried, circuit-broken, observed."""

from __future__ import annotations

import json as json_module
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode

import certifi
import urllib3
from prometheus_client import Counter, Gauge, Histogram
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)
from urllib3.exceptions import (
    NewConnectionError,
    ProtocolError,
    SSLError,
)
from urllib3.exceptions import (
    TimeoutError as Urllib3Timeout,
)

from flotilla_kit import tracing
from flotilla_kit.circuit import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, CircuitOpenError
from flotilla_kit.context import propagation_headers
from flotilla_kit.discovery import service_url
from flotilla_kit.metrics import LATENCY_BUCKETS
from flotilla_kit.problems import Problem
from flotilla_kit.settings import KitSettings

log = logging.getLogger("flotilla.http_client")

OUTBOUND_REQUESTS = Counter(
    "http_client_requests_total",
    "Outgoing calls to other services, by target, method and outcome (status code or error).",
    ["target", "method", "outcome"],
)
OUTBOUND_LATENCY = Histogram(
    "http_client_request_duration_seconds",
    "Time of outgoing calls to other services, by target and method.",
    ["target", "method"],
    buckets=LATENCY_BUCKETS,
)
CIRCUIT_STATE = Gauge(
    "http_client_circuit_state",
    "Circuit breaker state per target: 0 closed, 1 half-open, 2 open.",
    ["target"],
    multiprocess_mode="livemax",
)
_STATE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}
RETRIABLE_STATUSES = frozenset({502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class TokenSource(Protocol):
    """Supplies the bearer token a client sends."""

    def __call__(self) -> str:
        """A token valid for at least a little while."""

    def invalidate(self) -> None:
        """Forget the cached token."""


@dataclass(frozen=True)
class Reply:
    """What the target answered: status, headers and the whole body."""

    status_code: int
    content: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The body as JSON (``ValueError`` when it is not)."""
        return json_module.loads(self.content)

    @property
    def text(self) -> str:
        """The body as text."""
        return self.content.decode("utf-8", "replace")


class TransientFailure(Exception):
    """A failure worth retrying and counted by the circuit breaker."""

    def __init__(self, message: str, response: Reply | None = None) -> None:
        super().__init__(message)
        self.response = response


class UntrustedUpstream(Exception):
    """The server's certificate did not verify against the trusted CAs (or its name did not match).

    Not retried, since it fails the same way again; counted by the circuit breaker.
    """


class ConnectionRefused(Exception):
    """Nothing listens at the target (it is down or restarting): counted by the breaker, not retried.

    A retry a few milliseconds later finds it just as down; failing at once keeps the caller's
    answer fast, and the breaker soon stops the calls altogether.
    """


class UpstreamUnavailable(Problem):
    """A dependency could not answer: the caller gets a 503 problem."""

    def __init__(self, target: str, reason: str) -> None:
        super().__init__(
            503,
            "upstream-unavailable",
            f"The {target} service is unavailable: {reason}",
            headers={"Retry-After": "1"},
            target=target,
        )
        self.target = target
        self.reason = reason


@dataclass(frozen=True)
class ClientPolicy:
    """Timeouts, retries and breaker thresholds of one client."""

    connect_timeout: float = 0.5
    read_timeout: float = 2.0
    retries: int = 2
    backoff_initial: float = 0.05
    backoff_max: float = 0.5
    failure_threshold: int = 5
    reset_seconds: float = 10.0
    pool_size: int = 10

    @classmethod
    def from_settings(cls, settings: KitSettings) -> ClientPolicy:
        """The policy the environment configures (HTTP_TIMEOUT_SECONDS, HTTP_RETRIES, CIRCUIT_*)."""
        return cls(
            connect_timeout=min(0.5, settings.http_timeout_seconds),
            read_timeout=settings.http_timeout_seconds,
            retries=settings.http_retries,
            failure_threshold=settings.circuit_failure_threshold,
            reset_seconds=settings.circuit_reset_seconds,
        )


class ServiceClient:
    """Calls one target service; safe to share between threads of a worker."""

    def __init__(
        self,
        target: str,
        base_url: str,
        *,
        policy: ClientPolicy | None = None,
        ca_bundle: str | None = None,
        token: TokenSource | None = None,
    ) -> None:
        self.target = target
        self.base_url = base_url.rstrip("/")
        self.policy = policy or ClientPolicy()
        self.token = token
        # Always a file: verification cannot be off, and no variable of the environment replaces
        # the configured roots (nor adds a proxy: a service's neighbours are reached directly).
        self.verify: str = ca_bundle or certifi.where()
        # urllib3 itself, which requests is built on: kept-alive pooled connections without
        # requests' per-call session merging, cookie jar and hooks (a third of a call's time,
        # and 3 MB of a worker). Retries are tenacity's; redirects are answers, not followed.
        self._http = urllib3.PoolManager(
            num_pools=4,
            maxsize=self.policy.pool_size,
            retries=False,
            timeout=urllib3.Timeout(connect=self.policy.connect_timeout, read=self.policy.read_timeout),
            cert_reqs="CERT_REQUIRED",
            ca_certs=self.verify,
        )
        self.breaker = CircuitBreaker(
            self.policy.failure_threshold, self.policy.reset_seconds, on_change=self._circuit_changed
        )
        CIRCUIT_STATE.labels(target).set(0)

    def _circuit_changed(self, old: str, new: str) -> None:
        CIRCUIT_STATE.labels(self.target).set(_STATE_VALUES[new])
        log.warning(
            "circuit state changed", extra={"target": self.target, "from_state": old, "to_state": new}
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        authenticate: bool = True,
    ) -> Reply:
        """Send one logical call; retried only when idempotent, failing fast when open.

        Returns any response below 500 (and 500/501); raises ``UpstreamUnavailable`` when the
        target cannot be reached, keeps failing, or its circuit is open.
        """
        method = method.upper()
        retry_allowed = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        attempts = 1 + (self.policy.retries if retry_allowed else 0)
        retrying = Retrying(
            stop=stop_after_attempt(attempts),
            # Jitter in proportion to the backoff: tenacity's default adds up to a whole second.
            wait=wait_exponential_jitter(
                multiplier=self.policy.backoff_initial,
                max=self.policy.backoff_max,
                jitter=self.policy.backoff_initial,
            ),
            retry=retry_if_exception_type(TransientFailure),
            reraise=True,
        )
        # One span for the logical call: its attempts (urllib3's spans) and token fetches under it.
        with tracing.span(f"{method} {self.target}", **{"peer.service": self.target, "url.path": path}):
            try:
                response: Reply = retrying(self._attempt, method, path, json, data, headers, authenticate)
            except CircuitOpenError as exc:
                raise UpstreamUnavailable(self.target, "circuit open after repeated failures") from exc
            except (TransientFailure, UntrustedUpstream, ConnectionRefused) as exc:
                raise UpstreamUnavailable(self.target, str(exc)) from exc
            return response

    def _attempt(
        self,
        method: str,
        path: str,
        json: Any,
        data: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        authenticate: bool,
    ) -> Reply:
        outgoing = propagation_headers()
        if authenticate and self.token is not None:
            outgoing["Authorization"] = f"Bearer {self.token()}"
        outgoing.update(headers or {})
        try:
            response: Reply = self.breaker.call(self._send, method, path, json, data, outgoing)
        except CircuitOpenError:
            OUTBOUND_REQUESTS.labels(self.target, method, "circuit_open").inc()
            raise
        if response.status_code == 401 and authenticate and self.token is not None:
            # The cached token may have expired early or its key rotated: fetch a new one once.
            self.token.invalidate()
            outgoing["Authorization"] = f"Bearer {self.token()}"
            response = self.breaker.call(self._send, method, path, json, data, outgoing)
        return response

    def _send(
        self,
        method: str,
        path: str,
        json: Any,
        data: Mapping[str, str] | None,
        headers: dict[str, str],
    ) -> Reply:
        started = time.perf_counter()
        outcome = "error"
        body, content_type = _body(json, data)
        if content_type:
            headers = {"Content-Type": content_type, **headers}
        url = self.base_url + path
        attempt = tracing.client_span(method, url)
        try:
            with attempt as span:
                answer = self._http.request(
                    method,
                    url,
                    body=body,
                    headers={**_DEFAULT_HEADERS, **headers, **tracing.traceparent_of(span)},
                    redirect=False,
                )
                tracing.answered(span, answer.status)
            response = Reply(answer.status, answer.data, answer.headers)
            outcome = str(response.status_code)
        except SSLError as exc:
            outcome = "tls_error"
            log.warning("TLS handshake failed", extra={"target": self.target, "error": str(exc)})
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                raise UntrustedUpstream("certificate verify failed") from exc
            raise TransientFailure("TLS handshake failed") from exc
        except NewConnectionError as exc:  # before timeouts: urllib3 makes it one of them
            if _refused(exc):
                raise ConnectionRefused("connection refused") from exc
            raise TransientFailure("connection failed") from exc
        except Urllib3Timeout as exc:
            outcome = "timeout"
            raise TransientFailure(f"timed out ({exc.__class__.__name__})") from exc
        except ProtocolError as exc:
            # The connection broke, or the target died in the middle of its answer.
            raise TransientFailure("connection broken while reading the answer") from exc
        finally:
            OUTBOUND_REQUESTS.labels(self.target, method, outcome).inc()
            OUTBOUND_LATENCY.labels(self.target, method).observe(time.perf_counter() - started)
        if response.status_code in RETRIABLE_STATUSES:
            raise TransientFailure(f"answered {response.status_code}", response)
        return response


_DEFAULT_HEADERS = {"Accept": "application/json", "User-Agent": "flotilla-kit"}


def _body(json: Any, data: Mapping[str, str] | None) -> tuple[bytes | None, str | None]:
    """The encoded request body and its media type: JSON, a form, or none."""
    if json is not None:
        return json_module.dumps(json).encode(), "application/json"
    if data is not None:
        return urlencode(data).encode(), "application/x-www-form-urlencoded"
    return None, None


def _refused(error: BaseException) -> bool:
    """Whether a connection error comes from a refused connection (requests wraps it thrice)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ConnectionRefusedError):
            return True
        seen.add(id(current))
        reason = getattr(current, "reason", None)  # urllib3's MaxRetryError
        current = reason if isinstance(reason, BaseException) else current.__cause__ or current.__context__
    return False


def client_for(target: str, settings: KitSettings, token: TokenSource | None = None) -> ServiceClient:
    """A client of ``target`` at its discovered URL, with the configured policy and CA bundle."""
    return ServiceClient(
        target,
        service_url(target),
        policy=ClientPolicy.from_settings(settings),
        ca_bundle=settings.ca_bundle,
        token=token,
    )
