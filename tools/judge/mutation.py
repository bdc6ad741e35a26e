"""`mutate_validate`: does the regression test fail when the code it guards is broken?

Only what the test claims to guard is mutated. By default (`fix`) that is the statements the
fix changed and the crash statement, with the fix applied: a single-input regression test is
held to the code it is about, not to every branch of a long function. `culprit` mutates the
whole culprit function, `path` every function on the mapped path. mutmut's generator makes
the mutants on prodloop's side (`child/mutate_generate.py`, from the sources read before any test
ran); prodloop's driver (`child/mutate_driver.py`) runs each in a child forked from a clean parent
in the service's interpreter, inside a throwaway worktree, never in this process. Before
mutating, a coverage run checks which target lines the tests execute, so that "survived"
never just means "not run"; unexecuted lines are reported and not mutated.

A regression test claims the behaviour of its own inputs, not of every input. A survivor that
changed nothing the tests' calls could observe (what every call a test file makes returned,
raised or left in its arguments, equal to the unmutated run's) is `unexercised`: listed with
its diff, not scored. The score is over the mutants the tests'
inputs do tell apart, so a survivor there is a real weakness of the test's assertions; a test
whose inputs tell no mutant apart proves nothing and fails.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

from prodloop.server.clock import Clock
from prodloop.server.errors import MutationRefused, ProdloopError
from prodloop.server.settings import GateSettings, Settings
from prodloop.server.store import Store, receipts
from prodloop.server.store.receipts import MutationResult, Scope, SurvivingMutant
from prodloop.tools import budget
from prodloop.tools.engine.diffs import added_lines, code_lines, statement_lines, statement_spans
from prodloop.tools.engine.functions import FunctionIndex
from prodloop.tools.engine.git_repo import GitRepo
from prodloop.tools.engine.runner import Runner
from prodloop.tools.engine.sandbox import (
    Workspace,
    stop_all,
    tail_of,
    wait,
    workspace,
)
from prodloop.tools.judge.candidate import verified_receipt
from prodloop.tools.locate.code_path import CodePath, MappedFrame, mapped_for
from prodloop.tools.locate.source_map import module_of
from prodloop.tools.observe.triage import require_clearance

_MAX_MESSAGE = 32 * 1024 * 1024
_DRIVER = Path(__file__).parents[1] / "child" / "mutate_driver.py"
_GENERATOR = Path(__file__).parents[1] / "child" / "mutate_generate.py"
logger = logging.getLogger("prodloop.tools")
Progress = Callable[[int, int], None]


def mutate_validate(
    store: Store,
    repo: GitRepo,
    runner: Runner,
    settings: Settings,
    clock: Clock,
    *,
    receipt_id: str,
    scope: Scope = "fix",
    include_related_tests: bool = False,
    on_progress: Progress | None = None,
    cancel: threading.Event | None = None,
    code_path: CodePath | None = None,
) -> MutationResult:
    started = time.monotonic()
    receipt = verified_receipt(store, receipt_id)
    require_clearance(store, repo, settings, clock, receipt.issue_id, action="mutate_validate")
    if not receipt.passed:
        failed = receipt.failed_gates()
        raise MutationRefused(
            receipt_id, f"its gates did not all pass ({', '.join(failed)})", "run_candidate_test again"
        )
    code_path = mapped_for(store, repo, code_path, event_id=receipt.event_id, path_rewrites=settings.path_rewrites)
    frames = (
        [f for e in code_path.exceptions for f in e.path]
        if scope == "path"
        else [code_path.culprit]
        if code_path.culprit
        else []
    )
    targets = _distinct(f for f in frames if f is not None)
    if not targets and scope != "fix":
        raise MutationRefused(
            receipt_id, "no function of the mapped path is in the repository", "map_code_path says why"
        )
    budget.reserve_run(store, settings.budgets, clock, receipt.issue_id, kind="cpu")
    cfg = settings.gates
    node = f"{receipt.test_path}::{receipt.test_name}"
    with workspace(repo, receipt.commit_sha) as ws:
        ws.apply_diff(receipt.fix_diff)
        # Read what will be mutated before any test runs in this tree: nothing a test writes is trusted.
        wanted = wanted_lines(ws.root, scope, targets, receipt.fix_diff, receipt.test_path)
        sources = ws.read_sources(list(wanted))
        for path, text in (receipt.support_files or {}).items():
            ws.write(path, text)
        ws.write(receipt.test_path, receipt.test_code)
        tests = [node]
        if include_related_tests:
            tests += [t.path for t in code_path.related_tests if (ws.root / t.path).exists()]
        if not wanted:
            raise MutationRefused(receipt_id, "the fix changes no Python code line", "mutate with scope='culprit'")
        result = mutate_in(
            ws, runner, cfg, wanted=wanted, sources=sources, tests=tests, label=receipt_id, scope=scope,
            charge=lambda cpu: budget.charge_cpu(store, receipt.issue_id, cpu_seconds=cpu),
            on_progress=on_progress, cancel=cancel, started=started,
        )  # fmt: skip
    receipts.set_mutation(store, receipt_id, result)
    return result


def mutate_in(
    ws: Workspace,
    runner: Runner,
    cfg: GateSettings,
    *,
    wanted: dict[str, dict[int, str]],
    sources: dict[str, str],
    tests: list[str],
    label: str,
    scope: Literal["fix", "culprit", "path", "change"],
    charge: Callable[[float], None],
    on_progress: Progress | None = None,
    cancel: threading.Event | None = None,
    started: float | None = None,
) -> MutationResult:
    """Mutation-test `wanted` lines (read into `sources` before any test ran) against `tests` in a workspace the
    tests are already written into: coverage first, then mutmut's mutants driven in children. `label` names the
    receipt or heal in errors and in the result; `charge` is given each run's CPU seconds."""
    started = time.monotonic() if started is None else started
    receipt_id = label
    widen = scope in ("fix", "change")
    coverage = runner.pytest(ws, tests, cover_files=sorted(wanted))
    charge(coverage.cpu_seconds)
    if coverage.notes:
        raise MutationRefused(receipt_id, "; ".join(coverage.notes), "check the service's environment")
    spec_targets, functions, not_executed = _executed_targets(sources, wanted, coverage.covered)
    if not spec_targets:
        raise MutationRefused(
            receipt_id,
            f"the tests execute none of the target lines ({'; '.join(not_executed)})",
            "a survivor would only mean 'not run': make the test reach the culprit",
        )
    mutants = _generate(spec_targets)
    widened = ""
    if not mutants and widen:
        # The fix's statements admit no mutant (a list of names, a bare return): hold the test to the
        # functions the fix changed instead, as far as it executes them.
        whole = _whole_functions(sources, wanted)
        spec_targets, functions, not_executed = _executed_targets(sources, whole, coverage.covered)
        mutants = _generate(spec_targets) if spec_targets else []
        widened = "the changed statements admit no mutant, so the functions holding them were mutated; "
    results, note, cpu = _drive(ws.root, runner, mutants, sources, tests, cfg.timeout_seconds, on_progress, cancel)
    charge(cpu)
    counts = {
        k: sum(1 for r in results if r["status"] == k)
        for k in ("killed", "survived", "unexercised", "timeout", "no_tests", "suspicious")
    }
    total = len(results)
    # Suspicious (pytest errored rather than failed) and no-test mutants got no verdict: reported, not scored.
    judged = counts["killed"] + counts["timeout"] + counts["survived"]
    score = (counts["killed"] + counts["timeout"]) / judged if judged else None
    survivors: dict[tuple[str, int | None], SurvivingMutant] = {}
    for r in sorted(results, key=lambda r: r["status"] != "survived"):  # a scored survivor speaks for its line
        if r["status"] in ("survived", "unexercised"):
            survivors.setdefault(
                (r["path"], r["line"]),
                SurvivingMutant(
                    path=r["path"], line=r["line"], diff=r["diff"][:4000], observed=r["status"] == "survived"
                ),
            )
    if counts["unexercised"]:
        note = (
            f"{counts['unexercised']} survivor(s) changed nothing the tests' calls observed on their inputs "
            f"(unexercised, not scored: an input that tells them apart would); {note}"
        )
    result = MutationResult(
        receipt_id=receipt_id,
        scope=scope,
        functions=functions,
        not_executed=not_executed,
        tests=tests,
        mutants=total,
        score=round(score, 4) if score is not None else None,
        min_score=cfg.min_mutation_score,
        passed=score is not None and score >= cfg.min_mutation_score,
        survivors=sorted(survivors.values(), key=lambda s: (not s.observed, s.path, s.line or 0)),
        seconds=round(time.monotonic() - started, 3),
        note=widened + note
        if total
        else f"no mutants could be made of the target lines; nothing was proven. {note}".strip(),
        **counts,
    )
    return result


