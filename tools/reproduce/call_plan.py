"""How a synthesized test calls one function of the mapped path with its production inputs.

A frame is callable from a test when its function can be reached by import: a module-level
function (decorated ones through their decorator, as production called them), a static or
class method, or an instance method whose receiver can be rebuilt (an enum member or a
constructor-shaped repr of one of the service's own classes). Nested functions and lambdas
are reached through their enclosing function, which is tried next on the way out.

Arguments come preferably from the caller's call expression — the whole statement, read at
the deployed commit, so calls spanning several lines and omitted defaulted parameters bind
with the real signature — evaluated over the caller's recorded locals; else from the callee's
own locals. Only data that round-trips becomes code.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from prodloop.tools.locate.source_map import module_of
from prodloop.tools.reproduce.reconstruct import (
    ClassResolver,
    InitSource,
    Unusable,
    constructed,
    evaluate,
    rebuild,
    render,
    service_class,
)

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*){0,20}")
ParamKind = Literal["posonly", "pos", "kw", "star", "starstar"]


class RebuiltInput(BaseModel):
    parameter: str
    value: str = Field(description="the rebuilt value as Python source")
    source: Literal["call-site", "callee-locals", "default", "receiver", "request"]


@dataclass(frozen=True)
class Param:
    name: str
    kind: ParamKind
    has_default: bool


@dataclass
class PlannedCall:
    module: str
    callee: str  # how the test calls it: name, Class.method, or obj.method with a receiver
    import_name: str
    params: list[tuple[str, str]]  # (name, kind) of the arguments given, in call order
    inputs: list[RebuiltInput]
    values: dict[str, Any]
    receiver: str | None = None
    imports: set[str] = field(default_factory=set)
    is_async: bool = False
    helper: str | None = None  # a request replay through this framework's test client (see replay.py)


@dataclass(frozen=True)
class CallerSite:
    """Where the caller called the frame: its statement's source at the deployed commit, and its locals."""

    statement: str | None
    context_line: str | None
    variables: dict[str, Any]


def plan_call(
    path: str,
    source: str,
    qualname: str,
    def_line: int,
    callee_vars: dict[str, Any],
    caller: CallerSite | None,
    classes: ClassResolver,
    init_of: InitSource | None = None,
) -> PlannedCall:
    """With `init_of`, a captured receiver is built by calling its class (`constructed`), else from its state."""
    module = module_of(path)
    if not _DOTTED.fullmatch(module):
        raise Unusable(f"{path} is not importable as a module")
    if module.split(".")[0] in ("tests", "test") or module.rsplit(".", 1)[-1].startswith("test_"):
        raise Unusable("the frame is in a test module")
    tree = ast.parse(source)
    owners, node = _resolve(tree, qualname, def_line)
    if node is None:
        raise Unusable(f"{qualname} could not be parsed at the deployed commit")
    decorators = {ast.unparse(d) for d in node.decorator_list}
    if any(isinstance(o, (ast.FunctionDef, ast.AsyncFunctionDef)) for o in owners):
        raise Unusable(f"{qualname} is nested in a function: its enclosing function is tried instead")
    if "property" in decorators or any(d.endswith((".setter", ".getter", "cached_property")) for d in decorators):
        raise Unusable(f"{qualname} is a property: its caller is tried instead")
    parts = qualname.split(".")
    receiver: str | None = None
    imports: set[str] = set()
    if not owners:
        callee, import_name, skip_first = parts[-1], parts[-1], False
    elif "staticmethod" in decorators:
        callee, import_name, skip_first = qualname, parts[0], False
    elif "classmethod" in decorators:
        callee, import_name, skip_first = qualname, parts[0], True
        first = _first_param(node.args)
        called_on = callee_vars.get(first or "", None)
        if isinstance(called_on, str) and not re.fullmatch(rf"<class '(?:[\w.]+\.)?{re.escape(parts[0])}'>", called_on):
            # Production called it on a subclass: the base class would run other code.
            raise Unusable(f"{qualname} was called on {called_on[:80]}, a subclass: its caller is tried instead")
    elif (made := _constructed_class(node, owners, callee_vars, caller, classes)) is not None:
        # A constructor frame: the test calls the class, which builds the receiver the way production did.
        expression, top, class_module = made
        module, callee, import_name, skip_first = class_module, expression, top, True
    else:
        first = _first_param(node.args)
        if first is None or first not in callee_vars:
            raise Unusable(f"{qualname} is a method and its receiver was not recorded")
        try:
            if init_of is not None:
                built = constructed(callee_vars[first], first, classes, init_of)
            else:
                built = rebuild(callee_vars[first], first, classes)
        except Unusable as why:
            raise Unusable(f"{qualname} is a bound method whose receiver cannot be rebuilt ({why})") from None
        receiver = render(built, imports)
        callee, import_name, skip_first = f"obj.{parts[-1]}", "", True
    params = _params(node.args, skip_first)
    values: dict[str, Any] | None = None
    inputs: list[RebuiltInput] = []
    if caller is not None:
        values, inputs = _from_call_site(caller, parts[-1], params, classes)
    if values is None:
        values, inputs = _from_locals(callee_vars, params, classes)
    given: list[tuple[str, str]] = [(p.name, str(p.kind)) for p in params if p.name in values]
    if receiver is not None:
        inputs.insert(0, RebuiltInput(parameter="self", value=receiver, source="receiver"))
    return PlannedCall(
        module=module, callee=callee, import_name=import_name, params=given, inputs=inputs, values=values,
        receiver=receiver, imports=imports | ({"import asyncio"} if isinstance(node, ast.AsyncFunctionDef) else set()),
        is_async=isinstance(node, ast.AsyncFunctionDef),
    )  # fmt: skip


