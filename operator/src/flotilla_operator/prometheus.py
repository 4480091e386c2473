"""Reading a candidate's and its stable's metrics from Prometheus's HTTP API (the analysis' I/O)."""

from __future__ import annotations

import math
from typing import Any

import requests

from flotilla_operator.analysis import Check, Sample, Traffic, check_query, traffic_queries

QUERY_TIMEOUT_SECONDS = 5.0


class PrometheusUnavailable(Exception):
    """Prometheus did not answer, or answered with an error; the message says which."""


class Prometheus:
    """Instant queries against one Prometheus (``FLOTILLA_PROMETHEUS_URL``)."""

    def __init__(self, url: str, timeout: float = QUERY_TIMEOUT_SECONDS) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()

    def _query(self, query: str) -> dict[str, Any]:
        """The ``data`` of an instant query's answer."""
        try:
            response = self.session.get(
                f"{self.url}/api/v1/query", params={"query": query}, timeout=self.timeout
            )
            body = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise PrometheusUnavailable(f"Prometheus at {self.url} did not answer: {exc}") from exc
        if response.status_code != 200 or body.get("status") != "success":
            raise PrometheusUnavailable(
                f"Prometheus at {self.url} refused {query!r}: {body.get('error', response.status_code)}"
            )
        data: dict[str, Any] = body["data"]
        return data

    def scalar(self, query: str) -> float | None:
        """The one number ``query`` returns (the first series), or None when it returns nothing."""
        data = self._query(query)
        if data["resultType"] == "scalar":
            value = float(data["result"][1])
        elif data["result"]:
            value = float(data["result"][0]["value"][1])
        else:
            return None
        return None if math.isnan(value) else value

    def series(self, query: str) -> list[dict[str, str]]:
        """The labels of each series a vector ``query`` returns."""
        return [dict(item["metric"]) for item in self._query(query)["result"]]

    def traffic(self, namespace: str, job: str, revision: str, window: int) -> Traffic:
        """One revision's requests, 5xx answers and p99 over the last ``window`` seconds."""
        queries = traffic_queries(namespace, job, revision, window)
        return Traffic(
            requests=self.scalar(queries["requests"]) or 0.0,
            errors=self.scalar(queries["errors"]) or 0.0,
            p99_seconds=self.scalar(queries["p99"]),
        )

    def sample(
        self,
        namespace: str,
        name: str,
        revisions: tuple[str, str],
        window: int,
        checks: tuple[Check, ...] = (),
    ) -> Sample:
        """The candidate's and the stable's traffic (``revisions``: candidate, stable) and each check."""
        candidate, stable = revisions
        return Sample(
            candidate=self.traffic(namespace, name, candidate, window),
            stable=self.traffic(namespace, name, stable, window),
            checks={
                check.name: self.scalar(check_query(check, namespace, name, candidate, window))
                for check in checks
            },
        )