def _distinct(frames: Iterable[MappedFrame]) -> list[MappedFrame]:
    seen: dict[tuple[str | None, str | None], MappedFrame] = {}
    for f in frames:
        if f.extent is not None and f.location.repo_path:
            seen.setdefault((f.location.repo_path, f.qualname), f)
    return list(seen.values())


def _inside(root: Path, path: str) -> str | None:
    """A file of the tree, never a host file a fix's symlink points at."""
    file = (root / path).resolve()
    if not file.is_relative_to(root.resolve()) or not file.is_file():
        return None
    return file.read_text(encoding="utf-8", errors="replace")


def wanted_lines(
    root: Path, scope: Scope, frames: list[MappedFrame], fix_diff: str, test_path: str
) -> dict[str, dict[int, str]]:
    """`{path: {line: label}}`: the lines to mutate (with the fix applied), each with the function it belongs to."""
    wanted: dict[str, dict[int, str]] = {}

    def add(path: str, lines: Iterable[int]) -> None:
        source = _inside(root, path)
        if source is None:
            return
        index = FunctionIndex(source)
        for n in lines:
            fn = index.at(n)
            wanted.setdefault(path, {})[n] = f"{path}::{fn.qualname}" if fn else f"{path} (module level)"

    if scope == "fix":
        for path, lines in added_lines(fix_diff).items():
            source = _inside(root, path) if path.endswith(".py") and path != test_path else None
            if source is not None:
                add(path, statement_lines(source, code_lines(source, lines)))
        culprit = frames[0] if frames else None
        if culprit is not None and culprit.location.repo_path and culprit.executing_line and culprit.qualname:
            path = culprit.location.repo_path
            source = _inside(root, path) or ""
            defs = FunctionIndex(source).named(culprit.qualname)
            text = culprit.executing_line.strip()
            if defs and text:
                d, source_lines = defs[0], source.splitlines()
                crash = [n for n in range(d.def_line, d.end + 1) if source_lines[n - 1].strip() == text]
                add(path, statement_lines(source, crash[:1]))
        return wanted
    for f in frames:
        frame_path, qualname = f.location.repo_path, f.qualname
        assert frame_path is not None and qualname is not None
        text_now = _inside(root, frame_path) or ""
        found = FunctionIndex(text_now).named(qualname)
        if found:
            add(frame_path, range(found[0].def_line + 1, found[0].end + 1))
    return wanted


