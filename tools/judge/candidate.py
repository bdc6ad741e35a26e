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
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from prodloop.server.clock import Clock
from prodloop.server.errors import CodePathError, GitError, InvalidArgument, ReceiptTampered
from prodloop.server.settings import Settings
from prodloop.server.store import Store, receipts
from prodloop.server.store.receipts import GATE_ORDER, Gate, GateName, Receipt
from prodloop.tools import budget
from prodloop.tools.budget import BudgetStatus
from prodloop.tools.engine.functions import FunctionIndex
from prodloop.tools.engine.git_repo import GitRepo
from prodloop.tools.engine.runner import Runner
from prodloop.tools.engine.sandbox import (
    RunResult,
    Workspace,
    workspace,
)
from prodloop.tools.judge import gates as judge
from prodloop.tools.judge.hermetic import hermetic_findings, support_file_findings
from prodloop.tools.judge.test_checks import (
    assertion_findings,
    parse_test,
    public_interface_findings,
    test_function_names,
)
from prodloop.tools.locate.code_path import CodePath, map_code_path
from prodloop.tools.observe.triage import require_clearance


class CandidateResult(BaseModel):
    receipt_id: str
    issue_id: int
    commit: str
    test_path: str
    test_node: str
    passed: bool = Field(description="every gate passed")
    gates: list[Gate]
    cpu_seconds: float
    wall_seconds: float
    checkout_protected: bool = Field(description="the checkout was read-only during the runs")
    budget: BudgetStatus
    next_step: str


@dataclass(frozen=True)
class CandidateInput:
    issue_id: int
    test_code: str
    test_path: str
    test_name: str | None
    fix_diff: str
    support_files: dict[str, str] = field(default_factory=dict)

    def write_test(self, ws: Workspace) -> None:
        for path, text in self.support_files.items():
            ws.write(path, text)
        ws.write(self.test_path, self.test_code)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_digest(test_code: str, support_files: dict[str, str] | None) -> str:
    """The sha256 a receipt binds the test to: its code and, when it has any, its support files."""
    if not support_files:
        return sha256(test_code)
    return sha256(test_code + "\n\0" + json.dumps(support_files, sort_keys=True))


def verified_receipt(store: Store, receipt_id: str) -> Receipt:
    """The receipt, after checking that its stored test, support files and fix are the ones its gates judged.

    Every step that acts on a receipt (mutation testing, the PR, the loop) loads it through here.
    """
    receipt = receipts.get(store, receipt_id)
    if test_digest(receipt.test_code, receipt.support_files) != receipt.test_sha256:
        raise ReceiptTampered(receipt_id, "test (or its support files)")
    if sha256(receipt.fix_diff) != receipt.fix_sha256:
        raise ReceiptTampered(receipt_id, "fix")
    return receipt


_MAX_SUPPORT_FILES, _MAX_SUPPORT_BYTES = 20, 2_000_000


def _check_support(support: dict[str, str], test_path: str) -> dict[str, str]:
    """Data files a test reads (fixtures, sample inputs): only inside a test folder, never the test itself."""
    if len(support) > _MAX_SUPPORT_FILES or sum(len(t) for t in support.values()) > _MAX_SUPPORT_BYTES:
        raise InvalidArgument("support_files", "at most 20 files and 2 MB in all", "give only what the test reads")
    for path in support:
        parts = Path(path).parts
        if path.startswith("/") or ".." in parts or path == test_path or not ({"test", "tests"} & set(parts)):
            raise InvalidArgument(
                "support_files", f"{path} is not a relative path inside a test folder", "e.g. tests/data/case.py"
            )
    return dict(sorted(support.items()))


def prepare_input(
    repo: GitRepo,
    *,
    issue_id: int,
    test_code: str | None,
    test_file: str | None,
    test_path: str | None,
    test_name: str | None,
    fix_diff: str | None,
    fix_from_working_tree: bool,
    code_path: CodePath,
    support_files: dict[str, str] | None = None,
) -> CandidateInput:
    repo_root = repo.path.resolve()
    if (test_code is None) == (test_file is None):
        raise InvalidArgument("test_code/test_file", "give exactly one of them", "pass the test's code or its path")
    if test_file is not None:
        source = (repo_root / test_file).resolve()
        if not source.is_relative_to(repo_root) or not source.is_file():
            raise InvalidArgument("test_file", f"{test_file} is not a file inside the repository", "give a repo path")
        try:
            test_code = source.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidArgument(
                "test_file", f"{test_file} cannot be read as UTF-8 text ({exc})", "give a test file"
            ) from exc
        test_path = test_path or test_file
    assert test_code is not None
    if test_path is None:
        test_path = default_test_path([t.path for t in code_path.related_tests], issue_id)
    if test_path.startswith("/") or ".." in Path(test_path).parts or not test_path.endswith(".py"):
        raise InvalidArgument("test_path", f"{test_path} is not a relative .py path", "e.g. tests/test_x.py")
    if fix_diff is not None and fix_from_working_tree:
        raise InvalidArgument("fix", "give a diff or fix_from_working_tree, not both", "choose one")
    if fix_from_working_tree:
        fix_diff = working_tree_diff(repo, code_path.release.commit, test_path)
    support = _check_support(support_files or {}, test_path)
    return CandidateInput(issue_id, test_code, test_path, test_name, fix_diff or "", support)


