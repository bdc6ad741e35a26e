"""Tests in the repository that already exercise the culprit: where a regression test belongs.

A test file is related when it imports the culprit's module (or the culprit from it); its
test functions that call or name the culprit function are listed first.
"""

from __future__ import annotations

import ast

from pydantic import BaseModel

from prodloop.tools.engine.git_repo import GitRepo
from prodloop.tools.judge.test_checks import test_functions

_TEST_PATHSPECS = (":(glob)**/test_*.py", ":(glob)**/*_test.py", ":(glob)**/tests/**/*.py")


class RelatedTest(BaseModel):
    path: str
    test_functions: list[str]
    reason: str


def related_tests(
    repo: GitRepo, commit: str, *, module: str | None, function: str | None, limit: int = 20
) -> list[RelatedTest]:
    short_fn = (function or "").rsplit(".", 1)[-1] or None
    patterns = tuple(p for p in (module, short_fn) if p)
    if not patterns:
        return []
    found: list[RelatedTest] = []
    for path in repo.grep_files(commit, patterns, _TEST_PATHSPECS):
        text = repo.read(commit, path)
        if text is None:
            continue
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            continue
        imports = _imports_module(tree, module, short_fn) if module else False
        tests = _tests_naming(tree, short_fn) if short_fn else []
        if not imports and not tests:
            continue
        reasons = []
        if imports:
            reasons.append(f"imports {module}")
        if tests:
            reasons.append(f"{len(tests)} test(s) call {short_fn}")
        found.append(RelatedTest(path=path, test_functions=tests[:30], reason="; ".join(reasons)))
    found.sort(key=lambda t: (-len(t.test_functions), t.path))
    return found[:limit]


def _imports_module(tree: ast.AST, module: str, function: str | None) -> bool:
    parent, _, last = module.rpartition(".")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(
            a.name == module or a.name.startswith(module + ".") for a in node.names
        ):
            return True
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == module:
                return True
            if parent and node.module == parent and any(a.name == last for a in node.names):
                return True
    return False


def _tests_naming(tree: ast.AST, function: str) -> list[str]:
    out = []
    for node, qual in test_functions(tree):
        for sub in ast.walk(node):
            if (isinstance(sub, ast.Name) and sub.id == function) or (
                isinstance(sub, ast.Attribute) and sub.attr == function
            ):
                out.append(qual)
                break
    return out