def _whole_functions(sources: dict[str, str], wanted: dict[str, dict[int, str]]) -> dict[str, dict[int, str]]:
    """The bodies of the functions that hold the wanted lines."""
    out: dict[str, dict[int, str]] = {}
    for path, labelled in wanted.items():
        index = FunctionIndex(sources[path])
        for n in labelled:
            fn = index.at(n)
            if fn is not None:
                for line in range(fn.def_line + 1, fn.end + 1):
                    out.setdefault(path, {})[line] = f"{path}::{fn.qualname}"
    return out


def _executed_targets(
    sources: dict[str, str], wanted: dict[str, dict[int, str]], covered: dict[str, list[int]]
) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """Keep the statements the tests executed (a statement counts by its first line, as coverage.py reports)."""
    targets, functions, not_executed = [], [], []
    for path, labelled in wanted.items():
        executed = set(covered.get(path, []))
        spans = statement_spans(sources[path], sorted(labelled))
        keep: set[int] = set()
        missing: list[int] = []
        for first, lines in spans:
            if first in executed:
                keep.update(lines)
            else:
                missing += [n for n in lines if n in labelled]
        for label in dict.fromkeys(labelled[n] for n in sorted(labelled) if n in keep):
            functions.append(label)
        if missing:
            not_executed.append(f"{path}: lines {_ranges(sorted(set(missing)))}")
        if keep:
            module = module_of(path)
            targets.append({"path": path, "module": module, "source": sources[path], "lines": sorted(keep)})
    return targets, functions, not_executed


