#!/usr/bin/env python3
"""make test's scheduler: the prerequisites overlapped (downloads beside the builds), with a plan and ETAs.

  python3 scripts/pipeline.py test               the prerequisites, then make test's three pytest runs
  python3 scripts/pipeline.py prepare            the prerequisites only
  python3 scripts/pipeline.py test-e2e           one suite and what it needs (also test-reliability)
  python3 scripts/pipeline.py test --plan        print the plan and stop

A step starts as soon as the steps it needs are done: one "cpu" step at a time (Go builds, lint,
pytest; the machine has 2 cores) beside any number of "net" steps (apt, pip, module downloads, image
builds). Background steps write to .run/steps/<name>.log; a foreground step (pytest) runs alone and
writes to the terminal. Each step's last duration is recorded in ~/.cache/flotilla/timings.json,
apart for runs that had work and runs that found everything done, so that a warm run does not
teach the cold estimates. Standard library only: it runs before the virtualenv exists.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TextIO

ROOT = Path(__file__).resolve().parents[1]
CPU, NET = "cpu", "net"
# The niceness of the steps that yield the CPU to the compiling one: downloads, pip, image builds.
YIELDING_NICENESS = 10
STATUS_EVERY = 30.0
STOP_GRACE = 10.0
# A step had work when its output has a step line (scripts/lib.sh's `step`) other than a reuse.
WORK_LINE = r"==> (?!reusing)"
ANSI = re.compile(r"\x1b\[[0-9;]*m")

# (has work: True, False or None when unknown; what there is to do)
Probe = Callable[[], tuple[bool | None, str]]


@dataclass(frozen=True)
class Step:
    """One step: a command, the steps it needs done first, and the resource it mostly uses."""

    name: str
    command: tuple[str, ...]
    resource: str = NET
    needs: tuple[str, ...] = ()
    # Ordering only: these steps come first when they are part of the run.
    after: tuple[str, ...] = ()
    title: str = ""
    foreground: bool = False
    probe: Probe | None = field(default=None, compare=False)
    # What in its output shows it had work; None: its probe's answer stands.
    work_line: str | None = WORK_LINE
    # apt-get killed halfway leaves dpkg to repair: a failure elsewhere waits for it instead.
    stoppable: bool = True
    # Runs at a lower CPU priority (nice 10), beside the compiling step: for steps that start no
    # daemon (a daemon would keep the priority for the whole run).
    yields: bool = False

    @property
    def argv(self) -> tuple[str, ...]:
        """The command as launched."""
        return ("nice", "-n", str(YIELDING_NICENESS), *self.command) if self.yields else self.command


# Expected seconds (with work, with nothing to do) until a step is measured here: the cold
# make test of 2026-12-02 on the 2-core development machine (empty Go, pip and image caches;
# Debian's packages installed), rounded up; kube-router's module and build (added later) measured
# alone on the same machine, and Jaeger's (2026-12-04: its modules 36s, its build 5m46s with an
# empty Go build cache).
DEFAULTS: dict[str, tuple[float, float]] = {
    "apt": (40, 0.5),
    "venv": (105, 0.2),
    "lint": (20, 1.5),
    "postgres": (4, 0.3),
    "prometheus": (0.5, 0.1),
    "wrk": (0.5, 0.1),
    "registry": (1, 0.1),
    "modules-kube": (20, 0.1),
    "build-kube": (445, 0.3),
    "modules-node": (120, 0.1),
    "build-node": (535, 0.3),
    "modules-tools": (90, 0.1),
    "build-tools": (365, 0.3),
    "modules-jaeger": (40, 0.1),
    "build-jaeger": (350, 0.3),
    "image-base": (145, 1),
    "images-platform": (120, 10),
    "images-node": (11, 3),
    "node-up": (23, 5),
    "pytest": (232, 232),
    "pytest-e2e": (250, 250),
    "pytest-reliability": (256, 256),
}


# The steps ------------------------------------------------------------------------------------

BUILD = "scripts/cluster/build.sh"
# The Go builds in four groups, each with its downloads first: Kubernetes, the longest, can start
# compiling while the others download.
KUBE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kubelet", "kube-proxy")
NODE = ("crictl", "coredns", "traefik", "local-path-provisioner", "kube-router")
TOOLS = ("etcd", "kwok", "helm", "helm3", "kind", "skaffold", "actionlint")
# Jaeger v2, the umbrella chart's trace backend (and the tests' loopback one): a group of its own.
JAEGER = ("jaeger",)
PYTEST = ".venv/bin/pytest"
PREREQUISITES = ("venv", "lint", "postgres", "node-up", "images-platform", "prometheus", "wrk")
GOALS: dict[str, tuple[str, ...]] = {
    "prepare": PREREQUISITES,
    "test": ("pytest", "pytest-e2e", "pytest-reliability"),
    "test-e2e": ("pytest-e2e",),
    "test-reliability": ("pytest-reliability",),
}

# One apt-get for every package the scripts install (parallel ones would fight over dpkg's lock).
APT_SCRIPT = """
source scripts/lib.sh
# As scripts/postgres.sh does before installing PostgreSQL.
if [[ " $* " == *" postgresql "* ]] && ! compgen -G "/usr/lib/postgresql/*/bin" >/dev/null; then
  no_main_postgres_cluster
