"""Canary analysis with no configuration: the kit's RED metrics, candidate against stable (pure).

The queries read what every kit service exports (``http_requests_total`` and
``http_request_duration_seconds``) for the pods of one revision (the ``flotilla_dev_revision``
target label the ServiceMonitor copies from the pods), leaving out the probes and scrapes.
``judge`` turns the answers into a verdict; the I/O lives in ``prometheus.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

REVISION_TARGET_LABEL = "flotilla_dev_revision"
# Requests the platform makes itself: never a user's, never faulted, never judged.
UNJUDGED_ROUTES = "/livez|/readyz|/metrics"
# The shortest window judged: two scrapes at the default 5 s interval, and some slack.
MIN_WINDOW_SECONDS = 15


class Outcome(StrEnum):
    """What a look at the metrics concludes."""

    SUCCESS = "Success"
    FAILURE = "Failure"
    PENDING = "Pending"


@dataclass(frozen=True)
class Verdict:
    """An outcome, a CamelCase reason and a message for people."""

    outcome: Outcome
    reason: str
    message: str


@dataclass(frozen=True)
class Check:
    """A user's PromQL check: one number, within ``minimum``..``maximum`` (either may be unset)."""

    name: str
    query: str
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class AnalysisPolicy:
    """The bounds a candidate is held to (``spec.rollout.analysis``)."""

    max_error_ratio_increase: float = 0.05
    max_latency_ratio: float = 1.5
    latency_tolerance_seconds: float = 0.1
    min_requests: int = 20
    promote_without_traffic: bool = False
    checks: tuple[Check, ...] = ()

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> AnalysisPolicy:
        """The policy of ``spec.rollout.analysis`` (the CRD's defaults fill what is unset)."""
        defaults = cls()
        checks = tuple(
            Check(c["name"], c["query"], c.get("min"), c.get("max")) for c in spec.get("checks") or ()
        )
        return cls(
            max_error_ratio_increase=float(
                spec.get("maxErrorRatioIncrease", defaults.max_error_ratio_increase)
            ),
            max_latency_ratio=float(spec.get("maxLatencyRatio", defaults.max_latency_ratio)),
            latency_tolerance_seconds=float(
                spec.get("latencyToleranceSeconds", defaults.latency_tolerance_seconds)
            ),
            min_requests=int(spec.get("minRequests", defaults.min_requests)),
            promote_without_traffic=bool(spec.get("promoteWithoutTraffic", False)),
            checks=checks,
        )


@dataclass(frozen=True)
class Traffic:
    """What one revision served in the window: requests, server errors and the p99 latency."""

    requests: float
    errors: float
    p99_seconds: float | None

    @property
    def error_ratio(self) -> float:
        """The share of requests answered 5xx (0 without requests)."""
        return self.errors / self.requests if self.requests > 0 else 0.0


@dataclass(frozen=True)
class Sample:
    """Everything one analysis read: both revisions' traffic and each user check's value."""

    candidate: Traffic
    stable: Traffic
    checks: dict[str, float | None] = field(default_factory=dict)


def window_seconds(elapsed: float) -> int:
    """The range judged: the step so far, never shorter than two scrapes."""
    return max(MIN_WINDOW_SECONDS, int(elapsed + 0.999))


def _selector(namespace: str, job: str, revision: str, extra: str = "") -> str:
    return (
        f'namespace="{namespace}",job="{job}",{REVISION_TARGET_LABEL}="{revision}",'
        f'route!~"{UNJUDGED_ROUTES}"{extra}'
    )


def traffic_queries(namespace: str, job: str, revision: str, window: int) -> dict[str, str]:
    """PromQL for one revision's requests, 5xx answers and p99 over ``window`` seconds."""
    requests = f"http_requests_total{{{_selector(namespace, job, revision)}}}"
    server_errors = ',status=~"5.."'
    errors = f"http_requests_total{{{_selector(namespace, job, revision, server_errors)}}}"
    buckets = f"http_request_duration_seconds_bucket{{{_selector(namespace, job, revision)}}}"
    return {
        "requests": f"sum(increase({requests}[{window}s]))",
        "errors": f"sum(increase({errors}[{window}s]))",
        "p99": f"histogram_quantile(0.99, sum by (le) (rate({buckets}[{window}s])))",
    }


