"""Static gates on a candidate test (AST): public interfaces only, and a real assertion.

*Public interface*: no import of, or attribute access to, `_private` names of the service's
own modules, and no monkeypatching of the code under test (`monkeypatch.setattr`,
`mock.patch`, `patch.object`, `mocker.patch` aimed at the service).
*Real assertion*: at least one `assert` (not a constant, not `x == x`) or `pytest.raises`
block, or an explicit crash oracle (`raise AssertionError` / `pytest.fail` in an `except`
around a service call), that depends on a call into the service; and no bare or broad
`except` that swallows the failure.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable

from pydantic import BaseModel, Field

from prodloop.server.errors import InvalidArgument

_PATCHERS = {"setattr", "setitem", "delattr", "delitem", "patch", "object", "dict"}


class Finding(BaseModel):
    line: int
    problem: str
    name: str | None = Field(default=None, description="the local name a private import binds", exclude=True)


def parse_test(code: str, argument: str = "test") -> ast.Module:
    try:
        return ast.parse(code)
    except SyntaxError as exc:
        raise InvalidArgument(argument, f"is not valid Python (line {exc.lineno}: {exc.msg})", "fix the test") from exc


def is_test_module(path: str) -> bool:
    """A file pytest collects as tests by its default patterns (`test_*.py`, `*_test.py`)."""
    name = path.rsplit("/", 1)[-1]
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


def test_functions(tree: ast.AST) -> list[tuple[ast.FunctionDef | ast.AsyncFunctionDef, str]]:
    """Test functions with their names, `Class::method` for pytest-style `Test*` classes and unittest
    `TestCase`s."""
    out: list[tuple[ast.FunctionDef | ast.AsyncFunctionDef, str]] = []
    for node in getattr(tree, "body", []):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            out.append((node, node.name))
        elif isinstance(node, ast.ClassDef) and (node.name.startswith("Test") or _test_case_class(node)):
            out += [
                (f, f"{node.name}::{f.name}")
                for f in node.body
                if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and f.name.startswith("test")
            ]
    return out


def test_function_names(tree: ast.Module) -> list[str]:
    return [name for _, name in test_functions(tree)]


def _test_case_class(node: ast.ClassDef) -> bool:
    """A class pytest collects through unittest: one of its bases is named like a test case."""
    for base in node.bases:
        name = base.attr if isinstance(base, ast.Attribute) else base.id if isinstance(base, ast.Name) else ""
        if "TestCase" in name or name.endswith(("Test", "Tests", "Case")):
            return True
    return False


def service_names(tree: ast.Module, packages: Iterable[str]) -> set[str]:
    """Local names bound to the service's modules or objects by the test's imports."""
    pkgs = set(packages)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in pkgs:
                    names.add(a.asname or a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in pkgs:
                names.update(a.asname or a.name for a in node.names)
    return names


def public_interface_findings(
    tree: ast.Module, packages: Iterable[str], test_name: str | None = None, may_patch: set[str] | None = None
) -> list[Finding]:
    """Private names and monkeypatching of the service in what the candidate runs: its own body and decorators,
    its class's fixtures and helpers, module-level helpers it reaches, and module-level statements. Other tests
    of the same file (a project's own test file holds many) and a private name imported only for them are not
    the candidate's concern.

    `may_patch` names service functions off the failure's path (a debug dump helper, say): patching those is
    allowed; faking code or data the failure runs through would make the test prove nothing.
    """
    findings = _interface_findings(tree, packages, may_patch)
    if test_name is None:
        return findings
    used, spans = _reach(tree, test_name)
    defs = [
        (min([n.lineno, *(d.lineno for d in getattr(n, "decorator_list", []))]), n.end_lineno or n.lineno)
        for n in tree.body
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    ]
    out = []
    for f in findings:
        module_level = not any(a <= f.line <= b for a, b in defs)
        if not module_level and not any(a <= f.line <= b for a, b in spans):
            continue
        if module_level and f.name is not None and f.name not in used:
            continue
        out.append(f)
    return out


def _reach(tree: ast.Module, test_name: str) -> tuple[set[str], list[tuple[int, int]]]:
    """Names the candidate uses and the line spans of what it runs: its body, its class's non-test members,
    and module-level helpers and classes it reaches (transitively)."""
    fn = find_test(tree, test_name)
    cls_name = test_name.rpartition("::")[0]
    scopes: list[ast.AST] = [fn, *fn.decorator_list]
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls_name), None)
    if cls is not None:
        scopes += [n for n in cls.body if not (isinstance(n, ast.FunctionDef) and n.name.startswith("test"))]
        scopes += [*cls.bases, *cls.decorator_list]
    helpers = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    used: set[str] = set()
    spans: list[tuple[int, int]] = []
    while scopes:
        scope = scopes.pop()
        if isinstance(scope, ast.stmt | ast.expr):
            start = min([scope.lineno, *(d.lineno for d in getattr(scope, "decorator_list", []))])
            spans.append((start, scope.end_lineno or scope.lineno))
        for n in ast.walk(scope):
            if isinstance(n, ast.Name) and n.id not in used:
                used.add(n.id)
                if n.id in helpers and helpers[n.id] is not fn and helpers[n.id] is not cls:
                    scopes.append(helpers[n.id])
    return used, spans


def _interface_findings(tree: ast.Module, packages: Iterable[str], may_patch: set[str] | None) -> list[Finding]:
    pkgs = set(packages)
    bound = service_names(tree, pkgs)
    out: list[Finding] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in pkgs:
            if _private_path(node.module):
                out.append(Finding(line=node.lineno, problem=f"imports private module {node.module}"))
            out += [Finding(line=node.lineno, problem=f"imports private name {a.name} from {node.module}",
                            name=a.asname or a.name)
                    for a in node.names if _private(a.name)]  # fmt: skip
        elif isinstance(node, ast.Import):
            out += [Finding(line=node.lineno, problem=f"imports private module {a.name}")
                    for a in node.names if a.name.split(".")[0] in pkgs and _private_path(a.name)]  # fmt: skip
        elif isinstance(node, ast.Attribute) and _private(node.attr) and _root(node) not in ("self", "cls"):
            out.append(Finding(line=node.lineno, problem=f"touches private attribute {node.attr}"))
        elif isinstance(node, ast.Call) and _is_patch(node.func) and node.args:
            target = node.args[0]
            if (isinstance(target, ast.Constant) and isinstance(target.value, str)
                    and target.value.split(".")[0] in pkgs) or _root(target) in bound:  # fmt: skip
                name = _patched_name(node)
                if name is None or name not in (may_patch or set()):
                    what = f" ({name})" if name else ""
                    out.append(Finding(line=node.lineno, problem=f"monkeypatches the code under test{what}"))
    return out


def assertion_findings(tree: ast.Module, test_name: str, packages: Iterable[str]) -> tuple[list[str], list[Finding]]:
    """(evidence of real assertions, problems) within one test function."""
    fn = find_test(tree, test_name)
    bound = service_names(tree, packages)
    tainted = _module_taint(tree, bound)
    cls_name = test_name.rpartition("::")[0]
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls_name), None)
    if cls is not None and _uses(cls, tainted):
        # A test case whose class builds on the service (its base, fixtures or helper methods) reaches it via self.
        tainted.add("self")
    tainted |= _parametrized_from(fn, tainted)
    changed = True
    while changed:
        changed = False
        for node in ast.walk(fn):
            targets: list[ast.expr] = []
            value: ast.expr | None = None
            if isinstance(node, ast.Assign):
                targets, value = node.targets, node.value
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and node.value is not None:
                targets, value = [node.target], node.value
            elif isinstance(node, ast.withitem) and node.optional_vars is not None:
                targets, value = [node.optional_vars], node.context_expr
            if value is not None and _uses(value, tainted):
                for t in targets:
                    for name in ast.walk(t):
                        if isinstance(name, ast.Name) and name.id not in tainted:
                            tainted.add(name.id)
                            changed = True
    evidence: list[str] = []
    problems: list[Finding] = []
    for node in ast.walk(fn):
        if isinstance(node, ast.Assert):
            if isinstance(node.test, ast.Constant) or _same_sides(node.test):
                problems.append(Finding(line=node.lineno, problem="assertion that cannot fail"))
            elif _uses(node.test, tainted):
                evidence.append(f"line {node.lineno}: assert {ast.unparse(node.test)[:120]}")
        elif isinstance(node, ast.With) and any(_is_raises(i.context_expr) for i in node.items):
            if any(_calls(stmt, tainted) for stmt in node.body):
                evidence.append(f"line {node.lineno}: {ast.unparse(node.items[0].context_expr)[:120]}")
        elif isinstance(node, ast.Call) and _is_assert_call(node.func):
            args = [*node.args, *(k.value for k in node.keywords)]
            if args and all(isinstance(a, ast.Constant) for a in args):
                problems.append(Finding(line=node.lineno, problem="assertion that cannot fail"))
            elif any(_uses(a, tainted) for a in args):
                evidence.append(f"line {node.lineno}: {ast.unparse(node)[:120]}")
        elif isinstance(node, ast.Try):
            guarded = any(_calls(stmt, tainted) for stmt in node.body)
            for handler in node.handlers:
                broad = handler.type is None or (
                    isinstance(handler.type, ast.Name) and handler.type.id in ("Exception", "BaseException")
                )
                fails = any(_fails(stmt) for stmt in ast.walk(ast.Module(body=handler.body, type_ignores=[])))
                if fails and guarded:
                    caught = ast.unparse(handler.type) if handler.type else "anything"
                    evidence.append(f"line {handler.lineno}: crash oracle, fails if {caught} is raised")
                elif (
                    broad
                    and not fails
                    and not any(
                        isinstance(s, ast.Raise) for s in ast.walk(ast.Module(body=handler.body, type_ignores=[]))
                    )
                ):
                    problems.append(Finding(line=handler.lineno, problem="except swallows the failure"))
    return evidence, problems


def _parametrized_from(fn: ast.FunctionDef | ast.AsyncFunctionDef, tainted: set[str]) -> set[str]:
    """The test's parameters that `pytest.mark.parametrize` fills with values built on the service."""
    out: set[str] = set()
    for deco in fn.decorator_list:
        if not (isinstance(deco, ast.Call) and ast.unparse(deco.func).endswith("parametrize") and len(deco.args) > 1):
            continue
        spec, rows = deco.args[0], deco.args[1]
        if isinstance(spec, ast.Constant) and isinstance(spec.value, str):
            names = [n.strip() for n in spec.value.split(",")]
        elif isinstance(spec, (ast.Tuple, ast.List)):
            names = [e.value for e in spec.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
        else:
            continue
        for row in rows.elts if isinstance(rows, (ast.List, ast.Tuple)) else []:
            if isinstance(row, ast.Call) and ast.unparse(row.func).endswith("param"):
                values = list(row.args)
            else:
                values = list(row.elts) if isinstance(row, ast.Tuple) and len(names) > 1 else [row]
            out |= {name for name, value in zip(names, values, strict=False) if _uses(value, tainted)}
    return out


def find_test(tree: ast.Module, test_name: str) -> ast.FunctionDef | ast.AsyncFunctionDef:
    cls, _, name = test_name.rpartition("::")
    scope: list[ast.stmt] = tree.body
    if cls:
        found = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls), None)
        scope = found.body if found else []
    for node in scope:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return node
    raise InvalidArgument("test_name", f"{test_name} is not a test function of the candidate", "name one of its tests")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_path(module: str) -> bool:
    return any(_private(part) for part in module.split("."))