fi
apt_install "$@"
"""
APT_CALL = re.compile(r"\bapt_install((?:[ \t]+[a-z0-9][a-z0-9.+-]*)+)[ \t]*(?:$|[;&|#)])", re.MULTILINE)


def apt_packages(root: Path = ROOT) -> list[str]:
    """Every Debian package of the scripts' apt_install calls, read from the scripts themselves."""
    packages: list[str] = []
    for script in sorted((root / "scripts").rglob("*.sh")):
        for call in APT_CALL.finditer(script.read_text()):
            packages += [name for name in call.group(1).split() if name not in packages]
    return packages


def missing_packages(packages: Sequence[str]) -> Probe:
    """Probe: the packages dpkg does not have installed."""

    def probe() -> tuple[bool | None, str]:
        try:
            listed = subprocess.run(  # noqa: S603 - the scripts' package names
                ["dpkg-query", "-W", "-f=${Package} ${Status}\\n", *packages],  # noqa: S607 - dpkg's own tool
                capture_output=True,
                text=True,
                check=False,
            ).stdout
        except OSError:
            return None, ""
        installed = {
            line.split()[0] for line in listed.splitlines() if line.endswith(" install ok installed")
        }
        missing = [name for name in packages if name not in installed]
        return bool(missing), f"to install: {' '.join(missing)}" if missing else ""

    return probe


def stale_binaries(root: Path, names: Sequence[str]) -> Probe:
    """Probe: the binaries build.sh would build (its --plan)."""

    def probe() -> tuple[bool | None, str]:
        try:
            result = subprocess.run(  # noqa: S603 - the project's script
                [str(root / BUILD), "--plan", *names], capture_output=True, text=True, check=False
            )
        except OSError:
            return None, ""
        if result.returncode != 0:
            return None, "build.sh --plan failed"
        stale = result.stdout.split()
        return bool(stale), " ".join(stale)

    return probe


def venv_changed(root: Path) -> Probe:
    """Probe: scripts/venv.sh would reinstall (its stamp is the hash of the same inputs)."""

    def probe() -> tuple[bool | None, str]:
        venv = Path(os.environ.get("FLOTILLA_VENV", root / ".venv"))
        inputs = [
            root / "requirements-dev.txt",
            *sorted((root / "services").glob("*/pyproject.toml")),
            root / "operator" / "pyproject.toml",
        ]
        try:
            digest = hashlib.sha256(b"".join(path.read_bytes() for path in inputs)).hexdigest()
            stamp = (venv / ".flotilla-inputs").read_text().strip()
        except OSError:
            return True, "a new virtualenv"
        fresh = stamp == digest and (venv / "bin" / "python").exists()
        return not fresh, "" if fresh else "its requirements changed"

    return probe