_CLASS_REPR = re.compile(r"<class '([A-Za-z_][\w.]{0,200})'>")
_OBJECT_REPR = re.compile(r"<([A-Za-z_][\w.]{0,200}) object at 0x[0-9a-fA-F]+>")


def _constructed_class(
    node: ast.FunctionDef | ast.AsyncFunctionDef,
    owners: list[ast.AST],
    callee_vars: dict[str, Any],
    caller: CallerSite | None,
    classes: ClassResolver,
) -> tuple[str, str, str] | None:
    """(expression, import name, module) of the class production was constructing when it entered this frame:
    `__new__` (its `cls`), a metaclass's `__call__` (its receiver is a class), or `__init__` of the very class
    whose default repr `self` shows. None when the frame is not a constructor, or is one reached by an explicit
    `super().__init__(...)`-style call (calling the class would not pass what this frame received)."""
    if node.name not in ("__new__", "__init__", "__call__") or not owners:
        return None
    first = _first_param(node.args)
    shown = callee_vars.get(first or "")
    if isinstance(shown, dict) and isinstance(shown.get("__class__"), str) and node.name == "__init__":
        dotted = shown["__class__"]  # prodloop_capture's structured form
    elif isinstance(shown, str) and node.name in ("__new__", "__call__"):
        found = _CLASS_REPR.fullmatch(shown.strip())
        dotted = found.group(1) if found else None
    elif isinstance(shown, str):
        found = _OBJECT_REPR.fullmatch(shown.strip())
        dotted = found.group(1) if found else None
    else:
        dotted = None
    if dotted is None:
        return None
    statement = caller.statement or caller.context_line if caller is not None else None
    if statement and (find_call(statement, node.name) is not None or "super(" in statement):
        return None
    if not _DOTTED.fullmatch(dotted):  # production data: only a dotted name may become code
        raise Unusable(f"{node.name} was constructing something whose class path is not a dotted name")
    if node.name == "__init__" and dotted.rsplit(".", 1)[-1] != getattr(owners[-1], "name", ""):
        return None  # a subclass's object: its own constructor may take other arguments
    module, top, expression = service_class(dotted, node.name, classes)
    return expression, top, module


def _resolve(
    tree: ast.Module, qualname: str, def_line: int
) -> tuple[list[ast.AST], ast.FunctionDef | ast.AsyncFunctionDef | None]:
    """The def named `qualname` at `def_line`, with the chain of classes or functions that hold it."""
    parts = qualname.split(".")
    scope: list[ast.stmt] = tree.body
    owners: list[ast.AST] = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        found: ast.AST | None = None
        for child in _defs(scope):
            if getattr(child, "name", None) != part:
                continue
            if last and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and child.lineno == def_line:
                return owners, child
            if not last:
                found = child
        if found is None:
            return owners, None
        owners.append(found)
        scope = found.body  # type: ignore[attr-defined]
    return owners, None


