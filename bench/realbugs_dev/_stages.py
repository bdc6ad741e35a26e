"""The stages after the capture, each a function returning a `Done`: release, culprit top-1 and top-3, the
synthesized test (and whether it reproduces with the true input), the headless loop on it, and the
project's own regression test through the same gates."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _bug import Bug, Fault, candidate_key, matches
from _capture import import_roots, service_env
from _record import Done, short
from _setup import add_worktree, git, remove_worktree

from prodloop.server.context import AppContext
from prodloop.server.store.receipts import GATE_ORDER
from prodloop.tools import budget
from prodloop.tools.engine.functions import FunctionIndex
from prodloop.tools.judge.candidate import run_candidate_for_issue
from prodloop.tools.judge.mutation import mutate_validate
from prodloop.tools.locate.code_path import CodePath, map_code_path
from prodloop.tools.loop import run_loop
from prodloop.tools.reproduce.synthesis import SynthesisResult, synthesize_regression_test

GATES = GATE_ORDER
PLAIN_PYTEST_TIMEOUT = 180.0


@dataclass
class Service:
    """Where one bug's files are."""

    bug: Bug
    root: Path  # WORK/<bug>
    service: Path
    origin: Path
    python: Path
    fix_diff: str
    tests_left_out: list[str]  # test files the fix commit changes, which the fix diff leaves out
    script: Path  # what the capture runs: trigger.py, or in module mode the batch beside the service's module


def code_path_of(ctx: AppContext, issue_id: int) -> CodePath:
    return map_code_path(ctx.store, ctx.git(), issue_id=issue_id, path_rewrites=ctx.settings.path_rewrites)


def release(ctx: AppContext, svc: Service, issue_id: int) -> Done:
    cp = code_path_of(ctx, issue_id)
    r = cp.release
    data = {"commit": r.commit, "source": r.source, "confidence": r.confidence, "note": r.note}
    ok = r.commit == svc.bug.buggy_commit
    if ok:
        return Done("ok", f"resolved to {r.commit[:12]} by {r.source} ({r.confidence} confidence)", data, cp)
    return Done(
        "fail", f"resolved to {r.commit[:12]} by {r.source}, not {svc.bug.buggy_commit[:12]}: {r.note}", data, cp
    )


def _label(path: str | None, qualname: str | None) -> str:
    return f"{path}::{qualname}"


def _is_function(ctx: AppContext, commit: str, fault: Fault) -> bool:
    source = ctx.git().read(commit, fault.path) or ""
    return any(d.qualname == fault.qualname for d in FunctionIndex(source).defs)


def _hit(ctx: AppContext, bug: Bug, keys: list[tuple[str | None, str | None]]) -> tuple[int | None, Fault | None]:
    kinds = {f: _is_function(ctx, bug.buggy_commit, f) for f in bug.faults}
    for rank, (path, qual) in enumerate(keys, 1):
        for fault in bug.faults:
            if matches(fault, path, qual, kinds[fault]):
                return rank, fault
    return None, None


def top1(ctx: AppContext, svc: Service, cp: CodePath) -> Done:
    c = cp.culprit
    key = (c.location.repo_path, c.qualname) if c else (None, None)
    rank, _ = _hit(ctx, svc.bug, [key] if c else [])
    faults = ", ".join(map(str, svc.bug.faults))
    data = {"culprit": _label(*key) if c else None, "faults": [str(f) for f in svc.bug.faults]}
    if c is None:
        return Done("fail", "no culprit: " + "; ".join(cp.notes), data)
    if rank:
        return Done("ok", f"culprit {_label(*key)} is the fault", data)
    return Done("fail", f"culprit {_label(*key)}, fault {faults}", data)


def ranked_candidates(cp: CodePath) -> tuple[list[tuple[str | None, str | None]], str]:
    """The lead's ranked `fault_candidates` when the code path has them, else the distinct in-repository
    functions of the path from the crash outward."""
    ranked = getattr(cp, "fault_candidates", None)
    if ranked is not None:
        return [candidate_key(item) for item in ranked], "code_path.fault_candidates"
    keys: list[tuple[str | None, str | None]] = []
    for exc in reversed(cp.exceptions):
        for frame in reversed(exc.path):
            key = (frame.location.repo_path, frame.qualname)
            if frame.qualname and key not in keys:
                keys.append(key)
    return keys, "path functions from the crash outward"


