"""The operator's heap, by allocation site: ``GET /debug/heap`` when FLOTILLA_OPERATOR_HEAP_PROFILE is on.

Go controllers serve ``/debug/pprof/heap``; this is the same question answered by the standard
library's ``tracemalloc`` (memray and guppy answer it from outside, with a tool on the node).
Tracing costs memory and CPU, so it is off unless asked for.
"""

from __future__ import annotations

import tracemalloc
from typing import Any

FRAMES = 12  # deep enough to reach the operator's own line below kopf's and the client's


def start_tracing() -> None:
    """Trace allocations from now on; memory allocated before (the modules' import) is not traced."""
    if not tracemalloc.is_tracing():
        tracemalloc.start(FRAMES)


def heap_report(limit: int = 25) -> dict[str, Any]:
    """The live heap: the total, then the ``limit`` largest sites by file and by line."""
    if not tracemalloc.is_tracing():
        return {"tracing": False, "error": "set FLOTILLA_OPERATOR_HEAP_PROFILE=true to trace allocations"}
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [
            tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
        ]
    )
    current, peak = tracemalloc.get_traced_memory()
    return {
        "tracing": True,
        "traced_mb": round(current / 1e6, 1),
        "traced_peak_mb": round(peak / 1e6, 1),
        "by_file": _sites(snapshot.statistics("filename"), limit, lines=False),
        "by_line": _sites(snapshot.statistics("lineno"), limit),
        "by_operator_line": _sites(_operator_lines(snapshot), limit),
    }


def _operator_lines(snapshot: tracemalloc.Snapshot) -> list[tracemalloc.Statistic]:
    """Allocations charged to the innermost frame of the operator's own code that made them."""
    totals: dict[tracemalloc.Frame, list[int]] = {}
    for trace in snapshot.traces:
        frame = next((f for f in trace.traceback if "flotilla_operator" in f.filename), None)
        if frame is None:
            continue
        size_count = totals.setdefault(frame, [0, 0])
        size_count[0] += trace.size
        size_count[1] += 1
    return sorted(
        (
            tracemalloc.Statistic(tracemalloc.Traceback(((frame.filename, frame.lineno),)), size, count)
            for frame, (size, count) in totals.items()
        ),
        key=lambda statistic: statistic.size,
        reverse=True,
    )


def _sites(statistics: list[tracemalloc.Statistic], limit: int, lines: bool = True) -> list[dict[str, Any]]:
    return [
        {
            "site": str(statistic.traceback[0]) if lines else statistic.traceback[0].filename,
            "kb": round(statistic.size / 1e3),
            "blocks": statistic.count,
        }
        for statistic in statistics[:limit]
    ]
