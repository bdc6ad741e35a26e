"""`suggest_suite_changes`: proposals for the test suite from production history and git history.

- *slower suite*: test files whose covered code (the service modules they import) has had no
  production error and no commit for `quiet_days`: candidates for a weekly marker;
- *removal*: test files that import service modules or names that no longer exist at HEAD;
- *prodloop-added*: tests prodloop added, with their provenance, never proposed for removal
  while the failure they guard is recent.
Proposals only: nothing is moved or deleted here.
"""

from __future__ import annotations

import ast
from typing import Literal

from pydantic import BaseModel, Field

from prodloop.server.clock import Clock
from prodloop.server.store import Store, history, policy
from prodloop.server.store.history import PathMatch
from prodloop.tools.engine._shape import iso
from prodloop.tools.engine.git_repo import GitRepo
from prodloop.tools.judge.test_checks import is_test_module
from prodloop.tools.locate.source_map import module_of

DAY = 86_400.0


class Proposal(BaseModel):
    test_path: str
    action: Literal["move_to_slow_suite", "remove", "keep"]
    reasons: list[str]
    provenance: dict[str, object] | None = Field(default=None, description="when prodloop added the test")


class SuiteProposals(BaseModel):
    quiet_days: int
    head: str
    proposals: list[Proposal]
    note: str


def suggest_suite_changes(
    store: Store, repo: GitRepo, clock: Clock, *, quiet_days: int = 180, at: str | None = None
) -> SuiteProposals:
    """Proposals for the suite at commit `at` (default HEAD). A test already moved to the slower suite (its latest
    provenance record says so) is not proposed for it again."""
    head = at or repo.head()
    files = repo.files(head)
    modules = {module_of(p): p for p in files if p.endswith(".py")}
    packages = {m.split(".")[0] for m in modules}
    added = {r["test_path"]: r for r in policy.provenance_records(store)[0] if policy.is_added(r)}
    moved = {node for node, (action, _, _) in policy.latest_actions(store).items() if action == "moved"}
    cutoff = clock.now() - quiet_days * DAY
    proposals: list[Proposal] = []
    for path in files:
        if not is_test_module(path):
            continue
        tree = _parse(repo.read(head, path))
        if tree is None:
            continue
        imported, missing = _imports(tree, modules, packages, repo, head)
        if missing:
            reasons = [f"imports {m}, which no longer exists" for m in missing]
            proposals.append(Proposal(test_path=path, action="remove", reasons=reasons, provenance=added.get(path)))
            continue
        if not imported:
            continue
        covered = sorted({modules[m] for m in imported})
        shas = repo.commits_touching_files(None, head, tuple(covered))
        last_commit = repo.commit_info(shas[0]).authored_at if shas else 0.0
        match = PathMatch(filenames=tuple(covered), modules=tuple(sorted(imported)))
        issues = len(history.issues_touching(store.reader(), match, since=0.0))
        last_error = _last_error(store, covered)
        reasons = []
        if last_commit >= cutoff:
            reasons.append(f"its code changed on {iso(last_commit)}")
        if last_error is not None and last_error >= cutoff:
            reasons.append(f"its code failed in production on {iso(last_error)} ({issues} issue(s))")
        if path in added:
            reasons.append(f"added by prodloop for issue {added[path].get('issue_id')}")
        if reasons:
            if path in added:
                proposals.append(Proposal(test_path=path, action="keep", reasons=reasons, provenance=added[path]))
            continue
        if path in moved:
            continue
        why = [f"no commit to {', '.join(covered)} and no production error in them for {quiet_days} days"]
        proposals.append(Proposal(test_path=path, action="move_to_slow_suite", reasons=why, provenance=added.get(path)))
    return SuiteProposals(
        quiet_days=quiet_days,
        head=head,
        proposals=proposals,
        note="proposals only: a person applies them with `prodloop suite apply PATH... --by NAME --why TEXT`",
    )


def _parse(text: str | None) -> ast.Module | None:
    try:
        return ast.parse(text) if text is not None else None
    except (SyntaxError, ValueError):
        return None


def _imports(
    tree: ast.Module, modules: dict[str, str], packages: set[str], repo: GitRepo, head: str
) -> tuple[set[str], list[str]]:
    imported: set[str] = set()
    missing: list[str] = []
    for node in ast.walk(tree):
        names: list[tuple[str, list[str]]] = []
        if isinstance(node, ast.Import):
            names = [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [(node.module, [a.name for a in node.names])]
        for module, symbols in names:
            if module.split(".")[0] not in packages or module.split(".")[0] in ("tests", "test"):
                continue
            if module not in modules:
                missing.append(module)
                continue
            imported.add(module)
            source = _parse(repo.read(head, modules[module]))
            defined = _top_level_names(source) if source else set()
            for symbol in symbols:
                if symbol != "*" and symbol not in defined and f"{module}.{symbol}" not in modules:
                    missing.append(f"{module}.{symbol}")
    return imported, missing


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _last_error(store: Store, paths: list[str]) -> float | None:
    names = sorted({*paths, *(p.removeprefix("src/") for p in paths)})
    query = (
        "SELECT max(i.last_seen) FROM issues i JOIN issue_frames f ON f.issue_id = i.id"
        f" WHERE f.filename IN ({','.join('?' * len(names))})"
    )
    row = store.reader().execute(query, names).fetchone()
    return float(row[0]) if row and row[0] is not None else None
