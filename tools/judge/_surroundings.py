"""What around a test decides whether its assertions run and what they see: where pytest finds the test, the
marks on it, its class and its module, skips, patches, `except` clauses that swallow a failure, and the fixtures
and setup methods of its file."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from prodloop.tools.judge._assertions import TestFunction, short
from prodloop.tools.judge._ast_values import call_name

SKIP_MARKS = {"skip", "skipif", "xfail", "skipIf", "skipUnless", "expectedFailure"}
_HARMLESS_MARKS = {"parametrize", "asyncio", "anyio", "trio", "timeout", "django_db", "usefixtures"}
_SKIP_CALLS = {"skip", "xfail", "importorskip", "skipTest"}
_BROAD = {"Exception", "BaseException", "AssertionError"}
_PATCH_METHODS = {"setattr", "delattr", "setitem", "delitem", "setenv", "delenv"}
_SETUP = {"setup_module", "setup_function", "setUp", "setup_method", "setUpClass", "setup_class", "asyncSetUp"}


@dataclass(frozen=True, slots=True)
class Located:
    fn: TestFunction
    cls: ast.ClassDef | None
    gone: str | None  # why pytest no longer runs it though it is still defined


@dataclass(frozen=True, slots=True)
class Hazard:
    """A mark, skip, patch or swallowing `except`, keyed by what it is so old and new can be compared."""

    kind: str
    key: str
    line: int
    text: str


def locate(tree: ast.Module, test_name: str) -> Located | None:
    """The definition pytest runs for `test_name` (`test_x`, `Cls::test_x`, `Cls.test_x`, with or without a file
    path and a parameter id): the last one of that name in its scope, as in Python."""
    name = test_name.rsplit(".py::", 1)[-1].split("[", 1)[0]
    *classes, func = [p for p in re.split(r"::|\.", name) if p] or [""]
    scope: list[ast.stmt] = tree.body
    cls: ast.ClassDef | None = None
    for part in classes:
        cls = next((n for n in reversed(scope) if isinstance(n, ast.ClassDef) and n.name == part), None)
        if cls is None:
            return None
        scope = cls.body
    defs = (ast.FunctionDef, ast.AsyncFunctionDef)
    found = [i for i, n in enumerate(scope) if isinstance(n, defs) and n.name == func]
    if not found:
        return None
    fn = scope[found[-1]]
    assert isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
    return Located(fn, cls, _gone(tree, cls, scope[found[-1] + 1 :], func))


def _gone(tree: ast.Module, cls: ast.ClassDef | None, later: list[ast.stmt], func: str) -> str | None:
    for stmt in later:
        bound = [t for t in ast.walk(stmt) if isinstance(t, ast.Name) and isinstance(t.ctx, (ast.Store, ast.Del))]
        if any(t.id == func for t in bound) or (isinstance(stmt, ast.ClassDef) and stmt.name == func):
            return f"line {stmt.lineno}: `{short(stmt, 60)}` rebinds `{func}` after its definition"
    for scope in [tree.body, *([cls.body] if cls else [])]:
        for stmt in scope:
            if isinstance(stmt, ast.Assign) and any(short(t) in ("__test__", f"{func}.__test__") for t in stmt.targets):
                return f"line {stmt.lineno}: `{short(stmt, 60)}` stops pytest collecting it"
    return None


def marks(tree: ast.Module, located: Located) -> list[Hazard]:
    """Marks on the test, its class (decorators and `pytestmark`) and its module (`pytestmark`), including marks
    inside `pytest.param(...)` rows."""
    sources: list[ast.expr] = [*located.fn.decorator_list]
    for scope in [tree.body, *([located.cls.body] if located.cls else [])]:
        sources += [s.value for s in scope if isinstance(s, ast.Assign) and "pytestmark" in map(short, s.targets)]
    if located.cls:
        sources += located.cls.decorator_list
    out: list[Hazard] = []
    for source in sources:
        calls = {id(n.func): n for n in ast.walk(source) if isinstance(n, ast.Call)}
        found: list[tuple[str, ast.expr]] = [
            (n.attr, calls.get(id(n), n))
            for n in ast.walk(source)
            if isinstance(n, ast.Attribute) and call_name(n.value) == "mark"
        ]
        target = source.func if isinstance(source, ast.Call) else source
        if call_name(source) in SKIP_MARKS and not (
            isinstance(target, ast.Attribute) and call_name(target.value) == "mark"
        ):  # unittest.skip(...), unittest.expectedFailure
            found.append((call_name(source), source))
        for name, node in found:
            if name in SKIP_MARKS or name not in _HARMLESS_MARKS:
                kind = "skip_added" if name in SKIP_MARKS else "marker_added"
                out.append(Hazard(kind, short(node, 200), node.lineno, short(node)))
    return out


def parametrize_rows(fn: TestFunction) -> dict[str, tuple[int, int]]:
    """Argument names of each `parametrize` -> (number of rows, line)."""
    out: dict[str, tuple[int, int]] = {}
    for deco in fn.decorator_list:
        if isinstance(deco, ast.Call) and call_name(deco) == "parametrize" and len(deco.args) > 1:
            rows = deco.args[1]
            if isinstance(rows, (ast.List, ast.Tuple)):
                out[short(deco.args[0])] = (len(rows.elts), deco.lineno)
    return out


def hazards(node: ast.AST, module_names: set[str], where: str = "") -> list[Hazard]:
    """Skips, patches and swallowing `except`s in a test, fixture or module (`where` names it in the evidence)."""
    local = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    out: list[Hazard] = []
    for n in ast.walk(node):
        if isinstance(n, ast.Call) and call_name(n) in _SKIP_CALLS:
            out.append(Hazard("skip_added", short(n, 200), n.lineno, f"`{short(n)}` skips or xfails the test{where}"))
        elif isinstance(n, ast.Raise) and n.exc is not None and "Skip" in short(n.exc) + call_name(n.exc):
            out.append(Hazard("skip_added", short(n, 200), n.lineno, f"`{short(n)}` skips or xfails the test{where}"))
        elif isinstance(n, ast.Call) and (target := _patch_target(n)):
            out.append(Hazard("patch_added", target, n.lineno, f"`{short(n)}` patches `{target}`{where}"))
        elif isinstance(n, (ast.Assign, ast.AugAssign)):
            for t in n.targets if isinstance(n, ast.Assign) else [n.target]:
                root = t
                while isinstance(root, (ast.Attribute, ast.Subscript)):
                    root = root.value
                if t is not root and isinstance(root, ast.Name) and root.id in module_names - local:
                    out.append(Hazard("patch_added", short(t), n.lineno, f"`{short(n)}` replaces `{short(t)}`{where}"))
        elif isinstance(n, (ast.Try, ast.TryStar)):
            body = "; ".join(short(s, 60) for s in n.body)
            for h in n.handlers:
                if _broad(h.type) and not _fails(h.body):
                    caught = f"except {short(h.type)}" if h.type else "bare except"
                    text = f"`{caught}: {'; '.join(short(s, 40) for s in h.body)}` swallows failures of `{body}`"
                    out.append(Hazard("broad_except", f"{caught}|{body}", h.lineno, text + where))
        elif isinstance(n, (ast.With, ast.AsyncWith)):
            for item in n.items:
                expr = item.context_expr
                if isinstance(expr, ast.Call) and call_name(expr) == "suppress" and any(_broad(a) for a in expr.args):
                    body = "; ".join(short(s, 60) for s in n.body)
                    text = f"`{short(expr)}` swallows failures of `{body}`{where}"
                    out.append(Hazard("broad_except", f"{short(expr)}|{body}", n.lineno, text))
    return out


def _broad(node: ast.expr | None) -> bool:
    if node is None:
        return True
    elts = node.elts if isinstance(node, ast.Tuple) else [node]
    return any(call_name(e) in _BROAD for e in elts)


def _fails(body: list[ast.stmt]) -> bool:
    nodes = [n for s in body for n in ast.walk(s)]
    return any(isinstance(n, (ast.Raise, ast.Assert)) for n in nodes) or any(
        isinstance(n, ast.Call) and (call_name(n) == "fail" or call_name(n).lower().startswith("assert")) for n in nodes
    )


def _patch_target(call: ast.Call) -> str | None:
    name, func, args = call_name(call), call.func, call.args
    receiver = call_name(func.value) if isinstance(func, ast.Attribute) else ""
    if name in _PATCH_METHODS and (receiver or name == "setattr") and args:
        if name in ("setenv", "delenv"):
            return f"os.environ[{short(args[0])}]"
        if name in ("setitem", "delitem") and len(args) > 1:
            return f"{short(args[0])}[{short(args[1])}]"
    elif not (name in ("patch", "multiple") or (name in ("object", "dict") and receiver == "patch")) or not args:
        return None
    first = args[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first.value
    if len(args) > 1 and isinstance(args[1], ast.Constant) and isinstance(args[1].value, str):
        return f"{short(first)}.{args[1].value}"
    return short(first)


def module_names(tree: ast.Module) -> set[str]:
    """Names the module binds by import: patching an attribute of one patches code the test may run."""
    out: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.update((a.asname or a.name).split(".")[0] for a in node.names)
    return out


@dataclass(frozen=True, slots=True)
class Fixture:
    name: str
    fn: TestFunction
    autouse: bool


def fixtures_in_play(tree: ast.Module, located: Located) -> dict[str, Fixture]:
    """File-local fixtures the test requests (directly, through other fixtures, by `usefixtures`, or autouse) and
    the setup methods pytest or unittest run before it, by name."""
    defined: dict[str, Fixture] = {}
    scopes = [tree.body, *([located.cls.body] if located.cls else [])]
    for scope in scopes:
        for node in scope:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            deco = next((d for d in node.decorator_list if call_name(d) == "fixture"), None)
            if deco is None and node.name in _SETUP:
                defined[node.name] = Fixture(node.name, node, autouse=True)
            elif deco is not None:
                kw = {k.arg: k.value for k in deco.keywords} if isinstance(deco, ast.Call) else {}
                named = kw.get("name")
                name = named.value if isinstance(named, ast.Constant) and isinstance(named.value, str) else node.name
                auto = kw.get("autouse")
                defined[name] = Fixture(name, node, isinstance(auto, ast.Constant) and auto.value is True)
    wanted = [a.arg for a in [*located.fn.args.posonlyargs, *located.fn.args.args, *located.fn.args.kwonlyargs]]
    wanted += [
        a.value
        for d in located.fn.decorator_list
        if isinstance(d, ast.Call) and call_name(d) == "usefixtures"
        for a in d.args
        if isinstance(a, ast.Constant) and isinstance(a.value, str)
    ]
    wanted += [name for name, f in defined.items() if f.autouse]
    out: dict[str, Fixture] = {}
    while wanted:
        name = wanted.pop()
        if name in defined and name not in out:
            out[name] = defined[name]
            wanted += [a.arg for a in defined[name].fn.args.args]
    return out


def helpers(tree: ast.Module, located: Located) -> dict[str, TestFunction]:
    """Functions of the file (or methods of the test's class, called on `self`) that the test calls."""
    scope = [*tree.body, *(located.cls.body if located.cls else [])]
    defined = {n.name: n for n in scope if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    called = {call_name(n) for n in ast.walk(located.fn) if isinstance(n, ast.Call)}
    return {name: fn for name, fn in defined.items() if name in called and fn is not located.fn}


def shape(fn: TestFunction) -> str:
    """The code of a function with its constants and docstring blanked: equal shapes differ only in data."""
    copy = ast.parse(ast.unparse(fn)).body[0]
    assert isinstance(copy, (ast.FunctionDef, ast.AsyncFunctionDef))
    if copy.body and isinstance(copy.body[0], ast.Expr) and isinstance(copy.body[0].value, ast.Constant):
        copy.body = copy.body[1:]
    for node in ast.walk(copy):
        if isinstance(node, ast.Constant) and not isinstance(node.value, bool) and node.value is not None:
            node.value = 0
    copy.decorator_list = []
    return ast.dump(copy)