# The generator uses mutmut's internals (`mutmut.mutation.file_mutation`, `configuration`): these minor lines.
SUPPORTED_MUTMUT = ((3, 8),)


def mutmut_problem(version: str | None = None) -> str | None:
    """Why the installed mutmut cannot make prodloop's mutants (None: it can), with what to do."""
    if version is None:
        try:
            version = importlib.metadata.version("mutmut")
        except importlib.metadata.PackageNotFoundError:
            return "mutmut is not installed in prodloop's environment: reinstall prodloop (pip install prodloop)"
    parts = tuple(int(p) for p in re.findall(r"\d+", version)[:2])
    if parts in SUPPORTED_MUTMUT:
        return None
    wanted = ", ".join(f"{a}.{b}.x" for a, b in SUPPORTED_MUTMUT)
    return (
        f"mutmut {version} is installed, but prodloop's mutant generator supports {wanted} (it uses mutmut's "
        f"internals): pip install 'mutmut=={SUPPORTED_MUTMUT[-1][0]}.{SUPPORTED_MUTMUT[-1][1]}.*' in prodloop's "
        "environment"
    )


def _generate(targets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mutants of the target lines, made by mutmut's generator in a subprocess of prodloop's interpreter."""
    problem = mutmut_problem()
    if problem is not None:
        raise ProdloopError(problem)
    scratch = Path(tempfile.mkdtemp(prefix="prodloop-generate-"))
    try:
        (scratch / "spec.json").write_text(json.dumps({"targets": targets}))
        done = subprocess.run(
            [sys.executable, str(_GENERATOR), str(scratch / "spec.json"), str(scratch / "out.json")],
            cwd=scratch, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if done.returncode != 0:
            raise ProdloopError(f"mutant generation failed: {done.stderr.strip()[-400:]}")
        return list(json.loads((scratch / "out.json").read_text())["mutants"])
    except subprocess.TimeoutExpired as exc:
        raise ProdloopError("mutant generation took over 300 s") from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _ranges(numbers: list[int]) -> str:
    out, start = [], numbers[0]
    for a, b in zip(numbers, [*numbers[1:], None], strict=True):
        if b != a + 1:
            out.append(f"{start}" if start == a else f"{start}-{a}")
            start = b if b is not None else start
    return ", ".join(out)


def _drive(
    root: Path,
    runner: Runner,
    mutants: list[dict[str, Any]],
    sources: dict[str, str],
    tests: list[str],
    test_timeout: float,
    on_progress: Progress | None,
    cancel: threading.Event | None,
) -> tuple[list[dict[str, Any]], str, float]:
    scratch = Path(tempfile.mkdtemp(prefix="prodloop-mutate-"))
    try:
        traces = scratch / "traces"
        spec = {
            "root": str(root), "mutants": mutants, "sources": sources, "tests": tests, "traces": str(traces),
            "workers": max(1, os.cpu_count() or 1), "baseline_timeout": test_timeout,
            "min_timeout": 1.0, "timeout_multiplier": 10.0,
        }  # fmt: skip
        (scratch / "spec.json").write_text(json.dumps(spec))
        shutil.copy(_DRIVER, scratch / "driver.py")
        log = scratch / "stderr.txt"
        with open(log, "w+b") as err:  # read back through this handle, never by name (the run may swap it)
            proc, run_limits = runner.start(
                [str(scratch / "driver.py"), str(scratch / "spec.json")], cwd=root, keep=[root.parent], scratch=scratch,
                stdout=subprocess.PIPE, stderr=err, limits=runner.scaled(20),
            )  # fmt: skip
            received: list[dict[str, Any]] = []
            watcher = threading.Thread(target=_watch, args=(proc, on_progress, received), daemon=True)
            watcher.start()
            stopper = threading.Thread(target=_stop_on_cancel, args=(proc, cancel), daemon=True)
            stopper.start()
            try:
                code, cpu, timed_out = wait(proc, run_limits.timeout_seconds)
                watcher.join(timeout=5)
            finally:
                if proc.stdout is not None:
                    proc.stdout.close()
            tail = tail_of(err, 800)
        if cancel is not None and cancel.is_set():
            stopper.join(timeout=10)  # it returns once every process of the run has stopped
            raise ProdloopError("mutation testing was cancelled; its processes were stopped")
        if timed_out or not received:
            raise ProdloopError(f"the mutation run {'timed out' if timed_out else f'failed (exit {code})'}: {tail}")
        try:
            data = received[-1]
            clean_exit, rows = int(data["clean_exit_code"]), list(data["results"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ProdloopError(f"the mutation run wrote unreadable results ({type(exc).__name__})") from exc
        if clean_exit != 0:
            raise ProdloopError(f"the tests fail without any mutation (pytest exit {clean_exit}): nothing to measure")
        baseline, cutoff = float(data.get("baseline_seconds", 0)), float(data.get("timeout_seconds", 0))
        note = (
            f"baseline test run {baseline:.2f} s; a mutant is a timeout after {cutoff:.1f} s; "
            f"pytest plugin autoload {data.get('plugin_autoload', 'on')}"
        )
        if not data.get("observable"):
            note += (
                "; what the mutated functions did could not be compared between runs (nothing stable, not "
                f"called, or tracing replaced: {data.get('observed_calls', 0)} calls seen), so every survivor is scored"
            )
        elif data.get("unstable_fields"):
            note += f"; {data['unstable_fields']} observed field(s) differed between three clean runs and were left out"
        return rows, note, cpu
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _watch(proc: subprocess.Popen[bytes], on_progress: Progress | None, result: list[dict[str, Any]]) -> None:
    """The driver's messages on its stdout: progress, then its verdicts (kept in `result`)."""
    assert proc.stdout is not None
    while raw := proc.stdout.readline(_MAX_MESSAGE):
        if not raw.endswith(b"\n"):  # longer than any message of the driver: the rest of the line is dropped
            while (more := proc.stdout.readline(_MAX_MESSAGE)) and not more.endswith(b"\n"):
                pass
            continue
        try:
            message = json.loads(raw)
        except (ValueError, RecursionError):
            continue
        if not isinstance(message, dict):
            continue
        if message.get("event") == "result":
            result[:] = [message]  # the driver's own comes last, after every mutant's run ended
        if on_progress is not None and message.get("event") in ("generated", "progress"):
            try:
                on_progress(int(message.get("done", 0)), int(message.get("total", 0)))
            except Exception:  # a lost progress report must not stop the draining of the driver's output
                logger.warning("progress report failed; mutation testing goes on", exc_info=True)
                on_progress = None


def _stop_on_cancel(proc: subprocess.Popen[bytes], cancel: threading.Event | None) -> None:
    if cancel is None:
        return
    while proc.returncode is None:
        if cancel.wait(0.1):
            stop_all(proc.pid)
            return