def mypy_cache_missing(root: Path) -> Probe:
    """Probe: mypy has no cache yet (a cold lint takes 30 s, a warm one 1 s)."""

    def probe() -> tuple[bool | None, str]:
        cold = not (root / ".mypy_cache").is_dir()
        return cold, "mypy without its cache" if cold else ""

    return probe


def make_steps(root: Path = ROOT) -> list[Step]:
    """The steps of make test, in the order the plan lists them."""
    packages = apt_packages(root)
    build_steps: list[Step] = []
    for group, names in (("kube", KUBE), ("node", NODE), ("tools", TOOLS), ("jaeger", JAEGER)):
        build_steps += [
            Step(
                f"modules-{group}",
                (BUILD, "--download", *names),
                probe=stale_binaries(root, names),
                yields=True,
            ),
            Step(
                f"build-{group}",
                (BUILD, *names),
                CPU,
                needs=(f"modules-{group}",),
                probe=stale_binaries(root, names),
            ),
        ]
    suite = ("venv", "postgres", "node-up", "images-platform")
    return [
        Step(
            "apt",
            ("bash", "-c", APT_SCRIPT, "apt", *packages),
            probe=missing_packages(packages),
            stoppable=False,
        ),
        Step("venv", ("scripts/venv.sh",), needs=("apt",), probe=venv_changed(root), yields=True),
        Step(
            "lint",
            ("make", "--no-print-directory", "lint"),
            CPU,
            needs=("venv",),
            probe=mypy_cache_missing(root),
            work_line=None,
        ),
        Step("postgres", ("scripts/postgres.sh", "up"), needs=("apt",)),
        Step("prometheus", ("scripts/prometheus.sh",), needs=("apt",)),
        Step("wrk", ("scripts/wrk.sh",), needs=("apt",)),
        Step("registry", ("scripts/cluster/registry.sh", "up"), needs=("apt",)),
        *build_steps,
        Step("image-base", ("scripts/images.sh", "base"), needs=("apt", "registry"), yields=True),
        Step(
            "images-platform",
            ("scripts/images.sh", "platform"),
            needs=("venv", "image-base"),
            yields=True,
        ),
        # After the platform's images: buildah's prune there must not race a build here.
        Step(
            "images-node",
            ("scripts/images.sh", "node"),
            needs=("image-base", "images-platform", "build-node", "build-jaeger", "modules-kube"),
            yields=True,
        ),
        Step(
            "node-up",
            ("scripts/cluster/node-up.sh",),
            needs=(
                "apt",
                "registry",
                "build-kube",
                "build-node",
                "build-tools",
                "build-jaeger",
                "images-node",
            ),
            work_line=r"==> starting",
        ),
        Step("pytest", (PYTEST,), CPU, needs=PREREQUISITES, title="pytest", foreground=True),
        Step(
            "pytest-e2e",
            (PYTEST, "-m", "e2e and not reliability", "tests/node"),
            CPU,
            needs=("venv", "node-up", "images-platform"),
            after=("pytest",),
            title="pytest: the end-to-end suite on the real node",
            foreground=True,
        ),
        Step(
            "pytest-reliability",
            (PYTEST, "-m", "reliability", "tests/reliability", "tests/node"),
            CPU,
            needs=suite,
            after=("pytest-e2e",),
            title="pytest: the reliability and security suite",
            foreground=True,
        ),
    ]


# The record -----------------------------------------------------------------------------------


