"""Business metrics of the orders service."""

from prometheus_client import Counter

ORDERS = Counter("flotilla_orders_total", "Order requests by outcome.", ["outcome"])
