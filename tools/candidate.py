"""`run_candidate_test`: prove, in isolation, that a regression test guards the production failure.

Two throwaway worktrees of the deployed commit: (a) deployed code + test, where the test must
fail with the production exception raised from the mapped code path; (b) deployed code + fix
+ test, where it must pass, pass again with other hash seeds and once shuffled among the
related tests, execute the culprit function, and stay fast. Static gates check the test's
source. The outcome is stored as a receipt bound to the issue, the commit and the sha256 of
the test and of the fix; later steps accept only a receipt whose hashes match.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from prodloop.server.context import AppContext
from prodloop.server.errors import InvalidArgument
from prodloop.server.settings import GateSettings, service_python
from prodloop.server.store import policy
from prodloop.tools import budget
from prodloop.tools.budget import BudgetStatus
from prodloop.tools.code_path import CodePath, map_code_path
from prodloop.tools.functions import FunctionIndex
from prodloop.tools.sandbox import (
    Guard,
    Limits,
    RunResult,
    TestOutcome,
    Workspace,
    guard_for,
    outcome_of,
    run_pytest,
    workspace,
)
from prodloop.tools.test_checks import (
    assertion_findings,
    parse_test,
    public_interface_findings,
    test_function_names,
)

GateName = Literal[
    "reproduces", "passes_with_fix", "not_flaky", "covers_path", "public_interface", "real_assertion", "fast"
]


class Gate(BaseModel):
    name: GateName
    passed: bool | None = Field(description="null when the gate could not run (e.g. no fix given yet)")
    evidence: str


class CandidateResult(BaseModel):
    receipt_id: str
    issue_id: int
    commit: str
    test_path: str
    test_node: str
    test_sha256: str
    fix_sha256: str
    passed: bool = Field(description="every gate passed")
    gates: list[Gate]
    cpu_seconds: float
    wall_seconds: float
    checkout_protected: bool = Field(description="the user's checkout was mounted read-only during the runs")
    budget: BudgetStatus
    next_step: str


@dataclass(frozen=True)
class CandidateInput:
    issue_id: int
    test_code: str
    test_path: str
    test_name: str | None
    fix_diff: str


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def prepare_input(
    ctx: AppContext,
    *,
    issue_id: int,
    test_code: str | None,
    test_file: str | None,
    test_path: str | None,
    test_name: str | None,
    fix_diff: str | None,
    fix_from_working_tree: bool,
    code_path: CodePath,
) -> CandidateInput:
    repo_root = ctx.settings.repo.resolve()
    if (test_code is None) == (test_file is None):
        raise InvalidArgument("test_code/test_file", "give exactly one of them", "pass the test's code or its path")
    if test_file is not None:
        source = (repo_root / test_file).resolve()
        if not source.is_relative_to(repo_root) or not source.is_file():
            raise InvalidArgument("test_file", f"{test_file} is not a file inside the repository", "give a repo path")
        test_code = source.read_text(encoding="utf-8")
        test_path = test_path or test_file
    assert test_code is not None
    if test_path is None:
        related = code_path.related_tests[0].path.rsplit("/", 1)[0] if code_path.related_tests else "tests"
        test_path = f"{related}/test_prodloop_issue_{issue_id}.py"
    if test_path.startswith("/") or ".." in Path(test_path).parts or not test_path.endswith(".py"):
        raise InvalidArgument("test_path", f"{test_path} is not a relative .py path", "e.g. tests/test_x.py")
    if fix_diff is not None and fix_from_working_tree:
        raise InvalidArgument("fix", "give a diff or fix_from_working_tree, not both", "choose one")
    if fix_from_working_tree:
        fix_diff = working_tree_diff(repo_root, code_path.release.commit, test_path)
    return CandidateInput(issue_id, test_code, test_path, test_name, fix_diff or "")


def working_tree_diff(repo: Path, commit: str, test_path: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "diff", "--no-color", "--no-ext-diff", commit, "--", ".", f":(exclude){test_path}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if done.returncode != 0:
        raise InvalidArgument(
            "fix_from_working_tree", f"git diff failed: {done.stderr.strip()[:200]}", "check the repo"
        )
    return done.stdout


def run_candidate_test(ctx: AppContext, code_path: CodePath, given: CandidateInput) -> CandidateResult:
    gates_cfg = ctx.settings.gates
    tree = parse_test(given.test_code)
    names = test_function_names(tree)
    if given.test_name is not None:
        if given.test_name not in names:
            raise InvalidArgument("test_name", f"{given.test_name} is not among {names}", "name one of its tests")
        name = given.test_name
    elif len(names) == 1:
        name = names[0]
    else:
        raise InvalidArgument("test_name", f"the test file has {len(names)} tests ({names[:5]})", "say which one")
    node = f"{given.test_path}::{name}"
    commit = code_path.release.commit
    packages = _service_packages(ctx, commit)
    limits = Limits(
        timeout_seconds=gates_cfg.timeout_seconds,
        cpu_seconds=int(gates_cfg.timeout_seconds) + 5,
        memory_mb=gates_cfg.memory_mb,
    )
    python = service_python(ctx.settings)
    guard = guard_for(ctx.settings.repo, ctx.settings.resolved_data_dir)
    started = time.monotonic()
    runs: list[RunResult] = []

    budget.reserve_run(ctx.store, ctx.settings.budgets, ctx.clock, given.issue_id)
    interface = public_interface_findings(tree, packages)
    evidence, problems = assertion_findings(tree, name, packages)
    gates: dict[GateName, Gate] = {
        "public_interface": Gate(
            name="public_interface",
            passed=not interface,
            evidence="; ".join(f"line {f.line}: {f.problem}" for f in interface) or "uses only public names",
        ),
        "real_assertion": Gate(
            name="real_assertion",
            passed=bool(evidence) and not problems,
            evidence="; ".join([*(f"line {f.line}: {f.problem}" for f in problems), *evidence])
            or "no assertion depends on the code under test",
        ),
    }
    try:
        with workspace(ctx.git(), commit) as ws:
            ws.write(given.test_path, given.test_code)
            deployed = run_pytest(ws, python, [node], limits, guard=guard)
            runs.append(deployed)
            gates["reproduces"] = _reproduces(deployed, node, code_path, ws)
        if given.fix_diff:
            with workspace(ctx.git(), commit) as ws:
                ws.apply_diff(given.fix_diff)
                ws.write(given.test_path, given.test_code)
                culprit_path = code_path.culprit.location.repo_path if code_path.culprit else None
                fixed = run_pytest(
                    ws, python, [node], limits, guard=guard, cover_files=[culprit_path] if culprit_path else []
                )
                runs.append(fixed)
                gates["passes_with_fix"] = _passes(fixed, node, "with the fix")
                gates["covers_path"] = _covers(fixed, code_path, ws)
                gates["fast"] = _fast(fixed, node, gates_cfg.max_test_seconds)
                gates["not_flaky"] = _not_flaky(ws, python, node, limits, guard, gates_cfg, code_path, runs)
        else:
            missing = "no fix given yet: pass fix_diff or fix_from_working_tree"
            pending: tuple[GateName, ...] = ("passes_with_fix", "not_flaky", "covers_path")
            for gate_name in pending:
                gates[gate_name] = Gate(name=gate_name, passed=None, evidence=missing)
            gates["fast"] = _fast(deployed, node, gates_cfg.max_test_seconds)
    finally:
        cpu = sum(r.cpu_seconds for r in runs)
        budget.charge_cpu(ctx.store, given.issue_id, cpu_seconds=cpu)
    order: list[GateName] = [
        "reproduces", "passes_with_fix", "not_flaky", "covers_path", "public_interface", "real_assertion", "fast"
    ]  # fmt: skip
    gate_list = [gates[g] for g in order]
    passed = all(g.passed for g in gate_list)
    receipt_id = uuid.uuid4().hex
    test_sha, fix_sha = sha256(given.test_code), sha256(given.fix_diff)
    policy.save_receipt(
        ctx.store,
        policy.ReceiptRow(
            id=receipt_id, issue_id=given.issue_id, event_id=code_path.event_id, commit_sha=commit,
            test_path=given.test_path, test_name=name, test_code=given.test_code, test_sha256=test_sha,
            fix_diff=given.fix_diff, fix_sha256=fix_sha, passed=passed, gates=[g.model_dump() for g in gate_list],
            cpu_seconds=cpu, created_at=ctx.clock.now(), mutation=None,
        ),
    )  # fmt: skip
    return CandidateResult(
        receipt_id=receipt_id,
        issue_id=given.issue_id,
        commit=commit,
        test_path=given.test_path,
        test_node=node,
        test_sha256=test_sha,
        fix_sha256=fix_sha,
        passed=passed,
        gates=gate_list,
        cpu_seconds=round(cpu, 3),
        wall_seconds=round(time.monotonic() - started, 3),
        checkout_protected=all(r.protected_checkout for r in runs),
        budget=budget.budget_status(ctx.store, ctx.settings.budgets, given.issue_id),
        next_step=_next_step(gate_list),
    )


def _service_packages(ctx: AppContext, commit: str) -> set[str]:
    """Top-level importable names of the service (packages and modules), at the root or under src/."""
    names = set()
    for path in ctx.git().files(commit):
        parts = path.split("/")
        if parts[0] == "src" and len(parts) > 1:
            parts = parts[1:]
        top = parts[0]
        if len(parts) == 1 and top.endswith(".py") and not top.startswith(("test_", "conftest", "setup")):
            names.add(top.removesuffix(".py"))
        elif len(parts) > 1 and parts[-1] == "__init__.py" and len(parts) == 2 and top not in ("tests", "test"):
            names.add(top)
    return names


def _outcome(run: RunResult, node: str) -> TestOutcome | None:
    return outcome_of(run, node)


def _reproduces(run: RunResult, node: str, code_path: CodePath, ws: Workspace) -> Gate:
    if run.timed_out:
        return Gate(
            name="reproduces", passed=False, evidence=f"the run was killed at the {run.wall_seconds:.0f} s timeout"
        )
    outcome = _outcome(run, node)
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


def _passes(run: RunResult, node: str, when: str) -> Gate:
    outcome = _outcome(run, node)
    if run.timed_out:
        return Gate(name="passes_with_fix", passed=False, evidence=f"killed at the timeout {when}")
    if outcome is None:
        return Gate(
            name="passes_with_fix", passed=False, evidence=f"the test did not run {when}: {run.output_tail[-300:]}"
        )
    ok = outcome.outcome == "passed"
    detail = "" if ok else f": {outcome.message[:300]}"
    return Gate(name="passes_with_fix", passed=ok, evidence=f"{outcome.outcome} {when}{detail}")


def _covers(run: RunResult, code_path: CodePath, ws: Workspace) -> Gate:
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


def _fast(run: RunResult, node: str, budget_seconds: float) -> Gate:
    outcome = _outcome(run, node)
    if run.timed_out or outcome is None:
        return Gate(
            name="fast", passed=False, evidence=f"no timing: the run {'timed out' if run.timed_out else 'failed'}"
        )
    ok = outcome.seconds <= budget_seconds
    return Gate(name="fast", passed=ok, evidence=f"{outcome.seconds:.3f} s (budget {budget_seconds:g} s)")


def _not_flaky(
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
        outcome = _outcome(run, node)
        if run.timed_out or outcome is None or outcome.outcome != "passed":
            failures.append(f"run {i + 1}: {'timeout' if run.timed_out else outcome.outcome if outcome else 'not run'}")
    extra = ""
    if cfg.shuffle_with_module:
        others = [t.path for t in code_path.related_tests if (ws.root / t.path).exists()]
        targets = list(dict.fromkeys([node.split("::")[0], *others]))
        run = run_pytest(ws, python, targets, limits, guard=guard, shuffle_seed=int(time.time()) % 100_000)
        runs.append(run)
        outcome = _outcome(run, node)
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


def _next_step(gates: list[Gate]) -> str:
    failed = [g.name for g in gates if g.passed is False]
    pending = [g.name for g in gates if g.passed is None]
    if "reproduces" in failed:
        return "make the test fail on the deployed code with the production exception from the mapped path"
    if failed:
        return f"fix the failing gates ({', '.join(failed)}) and run again"
    if pending:
        return "the test reproduces; write the fix and run again with fix_diff or fix_from_working_tree"
    return "all gates passed: run mutate_validate with this receipt_id"


def run_candidate_for_issue(
    ctx: AppContext,
    *,
    issue_id: int,
    test_code: str | None = None,
    test_file: str | None = None,
    test_path: str | None = None,
    test_name: str | None = None,
    fix_diff: str | None = None,
    fix_from_working_tree: bool = False,
) -> CandidateResult:
    """Map the issue's latest event, then run the candidate through every gate."""
    ctx.store.get_issue(issue_id)
    code_path = map_code_path(ctx.store, ctx.git(), issue_id=issue_id, path_rewrites=ctx.settings.path_rewrites)
    given = prepare_input(
        ctx,
        issue_id=issue_id,
        test_code=test_code,
        test_file=test_file,
        test_path=test_path,
        test_name=test_name,
        fix_diff=fix_diff,
        fix_from_working_tree=fix_from_working_tree,
        code_path=code_path,
    )
    return run_candidate_test(ctx, code_path, given)
