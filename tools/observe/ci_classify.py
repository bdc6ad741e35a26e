"""Why a test fails in CI, with evidence: a code regression, test rot, flaky, or not known.

Read from the CI results prodloop stored (`ci_signals`) and the repository, within the job the test failed in
(another job, another interpreter, passing on the same commit says nothing of it):

- **flaky**: in that job, on the commit it failed on, the test also passed (in another run, or by a rerun);
- the last commit it passed on before in that job (an ancestor of the failing commit) bounds the change that broke
  it; the commits between that touched the code the test runs (repository files in its traceback, the modules its
  file imports) or the test itself are the suspects, each with the functions it changed;
- **regression**: a suspect changed that code and the failure is an exception raised in it (not the test's own
  assertion), or production shows errors in the files it changed since, or a suspect changed a function the test
  calls without updating any other test that calls it (prodloop never rewrites a test to agree with code nobody
  said was meant to behave differently: the failing test is the regression's reproduction);
- **test_rot**: the test's assertion fails, and every suspect that changed a function it calls also updated other
  tests calling that function: an intended change this test did not follow (the one kind `heal_test` works on);
- **unknown**: never seen passing on an ancestor, or nothing under test changed (an environment or dependency
  change): a person decides.

A person's decision (`prodloop ci classify ID --as KIND --by NAME --why TEXT`) overrides, and says so.
"""

from __future__ import annotations

import ast
import re
from typing import Any, Literal

from pydantic import BaseModel, Field

from prodloop.server.clock import Clock
from prodloop.server.errors import InvalidArgument, NotFoundError
from prodloop.server.store import Store, ci, lineage
from prodloop.tools.engine._shape import cap, iso
from prodloop.tools.engine.functions import FunctionIndex
from prodloop.tools.engine.git_repo import GitRepo
from prodloop.tools.judge.test_checks import is_test_module
from prodloop.tools.ship.quarantine import locate_test

Kind = Literal["regression", "test_rot", "flaky", "unknown"]
KINDS: tuple[Kind, ...] = ("regression", "test_rot", "flaky", "unknown")


class Suspect(BaseModel):
    commit: str
    author: str
    summary: str
    at: str | None
    code_files: list[str] = Field(description="code the test runs that the commit changed")
    functions: list[str] = Field(description="functions of that code the commit changed")
    test_files: list[str] = Field(description="test files the commit changed")
    related_tests: list[str] = Field(
        description="test files the commit updated that call a changed function the failing test calls too"
    )


class Classification(BaseModel):
    failure_id: int
    test_id: str
    test_path: str | None = Field(description="the test's file in the repository, when found")
    exception_type: str
    location: str
    kind: Kind
    decided_by: str | None = Field(description="the person whose decision this is; null when prodloop classified")
    evidence: list[str]
    failing_commit: str | None
    last_pass: str | None = Field(description="the newest ancestor of the failing commit the test passed on")
    suspects: list[Suspect]
    code_under_test: list[str]
    next_step: str


