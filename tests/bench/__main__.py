"""``python -m tests.bench [services] [operator] [operator-scale] [dev] [rollout] [--seconds N]
[--rounds N] [--sizes 200,1000,2000]``: run, print one line each. ``dev`` (the dev loop) and
``rollout`` (releases under traffic) run on the real node: by default only while it is up."""

from __future__ import annotations

import argparse
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path

from tests.bench import dev_loop, operator_bench, operator_scale, rollout_bench, services
from tests.bench.report import Result


def machine() -> str:
    """The machine the figures come from."""
    cpus = Path("/proc/cpuinfo").read_text().count("processor\t:")
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return f"{cpus} x {model}, {memory_kb / 1024 / 1024:.0f} GiB, Python {platform.python_version()}"


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive numbers: {text!r}")
    return sizes


def main() -> int:
    """Run the chosen benchmarks; exit 1 when a target is missed."""
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__)
    parser.add_argument(
        "groups",
        nargs="*",
        metavar="{services,operator,operator-scale,dev,rollout}",
        help="default: services, operator and operator-scale, and dev and rollout when the real node is up",
    )
    parser.add_argument("--seconds", type=int, default=10, help="length of each load run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per side (the median counts)")
    parser.add_argument("--resources", type=int, default=200, help="Microservices for the operator")
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=operator_scale.SIZES,
        help="the operator-scale group's sizes, comma-separated (default: 200,1000,2000)",
    )
    parser.add_argument(
        "--heap-profile",
        type=Path,
        metavar="DIR",
        help="operator-scale: trace the operator's allocations, write its heap by site to "
        "DIR/heap-<size>.json (its RSS then includes the tracing's own)",
    )
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C: the benchmarks' namespaces and processes are removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    on_node = ["dev", "rollout"] if dev_loop.node_is_up() else []
    groups = args.groups or ["services", "operator", "operator-scale", *on_node]
    unknown = set(groups) - {"services", "operator", "operator-scale", "dev", "rollout"}
    if unknown:
        parser.error(f"unknown benchmark group(s): {', '.join(sorted(unknown))}")
    print(f"machine: {machine()}", flush=True)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="flotilla-bench-") as directory:
        work = Path(directory)
        for group in groups:
            started = time.monotonic()
            print(f"==> {group}", file=sys.stderr, flush=True)
            if group == "services":
                found = services.run(work / "services", services.Settings(args.seconds, args.rounds))
            elif group == "dev":
                found = dev_loop.run(work / "dev", args.rounds)
            elif group == "rollout":
                found = rollout_bench.run()
            elif group == "operator-scale":
                found = operator_scale.run(work / "operator-scale", args.sizes, args.heap_profile)
            else:
                found = operator_bench.run(work / "operator", args.resources)
            for result in found:
                print(result.line(), flush=True)
            results += found
            print(f"    {group} took {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
    missed = [result.name for result in results if result.met is False]
    print(
        f"targets: {sum(1 for r in results if r.met)} met, {len(missed)} missed{': ' if missed else ''}"
        f"{', '.join(missed)}"
    )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
