"""Quantiles of a Prometheus histogram scraped twice, interpolated the way Prometheus does."""

from __future__ import annotations

import math

import requests
from prometheus_client.parser import text_string_to_metric_families

Buckets = dict[float, float]


def scrape_buckets(url: str, metric: str, **labels: str) -> Buckets:
    """Cumulative bucket counts of ``metric`` (summed over series matching ``labels``)."""
    text = requests.get(url, timeout=10).text
    buckets: Buckets = {}
    for family in text_string_to_metric_families(text):
        if family.name != metric:
            continue
        for sample in family.samples:
            if sample.name != f"{metric}_bucket":
                continue
            if all(sample.labels.get(key) == value for key, value in labels.items()):
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return buckets


def quantile(q: float, before: Buckets, after: Buckets) -> float:
    """The ``q`` quantile of the observations made between two scrapes (``histogram_quantile``)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return math.nan
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return bounds[-2] if len(bounds) > 1 else math.nan
