"""`mutate_validate` against a full `mutmut run` and against the floor, on a generated package.

The package (`bench/_mutation_package.py`): "storefront", 2,500 lines in 15 modules, 176 passing
tests, in a real git repository in a temporary directory; `orders.parse_price` has a real bug, and a
real sentry-sdk event captures its crash.

1. Full run: `python -m mutmut run` in a copy of the repository, whole suite, `[tool.mutmut]` with
   source_paths, forkserver isolation and tight timeouts; counts from `mutants/**/*.meta`.
2. `mutate_validate` through the real path: store, the captured event, `run_candidate_for_issue`
   with the regression test and the fix (gates: one flaky run), then `mutate_validate` (timed,
   `--runs` times), split into phases by timing shims (a wrapped worktree, coverage run and driver;
   the driver runs inside a shim that stamps its own phases).
3. Floor: `python -m pytest -q <node>` in a copy of the fixed tree (start-up), plus mutants x one
   in-process `pytest.main([node])` in a forked child (median), as in /work/shared/notes/mutmut-3x.md;
   also measured: the same child with PYTEST_DISABLE_PLUGIN_AUTOLOAD=1.

Run from the repository root:

    python bench/mutation.py                    # all three parts, 3 runs of mutate_validate
    python bench/mutation.py --skip-full --runs 5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _mutation_package as pkg
from mutmut.stats import status_by_exit_code

import prodloop.tools.judge.mutation as mutation
from prodloop.server.context import AppContext
from prodloop.server.ingest.importer import import_events
from prodloop.server.settings import load_settings
from prodloop.tools.engine.runner import Runner
from prodloop.tools.engine.sandbox import RunResult, Workspace
from prodloop.tools.judge.candidate import run_candidate_for_issue

GOAL_VS_FULL = 20.0
GOAL_VS_FLOOR = 1.3
WORKERS = max(1, os.cpu_count() or 1)  # what the driver and `mutmut run` use
NODE = f"{pkg.TEST_PATH}::{pkg.TEST_NAME}"
_MUTMUT_CONFIG = f"""
[tool.mutmut]
source_paths = ["{pkg.PACKAGE}"]
process_isolation = "forkserver"
timeout_multiplier = 2.0
timeout_constant = 0.5
use_git_change_detection = false
"""
_PYTEST_ARGS = ["-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-o", "addopts="]


def _env(**extra: str) -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR")
    return {**{k: os.environ[k] for k in keep if k in os.environ}, "PYTHONDONTWRITEBYTECODE": "1", **extra}


# -- 1. the full mutmut run ----------------------------------------------------------------------


def full_run(repo: Path, scratch: Path) -> tuple[float, Counter[str]]:
    copy = scratch / "full"
    shutil.copytree(repo, copy, ignore=shutil.ignore_patterns(".git"))
    with open(copy / "pyproject.toml", "a") as fh:
        fh.write(_MUTMUT_CONFIG)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "mutmut", "run", "--max-children", str(WORKERS)],
        cwd=copy, env=_env(), capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"mutmut run failed ({done.returncode}): {(done.stdout + done.stderr)[-1500:]}")
    counts: Counter[str] = Counter()
    for meta in (copy / "mutants").rglob("*.meta"):
        for code in json.loads(meta.read_text())["exit_code_by_key"].values():
            counts[status_by_exit_code[code]] += 1
    return wall, counts


# -- 2. mutate_validate, with timing shims -------------------------------------------------------

_SHIM = """
import json, os, sys, time
marks = [("driver spawn: unshare + interpreter start", time.monotonic())]
os.environ.update({env!r})
import importlib.util
spec = importlib.util.spec_from_file_location("_real_driver", {real!r})
driver = importlib.util.module_from_spec(spec)
spec.loader.exec_module(driver)
import libcst, pytest, mutmut.configuration, mutmut.mutation.file_mutation
marks.append(("driver imports: libcst, pytest, mutmut", time.monotonic()))
emit, run_child = driver._emit, driver._run_child
def _emit(message):
    if message.get("event") == "generated":
        marks.append(("mutant generation (mutmut's generator)", time.monotonic()))
    emit(message)
def _run_child(*args, **kwargs):
    code = run_child(*args, **kwargs)
    marks.append(("clean run (one forked child)", time.monotonic()))
    return code
driver._emit, driver._run_child = _emit, _run_child
try:
    code = driver.main()
finally:
    marks.append(("mutants", time.monotonic()))
    with open({out!r}, "w") as fh:
        json.dump(marks, fh)
