"""Jaeger for tests: the pinned Jaeger v2 binary on loopback, and traces read back from its query API.

The binary is the one `make prepare` builds from its Go module (scripts/cluster/versions.env); on
the node the umbrella chart runs the same one. Spans go in over OTLP/HTTP and are read back
through the query API the Jaeger UI uses (``/api/traces``), in memory.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.support.processes import free_port

CACHE = Path(
    os.environ.get("FLOTILLA_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "flotilla"
)
BINARY = CACHE / "cluster" / "bin" / "jaeger"

CONFIG = """\
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics: {{level: none}}
    logs: {{level: warn}}
extensions:
  jaeger_query:
    storage: {{traces: memstore}}
    http: {{endpoint: "127.0.0.1:{query}"}}
    grpc: {{endpoint: "127.0.0.1:{query_grpc}"}}
  jaeger_storage:
    backends:
      memstore:
        memory: {{max_traces: 100000}}
  healthcheckv2:
    use_v2: true
    http: {{endpoint: "127.0.0.1:{health}"}}
receivers:
  otlp:
    protocols:
      http: {{endpoint: "127.0.0.1:{otlp_http}"}}
processors:
  batch: {{timeout: 200ms}}
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"""


@dataclass(frozen=True)
class Span:
    """One span as Jaeger's query API returns it."""

    trace_id: str
    span_id: str
    parent_id: str | None
    service: str
    name: str
    duration_ms: float
    tags: dict[str, Any] = field(default_factory=dict)
    process: dict[str, Any] = field(default_factory=dict)  # the resource: pod, namespace, version

    @property
    def kind(self) -> str:
        """``server``, ``client`` or ``internal``."""
        return str(self.tags.get("span.kind", "internal"))


def spans_of(trace: dict[str, Any]) -> list[Span]:
    """The spans of one trace of the query API's answer."""
    services = {key: process["serviceName"] for key, process in trace["processes"].items()}
    resources = {
        key: {tag["key"]: tag["value"] for tag in process.get("tags", [])}
        for key, process in trace["processes"].items()
    }
    spans = []
    for span in trace["spans"]:
        parents = [ref["spanID"] for ref in span.get("references", []) if ref["refType"] == "CHILD_OF"]
        spans.append(
            Span(
                trace_id=span["traceID"].rjust(32, "0"),
                span_id=span["spanID"].rjust(16, "0"),
                parent_id=parents[0].rjust(16, "0") if parents else None,
                service=services[span["processID"]],
                name=span["operationName"],
                duration_ms=span["duration"] / 1000,
                tags={tag["key"]: tag["value"] for tag in span.get("tags", [])},
                process=resources[span["processID"]],
            )
        )
    return spans


def read_trace(query_url: str, trace_id: str, *, settle: float = 3.0, timeout: float = 60.0) -> list[Span]:
    """Every span of ``trace_id``, once no new span has arrived for ``settle`` seconds."""
    deadline = time.monotonic() + timeout
    seen: list[Span] = []
    changed = time.monotonic()
    while time.monotonic() < deadline:
        response = requests.get(f"{query_url}/api/traces/{trace_id}", timeout=10)
        if response.status_code == 200:
            spans = [span for trace in response.json()["data"] for span in spans_of(trace)]
            if len(spans) != len(seen):
                seen, changed = spans, time.monotonic()
            elif seen and time.monotonic() - changed >= settle:
                return seen
        time.sleep(0.5)
    if seen:
        return seen
    raise AssertionError(f"Jaeger at {query_url} has no trace {trace_id} after {timeout:.0f}s")


def services(query_url: str) -> list[str]:
    """The services Jaeger has spans of."""
    response = requests.get(f"{query_url}/api/services", timeout=10)
    response.raise_for_status()
    return list(response.json()["data"] or [])


def traces_of(query_url: str, service: str, limit: int = 1000) -> list[list[Span]]:
    """The newest traces ``service`` took part in."""
    response = requests.get(
        f"{query_url}/api/traces",
        params={"service": service, "limit": str(limit), "lookback": "1h"},
        timeout=30,
    )
    response.raise_for_status()
    return [spans_of(trace) for trace in response.json()["data"] or []]


class JaegerServer:
    """The Jaeger v2 binary on loopback ports, its traces in memory."""

    def __init__(self, work: Path, binary: Path = BINARY) -> None:
        if not binary.exists():
            raise RuntimeError(f"{binary} is missing: `make prepare` builds Jaeger from its Go module")
        self.binary = binary
        self.work = work
        self.ports = {name: free_port() for name in ("query", "query_grpc", "health", "otlp_http")}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def query_url(self) -> str:
        """The query API (and UI)."""
        return f"http://127.0.0.1:{self.ports['query']}"

    @property
    def otlp_url(self) -> str:
        """Where OTLP/HTTP goes (``OTEL_EXPORTER_OTLP_ENDPOINT``)."""
        return f"http://127.0.0.1:{self.ports['otlp_http']}"

    def start(self, timeout: float = 60) -> JaegerServer:
        """Start it and wait until it answers its health check."""
        self.work.mkdir(parents=True, exist_ok=True)
        config = self.work / "jaeger.yaml"
        config.write_text(CONFIG.format(**self.ports))
        log = (self.work / "jaeger.log").open("wb")
        self.process = subprocess.Popen(
            [str(self.binary), "--config", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jaeger exited: {(self.work / 'jaeger.log').read_text()[-2000:]}")
            try:
                if requests.get(f"http://127.0.0.1:{self.ports['health']}/status", timeout=2).ok:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"jaeger did not become healthy in {timeout:.0f}s")

    def otel_env(self, sampler: str = "parentbased_always_on", ratio: float = 1.0) -> dict[str, str]:
        """The variables that make a service export its spans here."""
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.otlp_url,
            "OTEL_TRACES_SAMPLER": sampler,
            "OTEL_TRACES_SAMPLER_ARG": str(ratio),
            # A test reads a trace back within seconds: export every 200 ms, not every 5 s.
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        }

    def stop(self) -> None:
        """Stop it."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