def classify_failure(store: Store, repo: GitRepo, failure_id: int) -> Classification:
    row = ci.failure(store, failure_id)
    if row is None:
        raise NotFoundError("CI failure", str(failure_id), "list them with `prodloop ci failures`")
    runs = ci.runs_of_test(store, row.test_id)
    failing = [r for r in runs if r.failure_id == failure_id and repo.resolve(r.commit) is not None]
    test_path = ci.test_file(row.test_id)
    base: dict[str, Any] = {"failure_id": failure_id, "test_id": row.test_id, "exception_type": row.exception_type,
                            "location": row.location}  # fmt: skip
    if not failing:
        return Classification(
            **base, test_path=None, kind="unknown", decided_by=None, failing_commit=None, last_pass=None,
            suspects=[], code_under_test=[],
            evidence=["none of the commits it failed on is in this repository"],
            next_step="fetch the commits CI tested, then classify again",
        )  # fmt: skip
    newest = failing[-1]
    commit = repo.resolve(newest.commit) or newest.commit
    located = locate_test(repo, commit, row.test_id)
    test_path = located[0] if isinstance(located, tuple) else test_path
    code = _code_under_test(repo, commit, test_path, row.frames)
    evidence: list[str] = []
    # Judged within the job it failed in: another job (another interpreter, another OS) passing says nothing of it.
    same = [r for r in runs if r.commit == newest.commit and r.job == newest.job]
    elsewhere = sorted({r.job or "(no job)" for r in runs
                        if r.commit == newest.commit and r.job != newest.job and r.outcome == "passed"})  # fmt: skip
    if elsewhere:
        evidence.append(f"on {newest.commit[:12]} it fails in job {newest.job or '(no job)'} and passes in "
                        f"{', '.join(elsewhere[:3])}: a failure of that job's environment is no flake")  # fmt: skip
    last_pass = next(
        (r for r in reversed(runs) if r.at <= newest.at and r.outcome == "passed" and r.reruns == 0
         and r.job == newest.job and r.commit != newest.commit and repo.resolve(r.commit)
         and repo.is_ancestor(r.commit, commit)),
        None,
    )  # fmt: skip
    called = _called_by_test(repo.read(commit, test_path) or "", row.test_id)
    suspects = _suspects(repo, last_pass.commit if last_pass else None, commit, code, test_path, called)
    decided = ci.decision(store, failure_id)
    kind: Kind
    if any(r.outcome == "passed" for r in same):
        passed = sum(r.outcome == "passed" for r in same)
        reran = any(r.outcome == "passed" and r.reruns for r in same)
        evidence.append(
            f"on {newest.commit[:12]} it both failed and passed ({len(same)} runs, {passed} passed"
            f"{', one only after a rerun' if reran else ''})"
        )
        kind = "flaky"
    elif last_pass is None:
        evidence.append(f"no ancestor of {newest.commit[:12]} is known to have passed it: what broke it is unknown")
        kind = "unknown"
    else:
        evidence.append(f"passed on {last_pass.commit[:12]} ({iso(last_pass.at)}), fails on {newest.commit[:12]}")
        kind = _judge(store, repo, row, test_path, suspects, evidence, called)
    if decided is not None:
        evidence.insert(0, f"{decided[1]} classified it {decided[0]} on {iso(decided[3])}: {cap(decided[2], 300)}")
        kind = next((k for k in KINDS if k == decided[0]), kind)
    return Classification(
        **base, test_path=test_path, kind=kind, decided_by=decided[1] if decided else None, evidence=evidence,
        failing_commit=commit, last_pass=repo.resolve(last_pass.commit) if last_pass else None, suspects=suspects,
        code_under_test=code, next_step=_NEXT[kind].format(id=failure_id, test=test_path),
    )  # fmt: skip


_NEXT: dict[Kind, str] = {
    "regression": "fix the code, not the test: the failing test {test} reproduces the regression; a person who knows "
    "the change was intended says so with `prodloop ci classify {id} --as test_rot --by NAME --why TEXT`",
    "test_rot": "heal the test: write the updated test and call heal_test(failure_id={id}, test_code=...); it must "
    "pass on the failing commit, keep every assertion, and pass mutation testing of the changed code",
    "flaky": "do not heal or fix blindly: `prodloop ci quarantine` proposes quarantining it until it runs clean",
    "unknown": "a person decides: `prodloop ci classify {id} --as KIND --by NAME --why TEXT`",
}


def _judge(
    store: Store, repo: GitRepo, row: ci.FailureRow, test_path: str, suspects: list[Suspect], evidence: list[str],
    called: set[str],
) -> Kind:  # fmt: skip
    code_changes = [s for s in suspects if s.code_files]
    test_changes = [s for s in suspects if test_path in s.test_files]
    if not code_changes:
        if test_changes:
            evidence.append(f"only the test itself changed since ({', '.join(s.commit[:12] for s in test_changes)})")
        else:
            evidence.append("nothing it runs and not the test changed since (a dependency or environment change?)")
        return "unknown"
    for s in code_changes:
        evidence.append(f"{s.commit[:12]} by {s.author} changed {', '.join(s.code_files[:5])}: {cap(s.summary, 120)}")
    since = min(repo.commit_info(s.commit).authored_at for s in code_changes)
    changed = sorted({f for s in code_changes for f in s.code_files})
    production = lineage.issues_on_files(store, changed, seen_since=since)
    if production:
        issues = ", ".join(f"#{i}" for i in sorted(production)[:5])
        evidence.append(f"production shows errors in those files since the change (issues {issues})")
        return "regression"
    crash_file = row.location.rsplit(":", 1)[0]
    in_code = bool(crash_file) and not is_test_module(crash_file) and row.exception_type != "AssertionError"
    if crash_file in changed or in_code:
        evidence.append(f"{row.exception_type} is raised in the code ({row.location}), not by the test's assertion")
        return "regression"
    # Test rot only when every change to a function this test calls came with an update of other tests calling it:
    # an unrelated test file in the same commit, or a second commit that updated no test, is no such evidence.
    relevant = [s for s in code_changes if called & set(s.functions)]
    if not relevant:
        evidence.append("no change touched a function the test calls by name: nothing says its new behaviour is meant")
        return "regression"
    unfollowed = [s for s in relevant if not s.related_tests]
    for s in unfollowed:
        fns = ", ".join(sorted(called & set(s.functions))[:5])
        evidence.append(f"{s.commit[:12]} changed {fns}, which the test calls, and updated no test that calls it")
    if unfollowed:
        return "regression"
    for s in relevant:
        fns = ", ".join(sorted(called & set(s.functions))[:5])
        evidence.append(
            f"{s.commit[:12]} changed {fns} and updated {', '.join(s.related_tests[:5])}, which call it too: an "
            "intended behaviour change this test did not follow"
        )
    return "test_rot"