sys.exit(code)
"""


@dataclass(frozen=True)
class _MarkingRunner(Runner):
    """The Runner, marking the coverage pre-run's start and end on the shims' timeline."""

    shims: Any = None

    def pytest(self, ws: Workspace, targets: Sequence[str], **options: Any) -> RunResult:
        self.shims.mark("apply fix, write test")
        result = super().pytest(ws, targets, **options)
        self.shims.mark("coverage pre-run (pytest subprocess)")
        return result


class Shims:
    """Wraps mutation's collaborators so that each call leaves a timeline of (phase that ended, time)."""

    def __init__(self, scratch: Path, **env: str) -> None:
        self.marks: list[tuple[str, float]] = []
        self.driver_marks = scratch / "driver-marks.json"
        self.shim = scratch / f"shim{len(env)}" / "mutate_driver.py"
        self.shim.parent.mkdir()
        self.shim.write_text(_SHIM.format(real=str(mutation._DRIVER), out=str(self.driver_marks), env=env))

    @contextlib.contextmanager
    def installed(self, ctx: AppContext) -> Iterator[Shims]:
        names = ("map_code_path", "workspace", "_drive", "_DRIVER")
        saved = {n: getattr(mutation, n) for n in names}
        real_map, real_ws, real_drive = (saved[n] for n in names[:3])

        def map_code_path(*args: Any, **kwargs: Any) -> Any:
            result = real_map(*args, **kwargs)
            self.mark("receipt + map_code_path")
            return result

        @contextlib.contextmanager
        def workspace(*args: Any) -> Iterator[Any]:
            with real_ws(*args) as ws:
                self.mark("git worktree add")
                yield ws
                self.mark("mutants: driver exit, results read")
            self.mark("git worktree remove + prune")

        def drive(*args: Any, **kwargs: Any) -> Any:
            self.mark("target lines")
            return real_drive(*args, **kwargs)

        replaced = dict(zip(names, (map_code_path, workspace, drive, self.shim), strict=True))
        for name, value in replaced.items():
            setattr(mutation, name, value)
        plain = Runner.from_settings(ctx.settings)
        ctx.with_runner(_MarkingRunner(**vars(plain), shims=self))  # the runs themselves: wrapped, not patched
        try:
            yield self
        finally:
            ctx.with_runner(plain)
            for name, value in saved.items():
                setattr(mutation, name, value)

    def mark(self, phase: str) -> None:
        self.marks.append((phase, time.monotonic()))

    def take(self) -> list[tuple[str, float]]:
        """Seconds per phase of the last call, in order; a phase is named by the mark that ends it."""
        driver = [(p, t) for p, t in json.loads(self.driver_marks.read_text())]
        marks = sorted([*self.marks, *driver], key=lambda m: m[1])
        self.marks = []
        self.driver_marks.unlink()
        return [(name, t - marks[i][1]) for i, (name, t) in enumerate(marks[1:])]


def receipt(scratch: Path, repo: Path) -> AppContext:
    settings = load_settings(repo=repo, data_dir=scratch / "data", gates={"flaky_runs": 1}, triage={"mode": "off"})
    ctx = AppContext.open(settings)
    event = pkg.capture(repo, release="storefront@2.4.0")
    import_events(ctx, ctx.store.create_project("storefront"), [("crash", event)], source="bench")
    return ctx


# -- 3. the floor --------------------------------------------------------------------------------

_ONE_RUN = """
import json, os, statistics, sys, time
import pytest
root, args, runs = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
sys.path.insert(0, root)
os.chdir(root)
seconds = []
for _ in range(runs):
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os._exit(int(pytest.main(args)))
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    seconds.append(time.perf_counter() - started)
print(statistics.median(seconds))
"""


def fixed_tree(repo: Path, scratch: Path) -> Path:
    tree = scratch / "floor"
    shutil.copytree(repo, tree, ignore=shutil.ignore_patterns(".git"))
    (tree / pkg.BUGGY_PATH).write_text(pkg.FIXED_SOURCE)
    (tree / pkg.TEST_PATH).write_text(pkg.REGRESSION_TEST)
    return tree


