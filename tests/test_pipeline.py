"""scripts/pipeline.py, make test's scheduler, on tiny fake steps: order, cpu limit, failure, ETAs."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import pytest

from scripts import pipeline
from scripts.pipeline import CPU, NET, Outcome, Pipeline, Step, Timings


def sleep(seconds: float, marker: str = "==> working") -> tuple[str, ...]:
    """A step's command: print a step line (it had work), then sleep."""
    return ("sh", "-c", f"echo '{marker}'; sleep {seconds}")


def run(
    tmp_path: Path, steps: list[Step], defaults: dict[str, tuple[float, float]] | None = None
) -> tuple[Outcome, str, Timings]:
    timings = Timings(tmp_path / "timings.json", defaults or {})
    out = io.StringIO()
    work = {step.name: True for step in steps}
    outcome = Pipeline(steps, timings, work, tmp_path / "logs", out, status_every=0.2, poll=0.02).run()
    return outcome, out.getvalue(), timings


def overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    return min(a[1], b[1]) - max(a[0], b[0])


def test_a_step_starts_only_after_the_steps_it_needs(tmp_path: Path) -> None:
    steps = [
        Step("first", sleep(0.3)),
        Step("second", sleep(0.1), CPU, needs=("first",)),
        Step("third", sleep(0.1), needs=("first", "second")),
    ]
    outcome, _, _ = run(tmp_path, steps)
    assert outcome.failed is None
    spans = outcome.spans
    assert spans["second"][0] >= spans["first"][1]
    assert spans["third"][0] >= max(spans["first"][1], spans["second"][1])


def test_never_two_cpu_steps_at_once(tmp_path: Path) -> None:
    steps = [Step(f"build-{index}", sleep(0.25), CPU) for index in range(3)]
    outcome, _, _ = run(tmp_path, steps)
    spans = sorted(outcome.spans.values())
    assert len(spans) == 3
    for before, after in pairwise(spans):
        assert after[0] >= before[1], spans


def test_net_steps_run_beside_a_cpu_step_and_each_other(tmp_path: Path) -> None:
    steps = [
        Step("build", sleep(0.6), CPU),
        Step("download", sleep(0.6), NET),
        Step("apt", sleep(0.6), NET),
    ]
    started = time.monotonic()
    outcome, _, _ = run(tmp_path, steps)
    took = time.monotonic() - started
    spans = outcome.spans
    assert overlap(spans["build"], spans["download"]) > 0.4
    assert overlap(spans["download"], spans["apt"]) > 0.4
    assert took < 1.5


def test_a_failure_stops_the_running_steps_and_names_the_step(tmp_path: Path) -> None:
    marker = tmp_path / "survived"
    steps = [
        Step("download", ("sh", "-c", f"sleep 20; touch {marker}")),
        Step("build", ("sh", "-c", "echo compiling; echo 'undefined: Foo' >&2; sleep 0.2; exit 3"), CPU),
        Step("later", sleep(0.1), needs=("build",)),
    ]
    started = time.monotonic()
    outcome, out, _ = run(tmp_path, steps)
    assert time.monotonic() - started < 10
    assert outcome.failed == "build"
    assert "later" not in outcome.spans and "download" not in outcome.spans
    assert "FAILED build (exit 3)" in out
    assert "| undefined: Foo" in out
    assert "stopping download" in out
    time.sleep(0.3)
    assert not marker.exists()


def test_a_failure_waits_for_a_step_that_must_not_be_killed(tmp_path: Path) -> None:
    marker = tmp_path / "installed"
    steps = [
        Step("apt", ("sh", "-c", f"sleep 0.6; touch {marker}"), stoppable=False),
        Step("build", ("false",), CPU),
    ]
    outcome, out, _ = run(tmp_path, steps)
    assert outcome.failed == "build"
    assert marker.exists()
    assert "waiting for apt to finish" in out