def default_test_path(related: list[str], issue_id: int) -> str:
    """Beside the tests related to the culprit, preferring one in a test folder over a stray `scripts/test_x.py`."""
    in_folder = [p for p in related if {"test", "tests"} & set(p.split("/")[:-1])]
    best = (in_folder or [p for p in related if "/" in p])[:1]
    return f"{best[0].rsplit('/', 1)[0] if best else 'tests'}/test_prodloop_issue_{issue_id}.py"


def working_tree_diff(repo: GitRepo, commit: str, test_path: str) -> str:
    try:
        return repo.working_tree_diff(commit, exclude=test_path)
    except GitError as exc:
        raise InvalidArgument("fix_from_working_tree", str(exc)[:300], "check the repository") from exc


def fix_paths(repo: GitRepo, commit: str, diff: str) -> set[str]:
    """The paths a fix changes (none when it does not apply: the gates say so)."""
    if not diff.strip():
        return set()
    try:
        return repo.diff_paths(commit, diff)
    except CodePathError:
        return set()


def run_candidate_test(
    store: Store,
    repo: GitRepo,
    runner: Runner,
    settings: Settings,
    clock: Clock,
    code_path: CodePath,
    given: CandidateInput,
    *,
    budget_kind: Literal["candidate", "synthesis"] = "candidate",
) -> CandidateResult:
    require_clearance(store, repo, settings, clock, given.issue_id, action="run_candidate_test",
                      paths=[given.test_path, *fix_paths(repo, code_path.release.commit, given.fix_diff)])  # fmt: skip
    gates_cfg = settings.gates
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
    packages = service_packages(repo, commit)
    started = time.monotonic()
    runs: list[RunResult] = []

    budget.reserve_run(store, settings.budgets, clock, given.issue_id, kind=budget_kind)
    interface = public_interface_findings(tree, packages, name, _off_path_functions(repo, code_path))
    evidence, problems = assertion_findings(tree, name, packages)
    unsealed = hermetic_findings(tree, name) + support_file_findings(given.support_files, tree)
    gates: dict[GateName, Gate] = {
        "hermetic": Gate(
            name="hermetic",
            passed=not unsealed,
            evidence="; ".join(f"line {f.line}: {f.problem}" for f in unsealed)
            or "touches only the service, pytest and harmless standard-library modules",
        ),
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
        if unsealed and not gates_cfg.run_non_hermetic:  # never run a test that reaches the process or harness
            for gate_name in ("reproduces", "passes_with_fix", "not_flaky", "covers_path", "fast"):
                gates[gate_name] = Gate(
                    name=gate_name, passed=None, evidence="not run: the test is not hermetic (see the hermetic gate)"
                )
        else:
            with workspace(repo, commit) as ws:
                given.write_test(ws)
                deployed = runner.pytest(ws, [node], watch_raises=True)
                runs.append(deployed)
                gates["reproduces"] = judge.reproduces(deployed, node, code_path, ws)
            if given.fix_diff:
                with workspace(repo, commit) as ws:
                    fix = given.fix_diff
                    ws.apply_diff(fix)
                    given.write_test(ws)
                    culprit_path = code_path.culprit.location.repo_path if code_path.culprit else None
                    measured = list(dict.fromkeys([*([culprit_path] if culprit_path else []), *judge.fix_files(fix)]))
                    sources = ws.read_sources(measured)  # before the test runs in this tree
                    fixed = runner.pytest(ws, [node], cover_files=measured)
                    runs.append(fixed)
                    gates["passes_with_fix"] = judge.passes(fixed, node, "with the fix")
                    gates["covers_path"] = judge.covers(fixed, code_path, sources, fix)
                    gates["fast"] = judge.fast(fixed, node, gates_cfg.max_test_seconds)
                    seed = int(sha256(given.test_code + "\0" + fix)[:8], 16) % 100_000
                    gates["not_flaky"] = judge.not_flaky(ws, runner, node, gates_cfg, code_path, runs, seed=seed)
            else:
                missing = "no fix given yet: pass fix_diff or fix_from_working_tree"
                pending: tuple[GateName, ...] = ("passes_with_fix", "not_flaky", "covers_path")
                for gate_name in pending:
                    gates[gate_name] = Gate(name=gate_name, passed=None, evidence=missing)
                gates["fast"] = judge.fast(deployed, node, gates_cfg.max_test_seconds)
    finally:
        cpu = sum(r.cpu_seconds for r in runs)
        budget.charge_cpu(store, given.issue_id, cpu_seconds=cpu)
    gate_list = [gates[g] for g in GATE_ORDER]
    isolated = all(r.protected_checkout for r in runs)
    passed = all(g.passed for g in gate_list) and (isolated or not gates_cfg.require_isolation)
    receipt_id = uuid.uuid4().hex
    test_sha, fix_sha = test_digest(given.test_code, given.support_files), sha256(given.fix_diff)
    receipts.save(
        store,
        Receipt(
            id=receipt_id, issue_id=given.issue_id, event_id=code_path.event_id, commit_sha=commit,
            test_path=given.test_path, test_name=name, test_code=given.test_code, test_sha256=test_sha,
            fix_diff=given.fix_diff, fix_sha256=fix_sha, passed=passed, gates=tuple(gate_list),
            cpu_seconds=cpu, created_at=clock.now(), mutation=None, support_files=given.support_files or None,
        ),
    )  # fmt: skip
    return CandidateResult(
        receipt_id=receipt_id,
        issue_id=given.issue_id,
        commit=commit,
        test_path=given.test_path,
        test_node=node,
        passed=passed,
        gates=gate_list,
        cpu_seconds=round(cpu, 3),
        wall_seconds=round(time.monotonic() - started, 3),
        checkout_protected=isolated,
        budget=budget.budget_status(store, settings.budgets, given.issue_id),
        next_step=judge.next_step(gate_list)
        if isolated or not gates_cfg.require_isolation
        else "the runs were not isolated (no user namespaces here): the receipt cannot pass; "
        "a person may set PRODLOOP_GATES__REQUIRE_ISOLATION=false",
    )


def _off_path_functions(repo: GitRepo, code_path: CodePath) -> set[str]:
    """Top-level functions of the path's modules that the failure does not run through (patching them is fair)."""
    on_path = {part for e in code_path.exceptions for f in e.path if f.qualname for part in f.qualname.split(".")}
    files = {f.location.repo_path for e in code_path.exceptions for f in e.path if f.location.repo_path}
    defined = set()
    for path in files:
        defined |= {d.qualname for d in FunctionIndex(repo.read(code_path.release.commit, path) or "").defs}
    return {name for name in defined if "." not in name} - on_path


def service_packages(repo: GitRepo, commit: str) -> set[str]:
    """Top-level importable names of the service (packages and modules), at the root or under src/."""
    names = set()
    for path in repo.files(commit):
        parts = path.split("/")
        if parts[0] == "src" and len(parts) > 1:
            parts = parts[1:]
        top = parts[0]
        if len(parts) == 1 and top.endswith(".py") and not top.startswith(("test_", "conftest", "setup")):
            names.add(top.removesuffix(".py"))
        elif len(parts) > 1 and parts[-1] == "__init__.py" and len(parts) == 2 and top not in ("tests", "test"):
            names.add(top)
    return names


def run_candidate_for_issue(
    store: Store,
    repo: GitRepo,
    runner: Runner,
    settings: Settings,
    clock: Clock,
    *,
    issue_id: int,
    test_code: str | None = None,
    test_file: str | None = None,
    test_path: str | None = None,
    test_name: str | None = None,
    fix_diff: str | None = None,
    fix_from_working_tree: bool = False,
    support_files: dict[str, str] | None = None,
    code_path: CodePath | None = None,
) -> CandidateResult:
    """Map the issue's latest event (or take the loop's mapping of it), then run the candidate through every gate."""
    store.get_issue(issue_id)
    if code_path is None or code_path.issue_id != issue_id:
        code_path = map_code_path(store, repo, issue_id=issue_id, path_rewrites=settings.path_rewrites)
    given = prepare_input(
        repo,
        issue_id=issue_id,
        test_code=test_code,
        test_file=test_file,
        test_path=test_path,
        test_name=test_name,
        fix_diff=fix_diff,
        fix_from_working_tree=fix_from_working_tree,
        code_path=code_path,
        support_files=support_files,
    )
    return run_candidate_test(store, repo, runner, settings, clock, code_path, given)