def startup(tree: Path, runs: int, **env: str) -> float:
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "pytest", *_PYTEST_ARGS, NODE], cwd=tree, env=_env(**env), check=True,
            capture_output=True, timeout=120,
        )  # fmt: skip
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def one_run(tree: Path, runs: int, **env: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", _ONE_RUN, str(tree), json.dumps([*_PYTEST_ARGS, NODE]), str(runs)],
        env=_env(PYTHONPATH=str(tree), **env), check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return float(done.stdout)


# -- report --------------------------------------------------------------------------------------


def verdict(ratio: float, goal: float, *, at_least: bool) -> str:
    return "met" if (ratio >= goal if at_least else ratio <= goal) else "MISSED"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--skip-full", action="store_true", help="skip the full `mutmut run` (minutes)")
    parser.add_argument("--runs", type=int, default=3, help="timed mutate_validate calls (1-20)")
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 20:
        parser.error("--runs must be 1-20")
    with tempfile.TemporaryDirectory(prefix="prodloop-bench-mutation-") as tmp:
        scratch = Path(tmp)
        repo = scratch / "storefront"
        repo.mkdir()
        pkg.build(repo)
        files = pkg.files()
        lines = sum(len(t.splitlines()) for p, t in files.items() if p.startswith(f"{pkg.PACKAGE}/"))
        tests = sum(t.count("\ndef test_") for p, t in files.items() if p.startswith("tests/"))
        modules = sum(1 for p in files if p.startswith(f"{pkg.PACKAGE}/"))
        print(f"mutate_validate  (Python {sys.version.split()[0]}, {WORKERS} workers; goals: full run / "
              f"mutate_validate >= {GOAL_VS_FULL:g}x, mutate_validate / floor <= {GOAL_VS_FLOOR:g}x)")  # fmt: skip
        print(f"package: {lines} lines in {modules} modules, {tests} tests; target {pkg.BUGGY_PATH}::parse_price")

        full_wall = None
        if not args.skip_full:
            full_wall, counts = full_run(repo, scratch)
            total = sum(counts.values())
            detail = ", ".join(f"{k} {v}" for k, v in counts.most_common())
            print(f"\n1. full `mutmut run` (whole suite, forkserver): {full_wall:.1f} s, {total} mutants ({detail})")

        ctx = receipt(scratch, repo)
        try:
            candidate = run_candidate_for_issue(
                *ctx.collaborators(), issue_id=1, test_code=pkg.REGRESSION_TEST, test_path=pkg.TEST_PATH,
                test_name=pkg.TEST_NAME, fix_diff=pkg.FIX_DIFF,
            )  # fmt: skip
            if not candidate.passed:
                raise RuntimeError(f"the candidate failed its gates: {candidate.gates}")
            walls, splits, result = [], [], None
            with Shims(scratch).installed(ctx) as shims:
                for _ in range(args.runs):
                    shims.mark("start")
                    result = mutation.mutate_validate(*ctx.collaborators(), receipt_id=candidate.receipt_id)
                    shims.mark("store verdict")
                    walls.append(shims.marks[-1][1] - shims.marks[0][1])
                    splits.append(shims.take())
            with Shims(scratch, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1").installed(ctx) as shims:
                shims.mark("start")
                trial = mutation.mutate_validate(*ctx.collaborators(), receipt_id=candidate.receipt_id)
                shims.mark("store verdict")
                trial_wall, trial_split = shims.marks[-1][1] - shims.marks[0][1], dict(shims.take())
        finally:
            ctx.close()
        assert result is not None
        mv = statistics.median(walls)
        print(f"\n2. mutate_validate (culprit, 1 test), {args.runs} runs: median {mv:.2f} s "
              f"(min {min(walls):.2f}, max {max(walls):.2f}); {result.mutants} mutants, score {result.score} "
              f"(killed {result.killed}, survived {result.survived}, timeout {result.timeout})")  # fmt: skip
        for i, (phase, _) in enumerate(splits[0]):
            seconds = statistics.median(s[i][1] for s in splits)
            print(f"   {phase:<44} {seconds * 1000:7.0f} ms  {seconds / mv:4.0%}")

        print(f"   prototype, the driver's children with PYTEST_DISABLE_PLUGIN_AUTOLOAD=1: {trial_wall:.2f} s "
              f"(mutants {trial_split['mutants']:.2f} s, clean run {trial_split['clean run (one forked child)']:.2f} s)"
              f"; score {trial.score}, killed {trial.killed}, survived {trial.survived}")  # fmt: skip

        tree = fixed_tree(repo, scratch)
        fixed, one = startup(tree, 5), one_run(tree, 15)
        fixed_np, one_np = (
            startup(tree, 5, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1"),
            one_run(tree, 15, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1"),
        )
        floor = fixed + result.mutants * one
        floor_parallel = fixed + -(-result.mutants // WORKERS) * one
        print(f"\n3. floor: start-up `python -m pytest -q <node>` {fixed * 1000:.0f} ms + {result.mutants} mutants "
              f"x {one * 1000:.1f} ms (pytest.main in a forked child, median of 15) = {floor:.2f} s")  # fmt: skip
        print(f"   with {WORKERS} workers: {floor_parallel:.2f} s; with PYTEST_DISABLE_PLUGIN_AUTOLOAD=1: start-up "
              f"{fixed_np * 1000:.0f} ms, one run {one_np * 1000:.1f} ms")  # fmt: skip

        print()
        if full_wall is not None:
            ratio = full_wall / mv
            print(f"full run / mutate_validate = {ratio:.1f}x  (goal >= {GOAL_VS_FULL:g}x)  "
                  f"{verdict(ratio, GOAL_VS_FULL, at_least=True)}")  # fmt: skip
        ratio = mv / floor
        print(f"mutate_validate / floor = {ratio:.2f}x  (goal <= {GOAL_VS_FLOOR:g}x)  "
              f"{verdict(ratio, GOAL_VS_FLOOR, at_least=False)}")  # fmt: skip
        ratio = mv / floor_parallel
        print(f"mutate_validate / {WORKERS}-worker floor = {ratio:.2f}x  (goal <= {GOAL_VS_FLOOR:g}x)  "
              f"{verdict(ratio, GOAL_VS_FLOOR, at_least=False)}")  # fmt: skip


if __name__ == "__main__":
    main()
