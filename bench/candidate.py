"""`run_candidate_test` wall time, where it goes, and what the same pytest runs cost by hand.

All on the test suite's sample service (tests/sample_service.py: a real git repository and the
event a real sentry-sdk reports for its "unknown_sku" crash), built in a temporary directory:

1. `run_candidate_for_issue` through every gate, with GOOD_TEST of tests/tools/judge/test_candidate.py and
   FIX_UNKNOWN_SKU, default gate settings (5 flaky repeats and 1 shuffled run): wall time of `--runs`
   calls after one untimed warm-up (the budget is reset between calls, outside the timing), the
   processes it starts, and where the time goes. The split comes from a Runner that times each pytest
   run (`_TimedRunner`, handed to the AppContext), and from timing shims around `workspace` and
   `map_code_path` (as `prodloop.tools.judge.candidate` sees them) and `subprocess.Popen` / `subprocess.run`.
2. `synthesize_regression_test` on the same issue (default settings): wall time.
3. The floor: a bare `python -m pytest -q -p no:cacheprovider <test node>` in a plain checkout of
   the deployed commit (`git archive`, the fix applied with `git apply`, the test written): once, once
   with pytest's plugin autoloading off (what the interpreter's installed plugins cost), as many times
   in a row as one candidate call starts pytest, and that many with one per CPU at a time (the floor a
   concurrent schedule could reach); the overhead ratios.
4. The read-only checkout protection: whether it was used, and what its `unshare` wrapper costs.

The test helpers (`tests.sample_service`, GOOD_TEST) are imported from the repository: this script
inserts the repository root into `sys.path` itself. Run from anywhere, with prodloop installed:

    python bench/candidate.py              # 5 timed runs of each measurement
    python bench/candidate.py --runs 15
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_ROOT))  # the test helpers below live in <repo>/tests

from prodloop.server.context import AppContext  # noqa: E402
from prodloop.server.ingest.importer import import_events  # noqa: E402
from prodloop.server.settings import load_settings, service_python  # noqa: E402
from prodloop.server.store import policy  # noqa: E402
from prodloop.tools.engine import sandbox  # noqa: E402
from prodloop.tools.engine.runner import Runner  # noqa: E402
from prodloop.tools.engine.sandbox import Limits, RunResult  # noqa: E402
from prodloop.tools.judge import candidate  # noqa: E402
from prodloop.tools.judge.candidate import CandidateResult, run_candidate_for_issue  # noqa: E402
from prodloop.tools.locate import code_path  # noqa: E402
from prodloop.tools.reproduce.synthesis import synthesize_regression_test  # noqa: E402
from tests.sample_service import FIX_UNKNOWN_SKU, SampleService  # noqa: E402
from tests.tools.judge.test_candidate import GOOD_TEST  # noqa: E402

MAX_RUNS = 50
ISSUE = 1
_PYTEST_PHASES = ("deployed run", "fixed run + coverage", "flaky repeats", "shuffled run")


# -- instrumentation --------------------------------------------------------------------------


@dataclass
class _Call:
    """What one instrumented call did: exclusive seconds per phase and the processes it started."""

    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    pytest_setup: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))  # outside pytest
    runs: Counter[str] = field(default_factory=Counter)
    processes: Counter[str] = field(default_factory=Counter)
    process_seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))  # subprocess.run
    protected: list[bool] = field(default_factory=list)


@dataclass(frozen=True)
class _TimedRunner(Runner):
    """The Runner, timing each pytest run by the gate phase it belongs to (wrapped, not patched)."""

    recorder: Any = None

    def pytest(self, ws: sandbox.Workspace, targets: Sequence[str], **options: Any) -> RunResult:
        if options.get("cover_files"):
            phase = "fixed run + coverage"
        elif options.get("shuffle_seed") is not None:
            phase = "shuffled run"
        elif options.get("hash_seed"):
            phase = "flaky repeats"
        else:
            phase = "deployed run"
        current = self.recorder.current
        started = time.perf_counter()
        result = super().pytest(ws, targets, **options)
        elapsed = time.perf_counter() - started
        current.seconds[phase] += elapsed
        current.pytest_setup[phase] += elapsed - result.wall_seconds
        current.runs[phase] += 1
        current.protected.append(result.protected_checkout)
        return result


class _Recorder:
    """Timing shims, installed for the bench's lifetime; `current` collects one call's numbers."""

    def __init__(self) -> None:
        self.current = _Call()

    def fresh(self) -> _Call:
        self.current = _Call()
        return self.current

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        # the names as `prodloop.tools.judge.candidate` imported them
        real_workspace, real_map = sandbox.workspace, code_path.map_code_path
        real_popen_init, real_run = subprocess.Popen.__init__, subprocess.run

        @contextlib.contextmanager
        def workspace(*args: Any, **kwargs: Any) -> Iterator[sandbox.Workspace]:
            started = time.perf_counter()
            inner = real_workspace(*args, **kwargs)
            ws = inner.__enter__()
            self.current.seconds["worktree add"] += time.perf_counter() - started
            try:
                yield ws
            finally:
                started = time.perf_counter()
                inner.__exit__(None, None, None)  # its own `finally` removes the worktree either way
                self.current.seconds["worktree remove + prune"] += time.perf_counter() - started

        def map_code_path(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return real_map(*args, **kwargs)
            finally:
                self.current.seconds["map_code_path"] += time.perf_counter() - started

        def popen_init(popen: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
            self.current.processes[_label(args)] += 1
            real_popen_init(popen, args, *rest, **kwargs)

        def run(args: Any, *rest: Any, **kwargs: Any) -> subprocess.CompletedProcess[Any]:
            started = time.perf_counter()
            try:
                return real_run(args, *rest, **kwargs)
            finally:
                self.current.process_seconds[_label(args)] += time.perf_counter() - started

        patches: list[tuple[Any, str, Any]] = [
            (candidate, "workspace", workspace),
            (candidate, "map_code_path", map_code_path),
            (subprocess.Popen, "__init__", popen_init),
            (subprocess, "run", run),
        ]
        saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
        try:
            for owner, name, value in patches:
                setattr(owner, name, value)
            yield
        finally:
            for owner, name, value in saved:
                setattr(owner, name, value)


def _label(args: Any) -> str:
    """A short name for a command: `git worktree add`, `pytest via unshare`, ..."""
    argv = args.split() if isinstance(args, str) else [os.fsdecode(a) for a in args]
    program = Path(argv[0]).name if argv else "?"
    if program in ("unshare", "sh") and "pytest" in argv[-1]:
        return f"pytest (via {program})"
    if program != "git":
        return program
    words, skip = [], False
    for arg in argv[1:]:
        if skip:
            skip = False
        elif arg in ("-C", "-c"):
            skip = True
        elif not arg.startswith("-"):
            words.append(arg)
            if words[0] != "worktree" or len(words) == 2:
                break
    return " ".join(["git", *words[:2]])


# -- statistics and printing ------------------------------------------------------------------

_W = 44  # label column


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:6.0f} ms"


def _line(label: str, values: Sequence[float]) -> str:
    p50, low, high = _pct(values, 0.5), min(values), max(values)
    return f"  {label:<{_W}} p50 {_ms(p50)}   min {_ms(low)}   max {_ms(high)}"


def _timed(action: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        out.append(time.perf_counter() - started)
    return out


# -- the measurements -------------------------------------------------------------------------


@dataclass
class _Bench:
    ctx: AppContext
    service: SampleService
    recorder: _Recorder
    runs: int
    scratch: Path


def _candidate(b: _Bench) -> tuple[float, int]:
    """[1]: the candidate run through every gate; its p50 and its pytest runs per call."""

    def call() -> tuple[CandidateResult, float]:
        policy.reset_budget(b.ctx.store, ISSUE, time.time())
        b.recorder.fresh()
        started = time.perf_counter()
        result = run_candidate_for_issue(
            *b.ctx.collaborators(), issue_id=ISSUE, test_code=GOOD_TEST, fix_diff=FIX_UNKNOWN_SKU
        )
        wall = time.perf_counter() - started
        if not result.passed:
            raise RuntimeError(f"the good test failed a gate: {[g for g in result.gates if not g.passed]}")
        return result, wall

    call()  # warm-up: opens the GitRepo and fills its caches, as a long-lived server has them
    walls: list[float] = []
    calls: list[_Call] = []
    for _ in range(b.runs):
        result, wall = call()
        walls.append(wall)
        calls.append(b.recorder.current)
    gates = b.ctx.settings.gates
    shuffled = "1 shuffled run" if gates.shuffle_with_module else "no shuffled run"
    print("[1] run_candidate_for_issue, every gate: GOOD_TEST + FIX_UNKNOWN_SKU, ", end="")
    print(f"{gates.flaky_runs} flaky repeats + {shuffled} ({b.runs} calls after 1 warm-up)")
    print(_line("wall", walls))
    state = "passed every gate" if result.passed else "FAILED"
    print(f"  {'result':<{_W}} {state}; checkout_protected={result.checkout_protected}", end="")
    print(f"; receipt cpu {result.cpu_seconds:.2f} s")
    last = calls[-1]
    pytest_runs = sum(last.runs.values())
    print(f"  {'processes per call':<{_W}} {sum(last.processes.values())} started from Python, {pytest_runs} pytest")
    for label, count in sorted(last.processes.items(), key=lambda kv: (-kv[1], kv[0])):
        spent = statistics.mean(c.process_seconds[label] for c in calls)
        timing = f"{spent * 1000 / count:5.1f} ms each" if spent else ""
        print(f"    {f'x{count} {label}':<{_W - 2}} {timing}".rstrip())
    mean_wall = statistics.mean(walls)
    print(f"  {f'split, mean of {b.runs} calls ({mean_wall * 1000:.0f} ms)':<{_W}}     ms   share   in-process set-up")
    for phase in ["map_code_path", "worktree add", *_PYTEST_PHASES, "worktree remove + prune"]:
        spent = statistics.mean(c.seconds[phase] for c in calls)
        label = f"pytest: {phase} x{last.runs[phase]}" if phase in _PYTEST_PHASES else phase
        setup = statistics.mean(c.pytest_setup[phase] for c in calls)
        extra = f"   {setup * 1000:6.1f} ms" if phase in _PYTEST_PHASES else ""
        print(f"    {label:<{_W - 2}} {spent * 1000:6.0f} {100 * spent / mean_wall:6.1f}%{extra}")
    rest = mean_wall - statistics.mean(sum(c.seconds.values()) for c in calls)
    print(f"    {'rest (git apply, gates, store)':<{_W - 2}} {rest * 1000:6.0f} {100 * rest / mean_wall:6.1f}%")
    return _pct(walls, 0.5), pytest_runs


def _synthesis(b: _Bench) -> None:
    """[2]: synthesize_regression_test on the same issue."""
    walls: list[float] = []
    for _ in range(b.runs):
        policy.reset_budget(b.ctx.store, ISSUE, time.time())
        b.recorder.fresh()
        started = time.perf_counter()
        result = synthesize_regression_test(*b.ctx.collaborators(), issue_id=ISSUE)
        walls.append(time.perf_counter() - started)
        if result.test_code is None:
            raise RuntimeError(f"synthesis did not reproduce: {result.attempts}")
    call = b.recorder.current
    print(f"[2] synthesize_regression_test, issue {ISSUE} = unknown_sku ({b.runs} calls)")
    print(_line("wall", walls))
    print(f"  {'result':<{_W}} calls {result.frame}; {sum(call.runs.values())} pytest run, ", end="")
    print(f"{sum(call.processes.values())} processes per call")


def _plain_checkout(b: _Bench, test_path: str) -> Path:
    """The deployed commit as plain files, with the fix applied and the test written."""
    dest = b.scratch / "plain"
    dest.mkdir()
    tar = subprocess.run(
        ["git", "-C", str(b.service.root), "archive", "--format=tar", b.service.commit],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(dest, filter="data")
    patch = b.scratch / "fix.diff"
    patch.write_text(FIX_UNKNOWN_SKU)
    subprocess.run(["git", "apply", str(patch)], cwd=dest, check=True, capture_output=True, timeout=60)
    (dest / test_path).write_text(GOOD_TEST)
    return dest


def _baseline(b: _Bench, candidate_p50: float, pytest_runs: int) -> None:
    """[3]: the same test by hand: once, `pytest_runs` times in a row, and that many at once."""
    node = f"tests/test_prodloop_issue_{ISSUE}.py::test_unknown_sku_costs_nothing"
    checkout = _plain_checkout(b, node.split("::")[0])
    command = [str(service_python(b.ctx.settings)), "-m", "pytest", "-q", "-p", "no:cacheprovider", node]

    def bare(**env: str) -> None:
        done = subprocess.run(command, cwd=checkout, capture_output=True, timeout=120, env={**os.environ, **env})
        if done.returncode != 0:
            raise RuntimeError(f"the bare run failed: {done.stdout.decode(errors='replace')[-500:]}")

    def in_a_row() -> None:
        for _ in range(pytest_runs):
            bare()

    def at_once() -> None:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda _: bare(), range(pytest_runs)))

    workers = os.cpu_count() or 1
    bare()  # warm-up: the OS page cache and the checkout's __pycache__
    single = _timed(bare, b.runs)
    no_plugins = _timed(lambda: bare(PYTEST_DISABLE_PLUGIN_AUTOLOAD="1"), b.runs)
    floor = _timed(in_a_row, b.runs)
    parallel = _timed(at_once, b.runs)
    p50 = _pct(single, 0.5)
    print(f"[3] bare `python -m pytest -q -p no:cacheprovider {node}`")
    print(f"    in a plain checkout (git archive + git apply), {b.runs} runs each after 1 warm-up")
    print(_line("one run", single))
    print(_line("one run, PYTEST_DISABLE_PLUGIN_AUTOLOAD=1", no_plugins))
    print(_line(f"{pytest_runs} runs in a row (the floor)", floor))
    print(_line(f"{pytest_runs} runs, {workers} at a time", parallel))
    ratio = candidate_p50 / (p50 * pytest_runs)
    print(f"  {'overhead ratio':<{_W}} candidate p50 / (bare p50 x {pytest_runs}) = {ratio:.2f}")
    print(f"  {'':<{_W}} candidate p50 / floor p50 = {candidate_p50 / _pct(floor, 0.5):.2f}")
    print(f"  {'':<{_W}} candidate p50 / one bare run = {candidate_p50 / p50:.1f}")


def _protection(b: _Bench, candidate_p50: float, pytest_runs: int, protected_runs: bool) -> None:
    """[4]: the read-only checkout's cost: `unshare` alone, and the whole wrapper `confine` builds."""
    repeats = max(20, 4 * b.runs)
    limits = Limits()
    protected, available = sandbox.confine(["true"], limits, sandbox.guard_for(b.ctx.settings))
    plain, _ = sandbox.confine(["true"], limits, None)
    commands = {
        "true": ["true"],
        "unshare --user --map-root-user --mount true": ["unshare", "--user", "--map-root-user", "--mount", "true"],
        "sandbox.confine(true), unprotected": plain,
        "sandbox.confine(true), protected": protected,
    }
    used = "used for every pytest run" if protected_runs else "NOT used"
    print(f"[4] read-only checkout (unshare): {'available' if available else 'NOT available'}, {used}", end="")
    print(f" ({repeats} runs each)")
    p50s = {}
    for label, command in commands.items():
        walls = _timed(functools.partial(subprocess.run, command, check=True, capture_output=True, timeout=30), repeats)
        p50s[label] = _pct(walls, 0.5)
        print(_line(label, walls))
    unshare = p50s["unshare --user --map-root-user --mount true"] - p50s["true"]
    wrapper = p50s["sandbox.confine(true), protected"] - p50s["sandbox.confine(true), unprotected"]
    print(f"  {'cost of unshare alone':<{_W}} {unshare * 1000:+.1f} ms per process")
    share = 100 * wrapper * pytest_runs / candidate_p50
    print(f"  {'cost of the protection per pytest run':<{_W}} {wrapper * 1000:+.1f} ms (unshare + 2 mounts); ", end="")
    print(f"x{pytest_runs} = {wrapper * pytest_runs * 1000:.0f} ms per candidate call, {share:.1f}% of its p50")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help=f"timed runs of each measurement (1-{MAX_RUNS})")
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= MAX_RUNS:
        parser.error(f"--runs must be between 1 and {MAX_RUNS}")
    git_version = subprocess.run(["git", "version"], capture_output=True, text=True, check=True).stdout.split()[-1]
    load = os.getloadavg()[0]
    print(f"run_candidate_test  (git {git_version}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs", end="")
    print(f", load average {load:.2f} at start)")
    scratch = Path(tempfile.mkdtemp(prefix="prodloop-bench-candidate-"))
    recorder = _Recorder()
    try:
        service = SampleService(scratch / "shop")
        ctx = AppContext.open(load_settings(repo=service.root, data_dir=scratch / "data", triage={"mode": "off"}))
        try:
            import_events(ctx, ctx.store.create_project("shop"), [("e", service.event("unknown_sku"))], source="bench")
            ctx.with_runner(_TimedRunner(**vars(Runner.from_settings(ctx.settings)), recorder=recorder))
            bench = _Bench(ctx=ctx, service=service, recorder=recorder, runs=args.runs, scratch=scratch)
            with recorder.installed():
                candidate_p50, pytest_runs = _candidate(bench)
                protected_runs = all(recorder.current.protected)
                _synthesis(bench)
            _baseline(bench, candidate_p50, pytest_runs)
            _protection(bench, candidate_p50, pytest_runs, protected_runs)
        finally:
            ctx.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
