"""Prometheus metrics of the operator."""

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "flotilla_operator_reconciles_total", "Reconciliations of Microservices, by result.", ["result"]
)
RECONCILE_ERRORS = Counter(
    "flotilla_operator_reconcile_errors_total", "Reconciliations that failed, by error kind.", ["error"]
)
RECONCILE_DURATION = Histogram(
    "flotilla_operator_reconcile_duration_seconds",
    "Time one reconciliation takes.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
MANAGED_RESOURCES = Gauge(
    "flotilla_operator_managed_resources", "Children the operator manages, by kind.", ["kind"]
)
DRIFT_CORRECTIONS = Counter(
    "flotilla_operator_drift_corrections_total",
    "Children restored after being deleted by hand, by kind.",
    ["kind"],
)