def _suspects(
    repo: GitRepo, since: str | None, until: str, code: list[str], test_path: str, called: set[str]
) -> list[Suspect]:
    if since is None:
        return []
    watched = tuple(sorted({*code, test_path}))
    out = []
    for sha in repo.commits_touching_files(since, until, watched)[:20]:
        parent = repo.resolve(f"{sha}^")
        files = repo.changed_between(parent, sha) if parent else set(repo.files(sha))
        info = repo.commit_info(sha)
        code_files = sorted(f for f in files if f in code)
        functions = _changed_functions(repo, parent, sha, code_files) if parent and code_files else set()
        tests = sorted(f for f in files if is_test_module(f))
        related = [t for t in tests if t != test_path
                   and functions & called & _called_in(repo.read(sha, t) or "")]  # fmt: skip
        out.append(Suspect(
            commit=sha, author=cap(info.author, 100) or "", summary=cap(info.summary, 200) or "",
            at=iso(info.authored_at), code_files=code_files, functions=sorted(functions), test_files=tests,
            related_tests=related,
        ))  # fmt: skip
    return out


_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@", re.M)


def _changed_functions(repo: GitRepo, parent: str, sha: str, paths: list[str]) -> set[str]:
    """Names of the functions (innermost, unqualified) holding the lines a commit changed in `paths`."""
    names: set[str] = set()
    for path in paths:
        index = FunctionIndex(repo.read(sha, path) or "")
        for match in _HUNK.finditer(repo.diff(parent, sha, (path,))):
            start, count = int(match.group(1)), int(match.group(2) or 1)
            for line in range(start, start + max(count, 1)):
                fn = index.at(line)
                if fn is not None:
                    names.add(fn.qualname.rsplit(".", 1)[-1])
    return names


def _called_in(source: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    return _calls(tree)


def _calls(node: ast.AST) -> set[str]:
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Call):
            func = n.func
            if isinstance(func, ast.Name):
                out.add(func.id)
            elif isinstance(func, ast.Attribute):
                out.add(func.attr)
    return out


def _called_by_test(source: str, test_id: str) -> set[str]:
    """What the failing test function calls by name (its class's other methods and fixtures aside)."""
    name = test_id.rpartition("::")[2].split("[", 1)[0]
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    found = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name]
    return _calls(found[-1]) if found else set()


def _code_under_test(repo: GitRepo, commit: str, test_path: str, frames: list[str]) -> list[str]:
    """Repository code files the test runs: those in its traceback and the modules its file imports."""
    files = set(repo.files(commit))
    code: set[str] = set()
    for frame in frames:
        name = frame.rsplit(":", 1)[0].replace("\\", "/").lstrip("/")
        parts = name.split("/")
        match = next((t for t in ("/".join(parts[i:]) for i in range(len(parts))) if t in files), None)
        if match and not is_test_module(match):
            code.add(match)
    source = repo.read(commit, test_path)
    try:
        tree = ast.parse(source) if source else None
    except (SyntaxError, ValueError):
        tree = None
    for node in ast.walk(tree) if tree else ():
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        for module in modules:
            stem = module.replace(".", "/")
            for candidate in (f"{stem}.py", f"{stem}/__init__.py", f"src/{stem}.py", f"src/{stem}/__init__.py"):
                if candidate in files and not is_test_module(candidate):
                    code.add(candidate)
    return sorted(code)


def record_decision(
    store: Store, clock: Clock, failure_id: int, *, kind: str, by: str, why: str
) -> None:  # fmt: skip
    """A person's classification (CLI only): it stands over prodloop's until the next one."""
    if ci.failure(store, failure_id) is None:
        raise NotFoundError("CI failure", str(failure_id), "list them with `prodloop ci failures`")
    if kind not in KINDS:
        raise InvalidArgument("kind", f"{cap(kind, 40)!r} is not one of {', '.join(KINDS)}", "choose one of them")
    if not by.strip() or not why.strip():
        raise InvalidArgument("by/why", "a decision needs the person's name and the reason", "pass --by and --why")
    ci.decide(store, failure_id, kind=kind, by=cap(by.strip(), 100) or "", why=cap(why.strip(), 1000) or "",
              at=clock.now())  # fmt: skip