def _defs(body: list[ast.stmt]) -> list[ast.stmt]:
    """Definitions of a body, including those under `if`/`try` (version switches, optional imports)."""
    out: list[ast.stmt] = []
    for stmt in body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.append(stmt)
        elif isinstance(stmt, (ast.If, ast.Try)):
            out += _defs([*stmt.body, *stmt.orelse, *getattr(stmt, "finalbody", [])])
    return out


def _first_param(args: ast.arguments) -> str | None:
    positional = [*args.posonlyargs, *args.args]
    return positional[0].arg if positional else None


def _params(args: ast.arguments, skip_first: bool) -> list[Param]:
    posonly, regular = list(args.posonlyargs), list(args.args)
    defaults = len(args.defaults)
    everything = posonly + regular
    with_default = {a.arg for a in everything[len(everything) - defaults :]} if defaults else set()
    out = [Param(a.arg, "posonly", a.arg in with_default) for a in posonly]
    out += [Param(a.arg, "pos", a.arg in with_default) for a in regular]
    if skip_first and out:
        out = out[1:]
    if args.vararg:
        out.append(Param(args.vararg.arg, "star", True))
    out += [Param(a.arg, "kw", d is not None) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)]
    if args.kwarg:
        out.append(Param(args.kwarg.arg, "starstar", True))
    return out


def _from_call_site(
    caller: CallerSite, name: str, params: list[Param], classes: ClassResolver
) -> tuple[dict[str, Any] | None, list[RebuiltInput]]:
    """Bind the caller's call expression to the callee's signature; None when it cannot be used."""
    call = None
    for text in (caller.statement, caller.context_line):
        if isinstance(text, str) and (call := find_call(text, name)) is not None:
            break
    if call is None:
        return None, []
    scope: dict[str, Any] = {}
    unusable: dict[str, str] = {}
    for var, raw in caller.variables.items():
        try:
            scope[var] = rebuild(raw, var, classes)
        except Unusable as why:
            unusable[var] = str(why)
    try:
        values = _bind(call, params, scope, unusable)
    except (Unusable, TypeError, ValueError, ArithmeticError):  # hostile or odd code: use the locals instead
        return None, []
    imports: set[str] = set()
    by_name = {p.name: p for p in params}
    return values, [
        RebuiltInput(parameter=n, value=render(v, imports), source="call-site")
        for n, v in values.items()
        if n in by_name
    ]


def _bind(call: ast.Call, params: list[Param], scope: dict[str, Any], unusable: dict[str, str]) -> dict[str, Any]:
    positional: list[Any] = []
    for arg in call.args:
        if isinstance(arg, ast.Starred):
            spread = evaluate(arg.value, scope, unusable)
            if not isinstance(spread, (list, tuple)):
                raise TypeError("*args of a non-sequence")
            positional += list(spread)
        else:
            positional.append(evaluate(arg, scope, unusable))
    keywords: dict[str, Any] = {}
    for kw in call.keywords:
        if kw.arg is None:
            spread = evaluate(kw.value, scope, unusable)
            if not isinstance(spread, dict) or not all(isinstance(k, str) for k in spread):
                raise TypeError("**kwargs of a non-mapping")
            keywords.update(spread)
        else:
            keywords[kw.arg] = evaluate(kw.value, scope, unusable)
    values: dict[str, Any] = {}
    slots = [p for p in params if p.kind in ("posonly", "pos")]
    star = next((p for p in params if p.kind == "star"), None)
    starstar = next((p for p in params if p.kind == "starstar"), None)
    for p, value in zip(slots, positional, strict=False):
        values[p.name] = value
    extra = positional[len(slots) :]
    if extra:
        if star is None:
            raise TypeError("too many positional arguments")
        values[star.name] = tuple(extra)
    rest: dict[str, Any] = {}
    named = {p.name: p for p in params if p.kind in ("pos", "kw")}
    for key, value in keywords.items():
        if key in named and key not in values:
            values[key] = value
        elif starstar is not None:
            rest[key] = value
        else:
            raise TypeError(f"unexpected keyword {key}")
    if rest and starstar is not None:
        values[starstar.name] = rest
    missing = [p.name for p in params if p.name not in values and not p.has_default]
    if missing:
        raise TypeError(f"missing {missing}")
    return values


