"""``python -m tests.bench.profile [--seconds N]``: where a catalog worker's time goes on the read.

The platform runs as ``make bench`` runs it; wrk loads catalog ``GET /products/{id}`` while py-spy
(pinned in requirements-dev.txt) samples every worker of the catalog. The samples are grouped by
the part of the stack they are in, innermost first (the JSON log line is "access log" even where
logging calls into orjson), and printed as shares of the worker's busy time. Needs root or ptrace.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

from tests.bench import wrk
from tests.bench.proc import children
from tests.bench.services import CONNECTIONS, running_platform

PY_SPY = str(Path(sys.executable).parent / "py-spy")

# The first rule matching a frame (outermost to innermost: the last match wins) names the sample.
PARTS: tuple[tuple[str, str], ...] = (
    ("gunicorn/", "gunicorn (HTTP parsing, sockets)"),
    ("werkzeug/", "Flask and Werkzeug (routing, request, response)"),
    ("flask/", "Flask and Werkzeug (routing, request, response)"),
    ("flotilla_kit/context.py", "request IDs and trace context"),
    ("flotilla_kit/api.py", "API checks (body media type)"),
    ("flask_smorest/", "flask-smorest and marshmallow (validated response)"),
    ("marshmallow/", "flask-smorest and marshmallow (validated response)"),
    ("json_provider.py", "JSON encoding (orjson)"),
    ("prometheus_client/", "metrics (multiprocess)"),
    ("flotilla_kit/metrics.py", "metrics (multiprocess)"),
    ("logging/", "access log (JSON line)"),
    ("flotilla_kit/logs.py", "access log (JSON line)"),
    ("pythonjsonlogger/", "access log (JSON line)"),
    ("flotilla_catalog/", "the view"),
    ("sqlalchemy/", "SQLAlchemy (Core statement, pool)"),
    ("psycopg/", "psycopg (PostgreSQL round trip)"),
)


def part_of(stack: str) -> str:
    """The part of the service a collapsed stack (``frame;frame;...``) is spent in."""
    found = "other (interpreter, threads)"
    for frame in stack.split(";"):
        for needle, part in PARTS:
            if needle in frame:
                found = part
                break
    return found


def breakdown(collapsed: str) -> Counter[str]:
    """Samples per part, from py-spy's raw output (``stack count`` per line)."""
    samples: Counter[str] = Counter()
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            samples[part_of(stack)] += int(count)
    return samples


def profile(seconds: int) -> Counter[str]:
    """Sample the catalog's workers under the read load."""
    with (
        tempfile.TemporaryDirectory(prefix="flotilla-profile-") as directory,
        running_platform(Path(directory)) as platform,
    ):
        path = f"/products/{platform.create_product(stock=100)['id']}"
        url = platform.catalog.url + path
        wrk.run(url, seconds=3, connections=CONNECTIONS)  # warm-up
        assert platform.catalog.process is not None
        load = threading.Thread(
            target=wrk.run, args=(url,), kwargs={"seconds": seconds + 4, "connections": CONNECTIONS}
        )
        load.start()
        outputs = []
        for pid in children(platform.catalog.process.pid):
            out = Path(directory) / f"{pid}.txt"
            outputs.append(out)
        spies = [
            subprocess.Popen(
                [
                    PY_SPY,
                    "record",
                    "--pid",
                    out.stem,
                    "--duration",
                    str(seconds),
                    "--rate",
                    "250",
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--output",
                    str(out),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for out in outputs
        ]
        for spy in spies:
            spy.wait()
        load.join()
        samples: Counter[str] = Counter()
        for out in outputs:
            samples += breakdown(out.read_text())
        return samples


def main() -> int:
    """Print the breakdown: one line per part, largest first."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench.profile", description=__doc__)
    parser.add_argument("--seconds", type=int, default=15, help="sampling time")
    args = parser.parse_args()
    samples = profile(args.seconds)
    total = sum(samples.values()) or 1
    print(f"catalog GET /products/{{id}}: {total} samples of the workers' busy time")
    for part, count in samples.most_common():
        print(f"  {count / total:6.1%}  {part}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