def cache_dir() -> Path:
    """~/.cache/flotilla, or $FLOTILLA_CACHE, or $XDG_CACHE_HOME/flotilla (as scripts/cluster/lib.sh)."""
    if os.environ.get("FLOTILLA_CACHE"):
        return Path(os.environ["FLOTILLA_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "flotilla"


def kind_of(work: bool) -> str:
    """The record's key for a run with work ("work") or with nothing to do ("idle")."""
    return "work" if work else "idle"


class Timings:
    """The last measured duration of each step, apart for runs with work and runs without."""

    def __init__(self, path: Path, defaults: Mapping[str, tuple[float, float]] = DEFAULTS) -> None:
        self.path = path
        self.defaults = defaults
        self.steps: dict[str, dict[str, float | str]] = {}
        try:
            loaded = json.loads(path.read_text()).get("steps", {})
        except (OSError, ValueError, AttributeError):
            loaded = {}
        for name, entry in loaded.items() if isinstance(loaded, dict) else ():
            if isinstance(entry, dict):
                self.steps[str(name)] = {
                    key: value for key, value in entry.items() if isinstance(value, int | float | str)
                }

    def expected(self, name: str, work: bool) -> float:
        """Seconds the step should take: its last measure, else the shipped default."""
        measured = self.steps.get(name, {}).get(kind_of(work))
        if isinstance(measured, int | float):
            return float(measured)
        work_default, idle_default = self.defaults.get(name, (60.0, 1.0))
        return work_default if work else idle_default

    def last_had_work(self, name: str) -> bool:
        """Whether the step's last recorded run had work (True when never recorded)."""
        return self.steps.get(name, {}).get("last", "work") == "work"

    def measured(self, name: str, work: bool, seconds: float) -> None:
        """Record a successful run and save the record."""
        entry = self.steps.setdefault(name, {})
        entry[kind_of(work)] = round(seconds, 1)
        entry["last"] = kind_of(work)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"version": 1, "steps": self.steps}, indent=1, sort_keys=True) + "\n")
        temporary.replace(self.path)


# Scheduling -----------------------------------------------------------------------------------


def select(steps: Sequence[Step], targets: Iterable[str]) -> list[Step]:
    """The target steps and every step they need, in declaration order."""
    by_name = {step.name: step for step in steps}
    chosen: set[str] = set()
    todo = list(targets)
    while todo:
        name = todo.pop()
        if name not in by_name:
            raise ValueError(f"no step named {name}")
        if name not in chosen:
            chosen.add(name)
            todo += by_name[name].needs
    return [step for step in steps if step.name in chosen]


def dependencies(steps: Sequence[Step]) -> dict[str, set[str]]:
    """What each step waits for in this run: what it needs, and the steps of the run it comes after."""
    names = {step.name for step in steps}
    return {step.name: set(step.needs) | (set(step.after) & names) for step in steps}


def priorities(deps: Mapping[str, set[str]], durations: Mapping[str, float]) -> dict[str, float]:
    """Each step's longest expected path to the end of the run, its own duration included."""
    dependents: dict[str, list[str]] = {name: [] for name in deps}
    for name, before in deps.items():
        for other in before:
            dependents[other].append(name)
    rank: dict[str, float] = {}
    visiting: set[str] = set()

    def visit(name: str) -> float:
        if name not in rank:
            if name in visiting:
                raise ValueError(f"the steps' dependencies make a cycle through {name}")
            visiting.add(name)
            rank[name] = durations[name] + max((visit(other) for other in dependents[name]), default=0.0)
        return rank[name]

    for name in deps:
        visit(name)
    return rank


def startable(
    pending: Sequence[Step],
    done: Collection[str],
    running: Collection[Step],
    deps: Mapping[str, set[str]],
    rank: Mapping[str, float],
) -> list[Step]:
    """The steps to start now: every ready net step, and the most urgent ready cpu step if none runs.

    A foreground step runs alone: it waits for the running steps, and nothing starts beside it.
    """
    if any(step.foreground for step in running):
        return []
    ready = [step for step in pending if deps[step.name] <= set(done)]
    cpu_free = not any(step.resource == CPU for step in running)
    cpu_ready = [step for step in ready if step.resource == CPU]
    urgent = max(cpu_ready, key=lambda step: rank[step.name]) if cpu_ready and cpu_free else None
    if urgent and urgent.foreground:
        return [] if running else [urgent]
    return [step for step in ready if step.resource != CPU] + ([urgent] if urgent else [])


