"""The dynamic gates of a candidate run, each judged from what pytest runs recorded, with its evidence.

(The static gates, public interface and real assertion, read the test's source: `test_checks`.)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from prodloop.server.settings import GateSettings
from prodloop.tools.code_path import CodePath
from prodloop.tools.functions import FunctionIndex
from prodloop.tools.sandbox import Guard, Limits, RunResult, Workspace, outcome_of, run_pytest

GateName = Literal[
    "reproduces", "passes_with_fix", "not_flaky", "covers_path", "public_interface", "real_assertion", "fast"
]


class Gate(BaseModel):
    name: GateName
    passed: bool | None = Field(description="null when the gate could not run (e.g. no fix given yet)")
    evidence: str


def reproduces(run: RunResult, node: str, code_path: CodePath, ws: Workspace) -> Gate:
    if run.timed_out:
        return Gate(
            name="reproduces", passed=False, evidence=f"the run was killed at the {run.wall_seconds:.0f} s timeout"
        )
    outcome = outcome_of(run, node)
    if outcome is None:
        return Gate(name="reproduces", passed=False, evidence=f"the test did not run: {run.output_tail[-400:]}")
    if outcome.outcome == "passed":
        return Gate(
            name="reproduces", passed=False, evidence="the test passes on the deployed code: it does not reproduce"
        )
    production = {e.type for e in code_path.exceptions if e.type}
    mapped = {
        (f.location.repo_path, (f.qualname or "").rsplit(".", 1)[-1]) for e in code_path.exceptions for f in e.path
    }
    root = str(ws.root.resolve()) + "/"
    seen = []
    for exc in outcome.chain:
        frames = [f for f in exc["frames"] if str(f["filename"]).startswith(root)]
        inner = next((f for f in reversed(frames) if not str(f["filename"]).endswith(node.split("::")[0])), None)
        where = (
            f"{inner['filename'][len(root) :]}:{inner['lineno']} in {inner['function']}" if inner else "the test itself"
        )
        seen.append(f"{exc['type']} from {where}")
        if (
            exc["type"] in production
            and inner is not None
            and (inner["filename"][len(root) :], inner["function"]) in mapped
        ):
            return Gate(
                name="reproduces",
                passed=True,
                evidence=f"fails on the deployed code with {exc['type']} raised from {where}, on the mapped path",
            )
    wanted = "/".join(sorted(production)) or "the production exception"
    return Gate(
        name="reproduces",
        passed=False,
        evidence=f"fails, but with {'; '.join(seen) or outcome.message[:200]}, not {wanted} from the mapped path",
    )


def passes(run: RunResult, node: str, when: str) -> Gate:
    outcome = outcome_of(run, node)
    if run.timed_out:
        return Gate(name="passes_with_fix", passed=False, evidence=f"killed at the timeout {when}")
    if outcome is None:
        return Gate(
            name="passes_with_fix", passed=False, evidence=f"the test did not run {when}: {run.output_tail[-300:]}"
        )
    ok = outcome.outcome == "passed"
    detail = "" if ok else f": {outcome.message[:300]}"
    return Gate(name="passes_with_fix", passed=ok, evidence=f"{outcome.outcome} {when}{detail}")


def covers(run: RunResult, code_path: CodePath, ws: Workspace) -> Gate:
    culprit = code_path.culprit
    if culprit is None or culprit.location.repo_path is None or culprit.qualname is None:
        return Gate(
            name="covers_path", passed=False, evidence="no culprit function was mapped to check coverage against"
        )
    path = culprit.location.repo_path
    if run.notes:
        return Gate(name="covers_path", passed=False, evidence="; ".join(run.notes))
    fixed = (ws.root / path).read_text(encoding="utf-8") if (ws.root / path).exists() else ""
    defs = FunctionIndex(fixed).named(culprit.qualname)
    if not defs:
        return Gate(
            name="covers_path", passed=False, evidence=f"{culprit.qualname} no longer exists in {path} with the fix"
        )
    d = defs[0]
    executed = set(run.covered.get(path, []))
    body = [n for n in range(d.def_line + 1, d.end + 1) if n in executed]
    crash_text = (culprit.executing_line or "").strip()
    lines = fixed.splitlines()
    crash_lines = [i + 1 for i in range(d.def_line, d.end) if crash_text and lines[i].strip() == crash_text]
    hit_crash = not crash_lines or any(n in executed for n in crash_lines)
    passed = bool(body) and hit_crash
    where = f"{path}::{d.qualname} (lines {d.def_line}-{d.end})"
    crash = (
        f"; crash line {'executed' if hit_crash else 'NOT executed'}"
        if crash_lines
        else "; the crash line was rewritten"
    )
    return Gate(name="covers_path", passed=passed, evidence=f"{len(body)} lines of {where} executed{crash}")


def fast(run: RunResult, node: str, budget_seconds: float) -> Gate:
    outcome = outcome_of(run, node)
    if run.timed_out or outcome is None:
        return Gate(
            name="fast", passed=False, evidence=f"no timing: the run {'timed out' if run.timed_out else 'failed'}"
        )
    ok = outcome.seconds <= budget_seconds
    return Gate(name="fast", passed=ok, evidence=f"{outcome.seconds:.3f} s (budget {budget_seconds:g} s)")


def not_flaky(
    ws: Workspace,
    python: Path,
    node: str,
    limits: Limits,
    guard: Guard,
    cfg: GateSettings,
    code_path: CodePath,
    runs: list[RunResult],
) -> Gate:
    failures = []
    for i in range(cfg.flaky_runs):
        run = run_pytest(ws, python, [node], limits, guard=guard, hash_seed=i + 1)
        runs.append(run)
        outcome = outcome_of(run, node)
        if run.timed_out or outcome is None or outcome.outcome != "passed":
            failures.append(f"run {i + 1}: {'timeout' if run.timed_out else outcome.outcome if outcome else 'not run'}")
    extra = ""
    if cfg.shuffle_with_module:
        others = [t.path for t in code_path.related_tests if (ws.root / t.path).exists()]
        targets = list(dict.fromkeys([node.split("::")[0], *others]))
        run = run_pytest(ws, python, targets, limits, guard=guard, shuffle_seed=int(time.time()) % 100_000)
        runs.append(run)
        outcome = outcome_of(run, node)
        if run.timed_out or outcome is None or outcome.outcome != "passed":
            failures.append(
                f"shuffled with {len(targets) - 1} related test file(s): {outcome.outcome if outcome else 'not run'}"
            )
        else:
            extra = f", and once shuffled among {len(run.outcomes)} tests of {len(targets)} file(s)"
    if failures:
        return Gate(
            name="not_flaky", passed=False, evidence=f"failed {len(failures)} repeat run(s): " + "; ".join(failures)
        )
    return Gate(
        name="not_flaky", passed=True, evidence=f"passed {cfg.flaky_runs} more runs with other hash seeds{extra}"
    )


def next_step(gates: list[Gate]) -> str:
    failed = [g.name for g in gates if g.passed is False]
    pending = [g.name for g in gates if g.passed is None]
    if "reproduces" in failed:
        return "make the test fail on the deployed code with the production exception from the mapped path"
    if failed:
        return f"fix the failing gates ({', '.join(failed)}) and run again"
    if pending:
        return "the test reproduces; write the fix and run again with fix_diff or fix_from_working_tree"
    return "all gates passed: run mutate_validate with this receipt_id"
