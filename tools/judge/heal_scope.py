"""What a heal may change in a test file: the failing test's own function, and imports of names the file did not bind.

Everything else in the file (the other tests, helpers, fixtures, module-level code, the class around a test method)
must stay statement for statement as it was: only the failing test is run and mutation-tested, so a change anywhere
else (a sibling test wrapped in a do-nothing decorator, a name rebound at module level, a helper that asserts
nothing, `globals()` patched) would ship unjudged. Inside the healed function its decorators stay as they were
(parametrize rows may change; the weakening check counts them), and it may not reach for `globals()`, `vars()`,
`exec`, `setattr` and the like unless it already did.
"""

from __future__ import annotations

import ast
import copy
import difflib

_REACHING = {"globals", "vars", "locals", "exec", "eval", "compile", "setattr", "delattr", "__import__"}


def changes_outside(old_source: str, new_source: str, test_name: str) -> list[str]:
    """Evidence of each change the heal makes beyond `test_name` (`test_x` or `Class::test_x`); empty: none."""
    old_tree, new_tree = ast.parse(old_source), ast.parse(new_source)
    owner, _, name = test_name.rpartition("::")
    old_items, new_items = _rest(old_tree, owner, name), _rest(new_tree, owner, name)
    bound = _bound(old_tree)
    found = []
    matcher = difflib.SequenceMatcher(a=[d for d, _ in old_items], b=[d for d, _ in new_items], autojunk=False)
    for op, a1, a2, b1, b2 in matcher.get_opcodes():
        if op == "equal":
            continue
        for _, node in new_items[b1:b2]:
            if op == "insert" and isinstance(node, (ast.Import, ast.ImportFrom)) and not (_names(node) & bound):
                continue  # a new import of a new name: the healed test may need one
            found.append(f"line {node.lineno}: `{_short(node)}` is new or changed outside {test_name}")
        for _, node in old_items[a1:a2]:
            if op == "delete":
                found.append(f"line {node.lineno} as it was: `{_short(node)}` is gone")
    old_fn, new_fn = _function(old_tree, owner, name), _function(new_tree, owner, name)
    if old_fn is not None and new_fn is not None:
        found += _inside(old_fn, new_fn, test_name)
    return found


def _inside(old: ast.AST, new: ast.AST, test_name: str) -> list[str]:
    found = []
    keep = [ast.dump(d) for d in getattr(old, "decorator_list", []) if not _parametrize(d)]
    now = [ast.dump(d) for d in getattr(new, "decorator_list", []) if not _parametrize(d)]
    if keep != now:
        found.append(f"the decorators of {test_name} changed (only parametrize rows may)")
    reached = _reaching(new) - _reaching(old)
    if reached:
        found.append(f"{test_name} now uses {', '.join(sorted(reached))}: it could rewrite what it tests")
    return found


def _reaching(fn: ast.AST) -> set[str]:
    out = set()
    for node in ast.walk(fn):
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            out.add(type(node).__name__.lower())
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _REACHING:
            out.add(f"{node.func.id}()")
        elif isinstance(node, ast.Attribute) and node.attr in ("__dict__", "__globals__", "__code__", "__builtins__"):
            out.add(node.attr)
    return out


def _parametrize(node: ast.expr) -> bool:
    func = node.func if isinstance(node, ast.Call) else node
    return isinstance(func, ast.Attribute) and func.attr == "parametrize"


def _rest(tree: ast.Module, owner: str, name: str) -> list[tuple[str, ast.stmt]]:
    """The module's statements without the healed function (for a method: its class without it), each dumped."""
    out: list[tuple[str, ast.stmt]] = []
    for node in tree.body:
        if not owner and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            continue
        if owner and isinstance(node, ast.ClassDef) and node.name == owner:
            kept = [s for s in node.body if not (isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))
                                                 and s.name == name)]  # fmt: skip
            clone = copy.copy(node)
            clone.body = kept
            out.append((ast.dump(clone), node))
            continue
        out.append((ast.dump(node), node))
    return out


def _function(tree: ast.Module, owner: str, name: str) -> ast.AST | None:
    scope: list[ast.stmt] = tree.body
    if owner:
        cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == owner), None)
        scope = cls.body if cls is not None else []
    found = [n for n in scope if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name]
    return found[-1] if found else None


def _bound(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= _names(node)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        else:
            names |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return names


def _names(node: ast.Import | ast.ImportFrom) -> set[str]:
    return {(a.asname or a.name).split(".")[0] for a in node.names}


def _short(node: ast.AST) -> str:
    text = ast.unparse(node).replace("\n", " ")
    return text if len(text) <= 100 else text[:97] + "..."