def top3(ctx: AppContext, svc: Service, cp: CodePath) -> Done:
    keys, source = ranked_candidates(cp)
    rank, fault = _hit(ctx, svc.bug, keys[:3])
    labels = [_label(*k) for k in keys[:3]]
    data = {"source": source, "candidates": [_label(*k) for k in keys[:10]], "rank": rank}
    if rank:
        return Done("ok", f"{fault} is #{rank} of {source}", data)
    return Done(
        "fail", f"none of {labels or 'no candidates'} ({source}) is {', '.join(map(str, svc.bug.faults))}", data
    )


def synth(ctx: AppContext, issue_id: int) -> Done:
    result = synthesize_regression_test(*ctx.collaborators(), issue_id=issue_id)
    attempts = [a.model_dump() for a in result.attempts]
    data = {"frame": result.frame, "test_path": result.test_path, "attempts": attempts, "test_code": result.test_code}
    if result.test_code is None:
        why = "; ".join(f"{a.frame}: {a.reason}" for a in result.attempts) or "no frame was tried"
        return Done("fail", f"no test: {why}", data)
    return Done("ok", f"calls {result.frame}", data, result)


def _plain_pytest(svc: Service, tree: Path, test_path: str, test_code: str) -> tuple[int | None, str]:
    target = tree / test_path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(test_code, encoding="utf-8")
    try:
        done = subprocess.run(
            [str(svc.python), "-m", "pytest", "-q", "-p", "no:cacheprovider", test_path], cwd=tree,
            env=service_env(import_roots(tree)), capture_output=True, text=True, timeout=PLAIN_PYTEST_TIMEOUT,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return None, f"killed after {PLAIN_PYTEST_TIMEOUT:.0f} s"
    return done.returncode, done.stdout + done.stderr


def repro(svc: Service, synthesized: SynthesisResult) -> Done:
    """The synthesized test, plain pytest, in clean checkouts: fails at buggy (with the exception), passes at fixed."""
    assert synthesized.test_code is not None and synthesized.test_path is not None
    bug = svc.bug
    results: dict[str, Any] = {}
    for label, commit in (("buggy", bug.buggy_commit), ("fixed", bug.fixed_commit)):
        tree = svc.root / "trees" / label
        add_worktree(svc.service, commit, tree)
        try:
            code, output = _plain_pytest(svc, tree, synthesized.test_path, synthesized.test_code)
        finally:
            remove_worktree(svc.service, tree)
        results[label] = {"exit_code": code, "output_tail": output[-2000:]}
    shutil.rmtree(svc.root / "trees", ignore_errors=True)
    wanted = bug.exception.rsplit(".", 1)[-1]
    buggy, fixed = results["buggy"], results["fixed"]
    fails = buggy["exit_code"] not in (0, None) and wanted in buggy["output_tail"]
    passes = fixed["exit_code"] == 0
    if fails and passes:
        return Done("ok", f"fails at buggy with {wanted}, passes at fixed", results)
    problems = []
    if not fails:
        seen = "in" if wanted in buggy["output_tail"] else "not in"
        problems.append(
            f"at buggy: exit {buggy['exit_code']}, {wanted} {seen} the output ({_last_line(buggy['output_tail'])})"
        )
    if not passes:
        problems.append(f"at fixed: exit {fixed['exit_code']} ({_last_line(fixed['output_tail'])})")
    return Done("fail", "; ".join(problems), results)


def _last_line(output: str) -> str:
    lines = [ln for ln in output.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("E ")]
    return short((errors or lines or ["no output"])[-1], 140)


def pr_branches(origin: Path) -> list[str]:
    out = git(origin, "for-each-ref", "--format=%(refname:short)", "refs/heads/prodloop/")
    return [line for line in out.splitlines() if line]


def _gates(gates: list[dict[str, Any]]) -> dict[str, bool | None]:
    got = {str(g["name"]): g.get("passed") for g in gates}
    return {name: got.get(name) for name in GATES}


def _fresh_budget(ctx: AppContext, issue_id: int) -> None:
    budget.reset(
        ctx.store, ctx.settings.budgets, ctx.clock, issue_id, who="realbugs bench", why="each stage starts afresh"
    )


def loop(ctx: AppContext, svc: Service, issue_id: int) -> Done:
    """The fix (without its tests) in the service's working tree, uncommitted; then the headless loop."""
    if not svc.fix_diff.strip():
        return Done("fail", "the fix commit changes only test files: nothing to apply", {})
    patch = svc.root / "fix.diff"
    patch.write_text(svc.fix_diff, encoding="utf-8")
    git(svc.service, "apply", "--whitespace=nowarn", str(patch))
    _fresh_budget(ctx, issue_id)
    report = run_loop(*ctx.collaborators(), issue_id=issue_id, client="prodloop realbugs_dev")
    branches = pr_branches(svc.origin)
    data = {
        "outcome": report.outcome, "needed": report.needed, "steps": [s.model_dump() for s in report.steps],
        "gates": _gates([g.model_dump() for g in report.gates]),
        "gate_evidence": {g.name: g.evidence for g in report.gates},
        "mutation_score": report.mutation_score, "pr_branches": branches, "test_code": report.test_code,
        "pull_request": report.pull_request.model_dump() if report.pull_request else None,
    }  # fmt: skip
    if branches:
        return Done("ok", f"PR branch {branches[0]} pushed ({report.outcome})", data)
    failed = [s for s in report.steps if not s.ok]  # the last is the step that stopped the loop
    where = f"{failed[-1].name}: {failed[-1].detail}" if failed else "no step failed"
    return Done("fail", f"{report.outcome}: {where}" + (f" — needs: {report.needed}" if report.needed else ""), data)


def own(ctx: AppContext, svc: Service, issue_id: int) -> Done:
    """The project's regression test as if an agent wrote it, with the true fix, through every gate."""
    bug = svc.bug
    test_code = git(svc.service, "show", f"{bug.fixed_commit}:{bug.regression_file}")
    _fresh_budget(ctx, issue_id)
    # Test data the fix commit adds or changes beside the test (sample inputs, expected outputs) goes with it,
    # as an agent would give it: the support files of the candidate.
    others = [p for p in svc.tests_left_out if p != bug.regression_file]
    support = {}
    for path in others:
        if path.endswith(".py") and Path(path).name.startswith(("test_", "conftest")):
            continue
        try:
            support[path] = git(svc.service, "show", f"{bug.fixed_commit}:{path}")
        except Exception:  # noqa: S112 (deleted by the fix: nothing to give)
            continue
    result = run_candidate_for_issue(
        *ctx.collaborators(), issue_id=issue_id, test_code=test_code, test_path=bug.regression_file,
        test_name=bug.regression_name or None, fix_diff=svc.fix_diff, support_files=support or None,
    )  # fmt: skip
    gates = [g.model_dump() for g in result.gates]
    data: dict[str, Any] = {
        "receipt_id": result.receipt_id, "passed": result.passed, "gates": _gates(gates),
        "gate_evidence": {str(g["name"]): g.get("evidence") for g in gates},
        "checkout_protected": result.checkout_protected, "mutation_score": None, "mutation_passed": None,
    }  # fmt: skip
    data["other_test_files_of_the_fix"] = others
    data["support_files"] = sorted(support)
    if not result.passed:
        failed = [g for g in result.gates if g.passed is not True]
        first = f"{failed[0].name}: {failed[0].evidence}" if failed else result.next_step
        left = [p for p in others if p not in support]
        hint = f" [the fix commit also changes {', '.join(left[:3])}, which prodloop is not given]" if left else ""
        return Done("fail", f"gates failed ({', '.join(g.name for g in failed) or 'isolation'}){hint}; {first}", data)
    try:
        mutation = mutate_validate(*ctx.collaborators(), receipt_id=result.receipt_id)
    except Exception as exc:  # refused or broken: the gates above are still worth keeping
        data["mutation_error"] = short(f"{type(exc).__name__}: {exc}", 600)
        return Done("fail", f"every gate passed; mutate_validate: {type(exc).__name__}: {exc}", data)
    kinds = ("killed", "survived", "unexercised", "timeout", "no_tests", "suspicious")
    counts = {k: getattr(mutation, k) for k in kinds}
    data.update(
        mutation_score=mutation.score, mutation_passed=mutation.passed, mutants=mutation.mutants, **counts,
        not_executed=mutation.not_executed, mutation_note=mutation.note,
    )  # fmt: skip
    tally = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    if mutation.passed:
        return Done("ok", f"every gate passed; mutation score {mutation.score} over {mutation.mutants} ({tally})", data)
    return Done(
        "fail", f"every gate passed; mutation score {mutation.score} < {mutation.min_score} over {mutation.mutants} "
        f"mutants ({tally or 'none made'})", data,
    )  # fmt: skip