def check_query(check: Check, namespace: str, name: str, revision: str, window: int) -> str:
    """A user's query with ``$namespace``, ``$name``, ``$revision`` and ``$window`` filled in."""
    return (
        check.query.replace("$namespace", namespace)
        .replace("$name", name)
        .replace("$revision", revision)
        .replace("$window", f"{window}s")
    )


def judge(sample: Sample, policy: AnalysisPolicy, *, step_over: bool) -> Verdict:
    """Fail as soon as the evidence says so; pass only when the step's time is over.

    A candidate is judged once it served ``min_requests``: its 5xx share may exceed the stable's
    by ``max_error_ratio_increase`` and its p99 may be ``max_latency_ratio`` times the stable's
    (plus ``latency_tolerance_seconds``); every user check must hold.
    """
    candidate = sample.candidate
    if candidate.requests < policy.min_requests:
        if step_over and policy.promote_without_traffic:
            return Verdict(Outcome.SUCCESS, "NoTraffic", "No traffic to judge; allowed to promote without.")
        return Verdict(
            Outcome.PENDING,
            "InsufficientTraffic",
            f"{candidate.requests:.0f} of the {policy.min_requests} requests needed to judge the candidate.",
        )
    verdict = _red_verdict(sample, policy) or _checks_verdict(sample, policy)
    if verdict is not None:
        return verdict
    if not step_over:
        return Verdict(Outcome.PENDING, "Analysing", "Within bounds so far; the step is not over.")
    p99 = "n/a" if candidate.p99_seconds is None else f"{candidate.p99_seconds * 1000:.0f} ms"
    return Verdict(
        Outcome.SUCCESS,
        "WithinBounds",
        f"{candidate.requests:.0f} requests, {candidate.error_ratio:.1%} 5xx, p99 {p99}.",
    )


def _red_verdict(sample: Sample, policy: AnalysisPolicy) -> Verdict | None:
    """A failure on the 5xx share or the p99, candidate against stable; None within bounds."""
    candidate, stable = sample.candidate, sample.stable
    bound = stable.error_ratio + policy.max_error_ratio_increase
    if candidate.error_ratio > bound:
        return Verdict(
            Outcome.FAILURE,
            "ErrorRatio",
            f"The candidate answered {candidate.error_ratio:.1%} of {candidate.requests:.0f} requests "
            f"with 5xx; the stable {stable.error_ratio:.1%}; at most {bound:.1%} is allowed.",
        )
    if candidate.p99_seconds is None or stable.p99_seconds is None:
        return None
    limit = stable.p99_seconds * policy.max_latency_ratio + policy.latency_tolerance_seconds
    if candidate.p99_seconds <= limit:
        return None
    return Verdict(
        Outcome.FAILURE,
        "Latency",
        f"The candidate's p99 is {candidate.p99_seconds * 1000:.0f} ms; the stable's "
        f"{stable.p99_seconds * 1000:.0f} ms; at most {limit * 1000:.0f} ms is allowed.",
    )


def _checks_verdict(sample: Sample, policy: AnalysisPolicy) -> Verdict | None:
    """The first user check without data (pending) or out of bounds (failure); None when all hold."""
    for check in policy.checks:
        value = sample.checks.get(check.name)
        if value is None:
            return Verdict(Outcome.PENDING, "CheckNoData", f"The check {check.name} returned no data yet.")
        low = check.minimum is not None and value < check.minimum
        high = check.maximum is not None and value > check.maximum
        if low or high:
            lower = "-inf" if check.minimum is None else f"{check.minimum:g}"
            upper = "inf" if check.maximum is None else f"{check.maximum:g}"
            return Verdict(
                Outcome.FAILURE,
                "CheckFailed",
                f"The check {check.name} returned {value:g}, outside [{lower}, {upper}].",
            )
    return None


def readiness_only(step_over: bool) -> Verdict:
    """The verdict without Prometheus: a ready candidate that has not crashed passes each step in time."""
    if not step_over:
        return Verdict(
            Outcome.PENDING, "ReadinessOnly", "No Prometheus: the step passes when its time is over."
        )
    return Verdict(Outcome.SUCCESS, "ReadinessOnly", "No Prometheus: judged on readiness and restarts only")