def simulate(
    steps: Sequence[Step],
    durations: Mapping[str, float],
    done: Collection[str] = (),
    running: Mapping[str, float] | None = None,
) -> dict[str, tuple[float, float]]:
    """Expected (start, end) of each step not done, in seconds from now, by the scheduler's own rules.

    ``running`` maps the running steps to the seconds they are expected to take still.
    """
    deps = dependencies(steps)
    rank = priorities(deps, durations)
    by_name = {step.name: step for step in steps}
    ends = dict(running or {})
    spans = {name: (0.0, end) for name, end in ends.items()}
    finished, now = set(done), 0.0
    pending = [step for step in steps if step.name not in finished and step.name not in ends]
    while pending or ends:
        for step in startable(pending, finished, [by_name[name] for name in ends], deps, rank):
            pending.remove(step)
            ends[step.name] = now + durations[step.name]
            spans[step.name] = (now, ends[step.name])
        if not ends:
            raise ValueError(f"steps wait for steps that are not in the run: {[s.name for s in pending]}")
        now = min(ends.values())
        for name in [name for name, end in ends.items() if end <= now]:
            del ends[name]
            finished.add(name)
    return spans


# Output ---------------------------------------------------------------------------------------


def duration(seconds: float) -> str:
    """1m05s, 42s, 0.4s."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"


def clock_at(seconds_from_now: float) -> str:
    """The wall-clock time that many seconds from now, HH:MM."""
    return time.strftime("%H:%M", time.localtime(time.time() + seconds_from_now))


def print_plan(
    goal: str,
    steps: Sequence[Step],
    work: Mapping[str, bool | None],
    details: Mapping[str, str],
    durations: Mapping[str, float],
    record: Path,
    out: TextIO,
) -> float:
    """Print each step with its work, expected duration and start, and the total; return the total."""
    spans = simulate(steps, durations)
    total = max((end for _, end in spans.values()), default=0.0)
    print(f"\033[1m==> make {goal}: the plan ({len(steps)} steps)\033[0m", file=out)
    print(f"    {'step':<22}{'on':<5}{'work':<6}{'expected':>9}{'starts':>9}  details", file=out)
    marks = {True: "yes", False: "no", None: "?"}
    for step in steps:
        start = spans[step.name][0]
        detail = details.get(step.name, "")
        line = (
            f"    {step.name:<22}{step.resource:<5}{marks[work[step.name]]:<6}"
            f"{duration(durations[step.name]):>9}{duration(start):>9}  {detail}"
        )
        print(line if len(line) <= 120 else line[:117] + "...", file=out)
    serial = sum(durations.values())
    print(
        f"    expected: {duration(total)}, done at ~{clock_at(total)}"
        f" (one after another: {duration(serial)}); durations from {record}",
        file=out,
    )
    return total


# Running --------------------------------------------------------------------------------------


@dataclass
class Running:
    """A started step."""

    step: Step
    process: subprocess.Popen[bytes]
    started: float
    expected: float
    log: Path | None
    handle: IO[bytes] | None
    cpu: float = 0.0


@dataclass
class Outcome:
    """What a run did: each finished step's (start, end) from the run's start, and the failed step."""

    spans: dict[str, tuple[float, float]] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    failed: str | None = None


class Pipeline:
    """Runs the steps of one goal, prints their progress, records their durations."""

    def __init__(
        self,
        steps: Sequence[Step],
        timings: Timings,
        work: Mapping[str, bool],
        logs: Path,
        out: TextIO = sys.stdout,
        status_every: float = STATUS_EVERY,
        poll: float = 0.2,
        root: Path = ROOT,
    ) -> None:
        self.steps = list(steps)
        self.timings = timings
        self.work = dict(work)
        self.logs = logs
        self.out = out
        self.status_every = status_every
        self.poll = poll
        self.root = root
        self.deps = dependencies(self.steps)
        self.rank = priorities(self.deps, {step.name: self.expected(step.name) for step in self.steps})
        self.running: dict[str, Running] = {}
        self.outcome = Outcome()
        self.started = time.monotonic()

    def expected(self, name: str) -> float:
        return self.timings.expected(name, self.work[name])

    def say(self, message: str) -> None:
        elapsed = int(time.monotonic() - self.started)
        print(f"[{elapsed // 60:2d}m{elapsed % 60:02d}s] {message}", file=self.out, flush=True)

    def eta(self) -> str:
        now = time.monotonic()
        remaining = {
            name: max(entry.expected - (now - entry.started), 0.0) for name, entry in self.running.items()
        }
        durations = {step.name: self.expected(step.name) for step in self.steps}
        spans = simulate(self.steps, durations, self.outcome.spans.keys(), remaining)
        left = max((end for _, end in spans.values()), default=0.0)
        return f"{len(self.outcome.spans)}/{len(self.steps)} done, ETA {duration(left)} (~{clock_at(left)})"

    def run(self) -> Outcome:
        """Run every step; on a failure stop the others. Ctrl-C (or SIGTERM) stops them all."""
        self.logs.mkdir(parents=True, exist_ok=True)
        pending = list(self.steps)
        last_status = time.monotonic()
        try:
            while pending or self.running:
                running = [entry.step for entry in self.running.values()]
                for step in startable(pending, self.outcome.spans.keys(), running, self.deps, self.rank):
                    pending.remove(step)
                    self.launch(step)
                if not self.running:
                    raise ValueError(f"steps wait for steps not in the run: {[s.name for s in pending]}")
                time.sleep(self.poll)
                ended = [name for name, entry in self.running.items() if reaped(entry)]
                for name in ended:
                    if not self.finish(self.running.pop(name)):
                        self.stop_all()
                        return self.outcome
                # Nothing running: the next step starts at the top of the loop and says so itself.
                foreground = any(entry.step.foreground for entry in self.running.values())
                if self.running and not foreground and time.monotonic() - last_status >= self.status_every:
                    self.status()
                    last_status = time.monotonic()
        except KeyboardInterrupt:
            self.say("interrupted")
            self.outcome.failed = "interrupted"
            self.stop_all()
        return self.outcome

    def launch(self, step: Step) -> None:
        log = None if step.foreground else self.logs / f"{step.name}.log"
        handle = log.open("wb") if log else None
        if step.foreground:
            print(f"\033[1m==> {step.title or step.name}\033[0m", file=self.out, flush=True)
        process = subprocess.Popen(  # noqa: S603 - the steps' own commands
            step.argv,
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT if handle else None,
            start_new_session=True,
        )
        entry = Running(step, process, time.monotonic(), self.expected(step.name), log, handle)
        self.running[step.name] = entry
        # No status lines while a foreground step writes to the terminal: its start says what is left.
        where = f"in the foreground; {self.eta()}" if step.foreground else f"log {self.relative(log)}"
        self.say(f"start  {step.name} ({step.resource}, expected {duration(entry.expected)}; {where})")

    def finish(self, entry: Running) -> bool:
        """Record a finished step; print its tail when it failed. True when it succeeded."""
        if entry.handle:
            entry.handle.close()
        ended = time.monotonic()
        took = ended - entry.started
        code = entry.process.returncode
        if code != 0:
            self.outcome.failed = entry.step.name
            self.say(f"FAILED {entry.step.name} (exit {code}) after {duration(took)}")
            if entry.log:
                self.tail(entry.log)
            return False
        work = entry.step.foreground or self.had_work(entry)
        self.timings.measured(entry.step.name, work, took)
        self.work[entry.step.name] = work
        self.outcome.spans[entry.step.name] = (entry.started - self.started, ended - self.started)
        self.outcome.cpu[entry.step.name] = entry.cpu
        nothing = "" if work else ", nothing to do"
        expected = duration(entry.expected)
        cpu = f"cpu {duration(entry.cpu)}, "
        self.say(
            f"done   {entry.step.name} in {duration(took)} ({cpu}expected {expected}{nothing}); {self.eta()}"
        )
        return True

    def had_work(self, entry: Running) -> bool:
        if entry.step.work_line is None:
            return self.work[entry.step.name]
        if entry.log is None:
            return True
        text = ANSI.sub("", entry.log.read_text(errors="replace"))
        return re.search(entry.step.work_line, text) is not None

    def status(self) -> None:
        now = time.monotonic()
        running = ", ".join(
            f"{name} {duration(now - entry.started)}/{duration(entry.expected)}"
            for name, entry in self.running.items()
        )
        self.say(f"running {running}; {self.eta()}")

    def tail(self, log: Path, lines: int = 30) -> None:
        print(f"    the last lines of {self.relative(log)}:", file=self.out)
        for line in log.read_text(errors="replace").splitlines()[-lines:]:
            print(f"    | {ANSI.sub('', line)}", file=self.out)
        self.out.flush()

    def stop_all(self) -> None:
        """Stop every running step (its whole process group); wait for those that must not be killed."""
        for name, entry in self.running.items():
            if not entry.step.stoppable:
                self.say(f"waiting for {name} to finish (stopping it halfway would break it)")
                entry.process.wait()
                continue
            self.say(f"stopping {name}")
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(entry.process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    entry.process.wait(timeout=STOP_GRACE)
                    break
                except subprocess.TimeoutExpired:
                    continue
            if entry.handle:
                entry.handle.close()
        self.running.clear()

    def relative(self, path: Path | None) -> str:
        if path is None:
            return ""
        return str(path.relative_to(self.root)) if path.is_relative_to(self.root) else str(path)


def reaped(entry: Running) -> bool:
    """Whether the step's process has ended; if so, ``entry.cpu`` is what its processes used.

    Reaping a child adds its CPU time and that of the children it reaped to ``RUSAGE_CHILDREN``:
    the difference across one ``poll`` is this step's (daemons it leaves running are not counted).
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    if entry.process.poll() is None:
        return False
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    entry.cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return True


