"""Business metrics of the catalog service."""

from prometheus_client import Counter

RESERVATIONS = Counter(
    "flotilla_stock_reservations_total",
    "Stock reservation operations by result.",
    ["result"],
)