def find_call(text: str, name: str) -> ast.Call | None:
    """The call of `name` (a function or a method) in a statement or a code line, innermost first."""
    stripped = text.strip()
    for candidate in (
        stripped,
        textwrap.dedent(text),
        stripped.removeprefix("return ").removeprefix("yield ").removeprefix("await "),
        f"({stripped.rstrip(':')})",
        stripped.rstrip(":") + ": pass" if stripped.endswith(":") else stripped,
    ):
        try:
            tree = ast.parse(candidate)
        except SyntaxError:
            continue
        calls = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and (
                (isinstance(node.func, ast.Name) and node.func.id == name)
                or (isinstance(node.func, ast.Attribute) and node.func.attr == name)
            )
        ]
        if calls:
            return calls[-1]
    return None


def _from_locals(
    callee_vars: dict[str, Any], params: list[Param], classes: ClassResolver
) -> tuple[dict[str, Any], list[RebuiltInput]]:
    values: dict[str, Any] = {}
    inputs: list[RebuiltInput] = []
    blocked: list[str] = []
    imports: set[str] = set()
    for p in params:
        if p.name not in callee_vars:
            if not p.has_default:
                blocked.append(f"{p.name} was not recorded")
            continue
        try:
            value = rebuild(callee_vars[p.name], p.name, classes)
        except Unusable as why:
            blocked.append(str(why))
            continue
        if p.kind == "star":
            value = tuple(value) if isinstance(value, (list, tuple)) else value
            if not isinstance(value, tuple):
                blocked.append(f"*{p.name} is not a sequence")
                continue
        if p.kind == "starstar" and not (isinstance(value, dict) and all(isinstance(k, str) for k in value)):
            blocked.append(f"**{p.name} is not a mapping of names")
            continue
        values[p.name] = value
        inputs.append(RebuiltInput(parameter=p.name, value=render(value, imports), source="callee-locals"))
    if blocked:
        raise Unusable("; ".join(blocked))
    return values, inputs


def statement_at(source: str, lineno: int) -> str | None:
    """The source of the innermost simple statement (or compound header) holding `lineno`."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    best: ast.stmt | None = None
    for node in ast.walk(tree):
        if isinstance(node, ast.stmt) and node.lineno <= lineno <= (node.end_lineno or node.lineno):
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and isinstance(body[0], ast.stmt) and lineno >= body[0].lineno:
                continue  # the line is in the body: a child statement holds it
            if best is None or (node.end_lineno or 0) - node.lineno <= (best.end_lineno or 0) - best.lineno:
                best = node
    if best is None:
        return None
    lines = source.splitlines()[best.lineno - 1 : (best.end_lineno or best.lineno)]
    if isinstance(getattr(best, "body", None), list) and best.body:  # type: ignore[attr-defined]
        lines = source.splitlines()[best.lineno - 1 : best.body[0].lineno - 1]  # type: ignore[attr-defined]
    return "\n".join(lines)


def invocation(callee: str, params: list[tuple[str, str]], *, is_async: bool = False) -> str:
    """`f(a, *args, b=b, **kwargs)`: positional-only by position, the rest by name; a coroutine function is run to
    completion on a fresh event loop (`asyncio.run(f(...))`), as a test of an async handler would."""
    star = any(kind == "star" for _, kind in params)
    parts = []
    for name, kind in params:
        if kind == "posonly" or (kind == "pos" and star):
            parts.append(name)
        elif kind == "star":
            parts.append(f"*{name}")
        elif kind == "starstar":
            parts.append(f"**{name}")
        else:
            parts.append(f"{name}={name}")
    call = f"{callee}({', '.join(parts)})"
    return f"asyncio.run({call})" if is_async else call