def cpu_summary(outcome: Outcome, wall: float, cores: int) -> str:
    """How much CPU the steps used, against the wall time: the share a faster machine could save."""
    used = sum(outcome.cpu.values())
    busiest = sorted(outcome.cpu.items(), key=lambda item: item[1], reverse=True)[:4]
    top = ", ".join(f"{name} {duration(seconds)}" for name, seconds in busiest)
    return (
        f"cpu: {duration(used)} over {duration(wall)} on {cores} cores ({used / max(wall * cores, 1):.0%} "
        f"busy; the CPU work alone needs {duration(used / cores)}); most: {top}"
    )


# The command ----------------------------------------------------------------------------------


def predict(steps: Sequence[Step], timings: Timings) -> tuple[dict[str, bool | None], dict[str, str]]:
    """Each step's work from its probe (None: no probe or it cannot tell) and what its probe found."""
    work: dict[str, bool | None] = {}
    details: dict[str, str] = {}
    for step in steps:
        work[step.name], details[step.name] = step.probe() if step.probe else (None, "")
        if step.foreground:
            work[step.name] = True
    return work, details


def interrupt(signum: int, frame: object) -> None:
    """SIGTERM stops the run as Ctrl-C does."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    """Plan, then run, one goal of make test."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("goal", choices=sorted(GOALS))
    parser.add_argument("--plan", action="store_true", help="print the plan and stop")
    args = parser.parse_args(argv)
    steps = select(make_steps(), GOALS[args.goal])
    record = cache_dir() / "timings.json"
    timings = Timings(record)
    predicted, details = predict(steps, timings)
    # Unknown: as the step's last run was (with work when it never ran here).
    work = {
        name: timings.last_had_work(name) if known is None else known for name, known in predicted.items()
    }
    durations = {name: timings.expected(name, work[name]) for name in work}
    expected = print_plan(args.goal, steps, predicted, details, durations, record, out)
    if args.plan:
        return 0
    previous = signal.signal(signal.SIGTERM, interrupt)
    started = time.monotonic()
    try:
        outcome = Pipeline(steps, timings, work, ROOT / ".run" / "steps", out).run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    wall = time.monotonic() - started
    took = duration(wall)
    if outcome.cpu:
        print(cpu_summary(outcome, wall, os.cpu_count() or 1), file=out, flush=True)
    if outcome.failed == "interrupted":
        print(f"error: make {args.goal} interrupted after {took}", file=out, flush=True)
        return 130
    if outcome.failed:
        print(f"error: make {args.goal} failed at step {outcome.failed} after {took}", file=out, flush=True)
        return 1
    print(f"\033[1m==> make {args.goal}: done in {took} (expected {duration(expected)})\033[0m", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
