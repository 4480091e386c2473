"""Exemplars under several gunicorn workers: the newest trace of each histogram bucket.

prometheus_client keeps no exemplars in multiprocess mode (its ``set_exemplar`` does nothing
there), so the kit keeps them itself: each worker holds the newest exemplar of every bucket it
observed and writes them, at most once a second, to a file of its own beside the metrics files;
a scrape reads every worker's file and adds the newest exemplar of each bucket to the merged
histogram, which the OpenMetrics format then shows.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

FILE_PREFIX = "exemplars_"
FLUSH_SECONDS = 1.0
# A bucket's key: the sample's name and its labels, ``le`` included, sorted.
Key = tuple[str, tuple[tuple[str, str], ...]]


def bucket_bound(value: float, buckets: Iterable[float]) -> str:
    """The ``le`` label of the bucket ``value`` falls in, written as prometheus_client writes it."""
    for bound in buckets:
        if value <= bound:
            return str(floatToGoString(bound))  # type: ignore[no-untyped-call]
    return "+Inf"


def _sorted(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def _encode(key: Key) -> str:
    return json.dumps([key[0], key[1]])


def _decode(text: str) -> Key:
    name, labels = json.loads(text)
    return name, tuple((label, value) for label, value in labels)


class ExemplarStore:
    """The newest exemplar of each bucket a worker saw, written to ``<directory>/exemplars_<pid>.json``."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._exemplars: dict[Key, tuple[dict[str, str], float, float]] = {}
        self._dirty = False
        self._pid = 0

    def record(
        self, histogram: str, labels: dict[str, str], le: str, exemplar: dict[str, str], value: float
    ) -> None:
        """Keep ``exemplar`` as the newest of its bucket; written within a second."""
        key: Key = (f"{histogram}_bucket", _sorted({**labels, "le": le}))
        with self._lock:
            self._exemplars[key] = (exemplar, value, time.time())
            self._dirty = True
            if self._pid != os.getpid():  # the first exemplar of this worker (or after a fork)
                self._pid = os.getpid()
                threading.Thread(target=self._flush_every_second, name="exemplars", daemon=True).start()

    def _flush_every_second(self) -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            self.flush()

    def flush(self) -> None:
        """Write the exemplars if any changed (a new file, then renamed: a scrape never reads half)."""
        with self._lock:
            if not self._dirty:
                return
            payload = {_encode(key): entry for key, entry in self._exemplars.items()}
            self._dirty = False
        path = self.directory / f"{FILE_PREFIX}{os.getpid()}.json"
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps(payload))
        partial.replace(path)


def read_all(directory: str | os.PathLike[str]) -> dict[Key, Exemplar]:
    """The newest exemplar of each bucket across every worker's file."""
    newest: dict[Key, Exemplar] = {}
    for path in Path(directory).glob(f"{FILE_PREFIX}*.json"):
        try:
            entries = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a worker's file removed while it was read
        for text, (labels, value, timestamp) in entries.items():
            key = _decode(text)
            if key not in newest or timestamp > (newest[key].timestamp or 0.0):
                newest[key] = Exemplar(labels, value, timestamp)
    return newest


def forget_worker(directory: str | os.PathLike[str], pid: int) -> None:
    """Remove a dead worker's file."""
    (Path(directory) / f"{FILE_PREFIX}{pid}.json").unlink(missing_ok=True)


class WithExemplars(Collector):
    """Another collector's metrics, their histogram buckets carrying the workers' exemplars."""

    def __init__(self, collector: Collector, directory: str | os.PathLike[str]) -> None:
        self.collector = collector
        self.directory = directory

    def collect(self) -> Iterator[Metric]:
        exemplars = read_all(self.directory)
        for metric in self.collector.collect():
            if metric.type == "histogram" and exemplars:
                metric.samples = [
                    sample._replace(
                        exemplar=exemplars.get((sample.name, tuple(sorted(sample.labels.items()))))
                    )
                    if sample.name.endswith("_bucket")
                    else sample
                    for sample in metric.samples
                ]
            yield metric
