"""Load from wrk (Debian's package): requests per second and latency percentiles of one run."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

# wrk calls done() once at the end: its own figures as one JSON line on stdout.
_DONE = """
done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '\\nRESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
    .. '"socket_errors": %d, "bad_status": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    errors.connect + errors.read + errors.write + errors.timeout, errors.status))
end
"""

# Each thread numbers its requests: a unique Idempotency-Key per POST, also put in the body
# where it says {{key}}.
_POST = """
local counter = 0
local threads = 0
thread_id = 0
setup = function(thread)
  thread:set("thread_id", threads)
  threads = threads + 1
end
request = function()
  counter = counter + 1
  local headers = {}
  for name, value in pairs(wrk.headers) do headers[name] = value end
  local key = string.format("%s-%d-%d", KEY_PREFIX, thread_id, counter)
  headers["Idempotency-Key"] = key
  return wrk.format("POST", nil, headers, (BODY:gsub("{{key}}", key)))
end
"""


@dataclass(frozen=True)
class Load:
    """What one wrk run measured."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    failures: int

    @property
    def rps(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds


def wrk_binary() -> str:
    """wrk's path (scripts/bench.sh installs it)."""
    binary = shutil.which("wrk")
    if not binary:
        raise RuntimeError("wrk is missing: 'make bench' installs it (apt-get install wrk)")
    return binary


def run(
    url: str,
    *,
    seconds: int,
    connections: int,
    threads: int = 1,
    headers: dict[str, str] | None = None,
    post_json: str | None = None,
    key_prefix: str = "bench",
) -> Load:
    """Load ``url`` for ``seconds`` over ``connections`` keep-alive connections."""
    script = _DONE
    if post_json is not None:
        script = f"KEY_PREFIX = {json.dumps(key_prefix)}\nBODY = {json.dumps(post_json)}\n" + _POST + script
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "bench.lua"
        path.write_text(script)
        command = [wrk_binary(), f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "-s", str(path)]
        for name, value in (headers or {}).items():
            command += ["-H", f"{name}: {value}"]
        if post_json is not None:
            command += ["-H", "Content-Type: application/json"]
        finished = subprocess.run(
            [*command, url], capture_output=True, text=True, timeout=seconds + 60, check=False
        )
    if finished.returncode != 0:
        raise RuntimeError(f"wrk failed: {finished.stderr or finished.stdout}")
    return parse(finished.stdout)


def parse(output: str) -> Load:
    """The figures of wrk's output (the RESULT line our done() writes)."""
    for line in output.splitlines():
        if line.startswith("RESULT "):
            figures = json.loads(line.removeprefix("RESULT "))
            return Load(
                requests=figures["requests"],
                seconds=figures["duration_us"] / 1e6,
                p50_ms=figures["p50_us"] / 1e3,
                p99_ms=figures["p99_us"] / 1e3,
                failures=figures["socket_errors"] + figures["bad_status"],
            )
    raise RuntimeError(f"wrk printed no result: {output}")