def _root(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.value if not isinstance(node, ast.Call) else node.func
    return node.id if isinstance(node, ast.Name) else None


def _patched_name(call: ast.Call) -> str | None:
    """The attribute a patch replaces: `patch("pkg.mod.name")`, `patch.object(mod, "name")`, `setattr(mod, "name")`."""
    first = call.args[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first.value.rsplit(".", 1)[-1]
    if len(call.args) > 1 and isinstance(call.args[1], ast.Constant) and isinstance(call.args[1].value, str):
        return call.args[1].value
    return None


def _is_patch(func: ast.expr) -> bool:
    if isinstance(func, ast.Attribute):
        return func.attr in _PATCHERS and _root(func) in ("monkeypatch", "mock", "mocker", "patch", "unittest")
    return isinstance(func, ast.Name) and func.id == "patch"


def _uses(node: ast.AST, names: set[str]) -> bool:
    return any(isinstance(n, ast.Name) and n.id in names for n in ast.walk(node))


def _calls(node: ast.AST, names: set[str]) -> bool:
    return any(isinstance(n, ast.Call) and _root(n.func) in names for n in ast.walk(node))


def _same_sides(test: ast.expr) -> bool:
    return (
        isinstance(test, ast.Compare)
        and len(test.comparators) == 1
        and ast.dump(test.left) == ast.dump(test.comparators[0])
    )


def _is_raises(expr: ast.expr) -> bool:
    return (
        isinstance(expr, ast.Call)
        and isinstance(expr.func, ast.Attribute)
        and expr.func.attr in ("raises", "assertRaises", "assertRaisesRegex")
    )


def _is_assert_call(func: ast.expr) -> bool:
    """`self.assertEqual(...)`, a test case's own `self.assertFormatEqual(...)`, `assert_frame_equal(...)`."""
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return name.lower().startswith("assert") and name not in ("assertRaises", "assertRaisesRegex", "AssertionError")


def _module_taint(tree: ast.Module, bound: set[str]) -> set[str]:
    """Service names, plus module-level names, helper functions and classes of the test file built from them."""
    tainted = set(bound)
    changed = True
    while changed:
        changed = False
        for node in tree.body:
            names: list[str] = []
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and _uses(node, tainted):
                names = [node.name]
            elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value and _uses(node.value, tainted):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
            for name in names:
                if name not in tainted:
                    tainted.add(name)
                    changed = True
    return tainted


def _fails(node: ast.AST) -> bool:
    if isinstance(node, ast.Raise) and node.exc is not None:
        target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        return isinstance(target, ast.Name) and target.id == "AssertionError"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.attr == "fail" and _root(node.func) == "pytest"
    return False