def test_sigterm_stops_the_run_and_its_steps(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    code = f"""
import sys
from scripts import pipeline
steps = [pipeline.Step("download", ("sh", "-c", "echo $$ > {pid_file}; exec sleep 20"))]
pipeline.make_steps = lambda: steps
pipeline.GOALS["test"] = ("download",)
sys.exit(pipeline.main(["test"]))
"""
    env = {**os.environ, "FLOTILLA_CACHE": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "-c", code], cwd=pipeline.ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    out = ""
    while "start  download" not in out:
        out += process.stdout.readline()
    while not pid_file.exists() or not pid_file.read_text().strip():
        time.sleep(0.02)
    process.terminate()
    out += process.communicate(timeout=15)[0]
    assert process.returncode == 130
    assert "stopping download" in out and "error: make test interrupted" in out
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


def test_main_exits_non_zero_naming_the_failed_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOTILLA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(pipeline, "ROOT", tmp_path)
    steps = [Step("setup", sleep(0.05)), Step("suite", ("false",), CPU, needs=("setup",))]
    monkeypatch.setattr(pipeline, "make_steps", lambda: steps)
    monkeypatch.setitem(pipeline.GOALS, "test", ("suite",))
    out = io.StringIO()
    assert pipeline.main(["test"], out) == 1
    assert "error: make test failed at step suite" in out.getvalue()


def test_the_record_keeps_runs_with_work_apart_from_runs_without(tmp_path: Path) -> None:
    steps = [Step("images", sleep(0.3)), Step("venv", sleep(0.05, marker="    up to date"))]
    _, out, _ = run(tmp_path, steps)
    record = json.loads((tmp_path / "timings.json").read_text())["steps"]
    assert 0.3 <= record["images"]["work"] < 1.5
    assert record["venv"]["last"] == "idle" and "work" not in record["venv"]
    assert "done   venv in" in out and "nothing to do" in out

    # A warm run (nothing to do) of images does not replace the cold figure.
    run(tmp_path, [Step("images", sleep(0.05, marker="    images are up to date"))])
    again = Timings(tmp_path / "timings.json", {"images": (99.0, 99.0)})
    assert again.expected("images", work=True) == record["images"]["work"]
    assert again.expected("images", work=False) < 0.3
    assert not again.last_had_work("images")
    # Never measured: the shipped default.
    assert again.expected("lint", work=True) == 60.0


def test_the_plan_reads_the_record_and_its_eta_is_the_critical_path(tmp_path: Path) -> None:
    path = tmp_path / "timings.json"
    steps = [
        Step("apt", ("true",)),
        Step("download", ("true",)),
        Step("build", ("true",), CPU, needs=("download",)),
        Step("lint", ("true",), CPU, needs=("apt",)),
        Step("suite", ("true",), CPU, needs=("build", "lint"), foreground=True),
    ]
    timings = Timings(path, {})
    for name, seconds in {"apt": 60, "download": 30, "build": 600, "lint": 50, "suite": 300}.items():
        timings.measured(name, True, seconds)
    timings = Timings(path, {})
    durations = {step.name: timings.expected(step.name, True) for step in steps}
    out = io.StringIO()
    work: dict[str, bool | None] = {step.name: True for step in steps}
    total = pipeline.print_plan("test", steps, work, {"build": "kube-apiserver etcd"}, durations, path, out)
    # lint waits for the build (one cpu step at a time; the build is on the longer path), then the suite.
    assert total == 30 + 600 + 50 + 300
    text = out.getvalue()
    for step in steps:
        assert step.name in text
    assert "expected: 16m20s" in text
    assert "one after another: 17m20s" in text
    assert "kube-apiserver etcd" in text
    assert str(path) in text


def test_the_eta_counts_the_resource_limit_not_the_sum() -> None:
    cpu = [Step("a", ("true",), CPU), Step("b", ("true",), CPU)]
    net = [Step("c", ("true",)), Step("d", ("true",))]
    durations = {"a": 10.0, "b": 10.0, "c": 10.0, "d": 10.0}
    assert max(end for _, end in pipeline.simulate(cpu, durations).values()) == 20
    assert max(end for _, end in pipeline.simulate(net, durations).values()) == 10
    assert max(end for _, end in pipeline.simulate(cpu + net, durations).values()) == 20
    # Running for 4 s of 10: 6 s left, then the other cpu step.
    spans = pipeline.simulate(cpu, durations, running={"a": 6.0})
    assert spans["b"] == (6.0, 16.0)


def test_a_foreground_step_runs_alone_and_writes_to_the_terminal(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    steps = [
        Step("download", sleep(0.3)),
        Step("build", sleep(0.1), CPU),
        Step(
            "suite",
            ("sh", "-c", "sleep 0.2; echo suite output"),
            CPU,
            needs=("build",),
            foreground=True,
            title="pytest: the suite",
        ),
        Step("images", sleep(0.3), needs=("build",)),
        Step("after", sleep(0.1), needs=("suite",)),
    ]
    outcome, out, _ = run(tmp_path, steps)
    suite = outcome.spans.pop("suite")
    for name, span in outcome.spans.items():
        assert overlap(suite, span) <= 0, (name, span, suite)
    assert "suite output" in capfd.readouterr().out
    assert "==> pytest: the suite" in out
    assert not (tmp_path / "logs" / "suite.log").exists()
    assert "==> working" in (tmp_path / "logs" / "download.log").read_text()


def test_status_lines_show_the_running_steps_and_the_eta(tmp_path: Path) -> None:
    _, out, _ = run(tmp_path, [Step("build", sleep(0.7), CPU)], {"build": (100.0, 1.0)})
    status = [line for line in out.splitlines() if "running build" in line]
    assert status, out
    assert "/1m40s" in status[0] and "0/1 done, ETA" in status[0]


def test_no_status_line_between_one_step_and_the_next(tmp_path: Path) -> None:
    steps = [Step("first", sleep(0.2)), Step("second", sleep(0.2), needs=("first",))]
    out = io.StringIO()
    timings = Timings(tmp_path / "timings.json", {})
    work = {step.name: True for step in steps}
    Pipeline(steps, timings, work, tmp_path / "logs", out, status_every=0.0, poll=0.02).run()
    status = [line for line in out.getvalue().splitlines() if "] running" in line]
    assert status and all("running first" in line or "running second" in line for line in status), status


def test_a_goal_selects_what_it_needs_and_orders_by_after() -> None:
    steps = pipeline.make_steps()
    e2e = {step.name for step in pipeline.select(steps, pipeline.GOALS["test-e2e"])}
    assert {"pytest-e2e", "node-up", "images-platform", "build-node", "apt"} <= e2e
    assert "pytest" not in e2e and "lint" not in e2e
    chosen = pipeline.select(steps, pipeline.GOALS["test"])
    deps = pipeline.dependencies(chosen)
    assert "pytest" in deps["pytest-e2e"] and "pytest-e2e" in deps["pytest-reliability"]
    assert [step.name for step in chosen if step.foreground] == ["pytest", "pytest-e2e", "pytest-reliability"]


def test_the_apt_step_installs_every_package_the_scripts_install_in_one_call() -> None:
    packages = pipeline.apt_packages()
    for name in (
        "postgresql",
        "prometheus",
        "wrk",
        "containerd",
        "buildah",
        "debootstrap",
        "docker-registry",
    ):
        assert name in packages
    apt = next(step for step in pipeline.make_steps() if step.name == "apt")
    assert apt.command[-len(packages) :] == tuple(packages)
    later = [step for step in pipeline.make_steps() if step.name not in ("apt",) and "apt" in step.needs]
    assert {"venv", "postgres", "prometheus", "wrk", "registry"} <= {step.name for step in later}


def test_the_cache_follows_flotilla_cache_then_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FLOTILLA_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert pipeline.cache_dir() == tmp_path / "xdg" / "flotilla"
    monkeypatch.setenv("FLOTILLA_CACHE", str(tmp_path / "mine"))
    assert pipeline.cache_dir() == tmp_path / "mine"


def test_each_step_is_charged_the_cpu_its_processes_used(tmp_path: Path) -> None:
    # The busy step spins in a grandchild (as a build's compilers run under make and go).
    script = tmp_path / "spin.py"
    script.write_text(
        "import time\nend = time.process_time() + 0.5\nwhile time.process_time() < end:\n    pass\n"
    )
    spin = f"{sys.executable} {script}"
    steps = [
        Step("busy", ("sh", "-c", f"echo '==> spinning'; sh -c \"{spin}\"")),
        Step("idle", sleep(0.6), NET),
    ]
    outcome, out, _ = run(tmp_path, steps)
    assert outcome.failed is None
    assert 0.45 <= outcome.cpu["busy"] < 1.5
    assert outcome.cpu["idle"] < 0.2
    assert "done   busy in" in out and "cpu " in out
    summary = pipeline.cpu_summary(outcome, wall=1.0, cores=2)
    assert summary.startswith(f"cpu: {pipeline.duration(sum(outcome.cpu.values()))} over 1.0s on 2 cores")
    assert "most: busy" in summary


def test_a_yielding_step_runs_at_a_lower_cpu_priority_and_the_others_do_not(tmp_path: Path) -> None:
    steps = [
        Step(name, ("sh", "-c", f"echo '==> niceness'; nice > {tmp_path / name}"), yields=name == "download")
        for name in ("download", "build")
    ]
    outcome, _, _ = run(tmp_path, steps)
    assert outcome.failed is None
    ours = os.nice(0)
    assert int((tmp_path / "download").read_text()) == min(ours + pipeline.YIELDING_NICENESS, 19)
    assert int((tmp_path / "build").read_text()) == ours
    kinds = {step.name: step.yields for step in pipeline.make_steps()}
    assert kinds["venv"] and kinds["images-platform"] and kinds["modules-kube"]
    # Steps that start daemons keep the run's priority: their daemons serve the suites.
    assert not any(kinds[name] for name in ("postgres", "registry", "node-up", "prometheus"))
    assert not any(kinds[name] for name in kinds if name.startswith(("build-", "pytest")))
