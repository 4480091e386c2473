"""``python -m tests.bench.profile [--load read|reservation|order] [--seconds N]``: where a
service worker's time goes.

The platform runs as ``make bench`` runs it; wrk sends one of ``make bench``'s loads (catalog
``GET /products/{id}``, the catalog's ``POST /reservations`` as orders calls it, or
``POST /orders``) while py-spy (pinned in requirements-dev.txt) samples every worker of the service
that answers it. The samples are grouped by the part of the stack they are in, innermost first (the
JSON log line is "access log" even where logging calls into orjson), and printed as shares of the
workers' Python time: only the thread holding the GIL is sampled (py-spy ``--gil``), so waiting on
the database or a socket does not count. Needs root or ptrace.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.bench import wrk
from tests.bench.proc import children
from tests.bench.services import CONNECTIONS, running_platform
from tests.support.platform import Platform
from tests.support.processes import ServiceProcess

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
    ("flotilla_kit/auth", "token verification"),
    ("jwt/", "token verification"),
    ("cryptography/", "token verification"),
    ("flotilla_kit/http_client", "HTTP client (the call to the catalog)"),
    ("urllib3/", "HTTP client (the call to the catalog)"),
    ("flotilla_catalog/", "the view"),
    ("flotilla_orders/", "the view"),
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


@dataclass(frozen=True)
class Load:
    """One of the benchmark's loads: what wrk sends, and which service answers it."""

    url: str
    service: ServiceProcess
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None

    def run(self, seconds: int) -> wrk.Load:
        """Send it for ``seconds`` (a key per request for the POSTs: each is a new one)."""
        return wrk.run(
            self.url,
            seconds=seconds,
            connections=CONNECTIONS,
            headers=self.headers,
            post_json=None if self.body is None else json.dumps(self.body),
            key_prefix=uuid.uuid4().hex,
        )


def load_of(name: str, platform: Platform) -> Load:
    """The load ``name`` (``read``, ``reservation`` or ``order``) on a new product."""
    product = platform.create_product(stock=10**9)["id"]
    items = [{"product_id": product, "quantity": 1}]
    if name == "read":
        return Load(f"{platform.catalog.url}/products/{product}", platform.catalog)
    if name == "reservation":
        body = {"key": "{{key}}", "items": items, "commit": True, "same_currency": True}
        service = {"Authorization": f"Bearer {platform.service_token('orders')}"}
        return Load(f"{platform.catalog.url}/reservations", platform.catalog, service, body)
    customer = {"Authorization": f"Bearer {platform.customer_token()}"}
    return Load(f"{platform.orders.url}/orders", platform.orders, customer, {"items": items})


def sample(pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling one worker for ``seconds`` into ``out`` (collapsed stacks)."""
    command = [PY_SPY, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "250"]
    command += ["--format", "raw", "--gil", "--nonblocking", "--output", str(out)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def profile(name: str, seconds: int) -> Counter[str]:
    """Sample the answering service's workers under the load ``name``."""
    with (
        tempfile.TemporaryDirectory(prefix="flotilla-profile-") as directory,
        running_platform(Path(directory)) as platform,
    ):
        load = load_of(name, platform)
        load.run(3)  # warm-up
        assert load.service.process is not None
        sender = threading.Thread(target=load.run, args=(seconds + 4,))
        sender.start()
        outputs = [Path(directory) / f"{pid}.txt" for pid in children(load.service.process.pid)]
        for spy in [sample(int(out.stem), seconds, out) for out in outputs]:
            spy.wait()
        sender.join()
        samples: Counter[str] = Counter()
        for out in outputs:
            samples += breakdown(out.read_text())
        return samples


TITLES = {
    "read": "catalog GET /products/{id}",
    "reservation": "catalog POST /reservations (as orders calls it)",
    "order": "orders POST /orders",
}


def main() -> int:
    """Print the breakdown: one line per part, largest first."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench.profile", description=__doc__)
    parser.add_argument("--load", choices=sorted(TITLES), default="read", help="what to send")
    parser.add_argument("--seconds", type=int, default=15, help="sampling time")
    args = parser.parse_args()
    samples = profile(args.load, args.seconds)
    total = sum(samples.values()) or 1
    print(f"{TITLES[args.load]}: {total} samples of the workers' Python time (the GIL held)")
    for part, count in samples.most_common():
        print(f"  {count / total:6.1%}  {part}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
