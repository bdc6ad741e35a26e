"""Production values back into Python values, only where they round-trip exactly.

sentry-sdk sends a frame's locals with containers as JSON and every leaf as its `repr`.
A leaf is accepted when it parses as a literal or as a call to one of a few well-known
constructors (datetime, date, time, timedelta, Decimal, UUID, Path). With a resolver of the
service's own classes, an enum member's repr (`<Mode.FAST: 1>`) and a constructor-shaped repr
of a class the repository defines (`Config(depth=2, name='x')`, as dataclasses print) and a
reference to such a class (`<class 'pkg.mod.Config'>`) become `RepoExpr`s: the source that
builds them in the test, never evaluated here. Refused, with the reason: scrubbed values
(`[Filtered]`), reprs of arbitrary objects, values the SDK may have truncated (a long string
ending in "...", a container at the SDK's 10-item limit).

`evaluate` computes a call site's argument expressions over reconstructed locals with a
small evaluator: literals, names, containers, subscripts, attribute access on data and
unary minus. Nothing that calls arbitrary code.
"""

from __future__ import annotations

import ast
import datetime
import decimal
import pathlib
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_FILTERED = "[Filtered]"
_SDK_BREADTH = 10
_SAFE_CALLS: dict[str, Any] = {
    "datetime.datetime": datetime.datetime,
    "datetime.date": datetime.date,
    "datetime.time": datetime.time,
    "datetime.timedelta": datetime.timedelta,
    "datetime.timezone.utc": datetime.UTC,
    "datetime.timezone": datetime.timezone,
    "Decimal": decimal.Decimal,
    "decimal.Decimal": decimal.Decimal,
    "UUID": uuid.UUID,
    "uuid.UUID": uuid.UUID,
    "PosixPath": pathlib.PurePosixPath,
    "PurePosixPath": pathlib.PurePosixPath,
    "Path": pathlib.PurePosixPath,
    "set": set,
    "frozenset": frozenset,
    "re.compile": re.compile,
    "re.IGNORECASE": re.IGNORECASE,
    "re.MULTILINE": re.MULTILINE,
    "re.DOTALL": re.DOTALL,
    "re.VERBOSE": re.VERBOSE,
    "re.ASCII": re.ASCII,
}


_CLASS_REPR = re.compile(r"<class '([A-Za-z_]\w{0,99}(?:\.[A-Za-z_]\w{0,99}){0,20})'>")
_ENUM_REPR = re.compile(r"<([A-Za-z_]\w{0,99})\.([A-Za-z_]\w{0,99}(?:\|[A-Za-z_]\w{0,99}){0,20}): [^<>]{0,200}>")

# A class name -> the module of the service that defines it (None: not the service's, or ambiguous).
ClassResolver = Callable[[str], str | None]


class Unusable(Exception):
    """A value that cannot be rebuilt exactly; the message says why."""


@dataclass(frozen=True)
class RepoExpr:
    """A value of one of the service's own classes, as the source that builds it (never evaluated by prodloop)."""

    code: str
    imports: frozenset[str]


def rebuild(value: Any, path: str, classes: ClassResolver | None = None, *, captured: bool = False) -> Any:
    """The Python value an SDK-serialized local stood for. `captured`: inside prodloop_capture's structure,
    whose containers carry their own truncation marker (the SDK's 10-item limit does not apply)."""
    if isinstance(value, dict) and set(value) == {"__class__", "__state__"}:
        return _captured_object(value, path, classes)
    if captured and isinstance(value, (dict, list)) and (_TRUNCATED in value):
        raise Unusable(f"{path} was cut by the capture helper's size limits")
    if captured and isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _CAPTURED_KINDS:
        kind, items = next(iter(value.items()))
        if not isinstance(items, list):
            raise Unusable(f"{path} has a malformed captured {kind.strip('_')}")
        try:
            return _CAPTURED_KINDS[kind](rebuild(items, path, classes, captured=True))
        except TypeError:  # a set of lists: not something a set could have held
            raise Unusable(f"{path} has a malformed captured {kind.strip('_')}") from None
    if isinstance(value, dict) and captured:
        return {_key(k): rebuild(v, f"{path}[{k!r}]", classes, captured=True) for k, v in value.items()}
    if isinstance(value, list) and captured:
        return [rebuild(v, f"{path}[{i}]", classes, captured=True) for i, v in enumerate(value)]
    if isinstance(value, dict):
        if len(value) >= _SDK_BREADTH:
            raise Unusable(f"{path} has {len(value)} keys, the SDK's limit: it may have been truncated")
        return {_key(k): rebuild(v, f"{path}[{k!r}]", classes) for k, v in value.items()}
    if isinstance(value, list):
        if len(value) >= _SDK_BREADTH:
            raise Unusable(f"{path} has {len(value)} items, the SDK's limit: it may have been truncated")
        return [rebuild(v, f"{path}[{i}]", classes) for i, v in enumerate(value)]
    if isinstance(value, bool) or value is None or isinstance(value, (int, float)):
        return value
    if not isinstance(value, str):
        raise Unusable(f"{path} has an unexpected shape")
    if _FILTERED in value:
        raise Unusable(f"{path} was scrubbed ([Filtered])")
    if len(value) >= 1000 and value.endswith("..."):
        raise Unusable(f"{path} was truncated by the SDK")
    text = value.strip()
    enum = _ENUM_REPR.fullmatch(text)
    if enum is not None and classes is not None:
        module = classes(enum.group(1))
        if module is not None:
            members = " | ".join(f"{enum.group(1)}.{m}" for m in enum.group(2).split("|"))
            return RepoExpr(members, frozenset({f"from {module} import {enum.group(1)}"}))
    reference = _CLASS_REPR.fullmatch(text)
    if reference is not None and classes is not None:
        # A class passed as a value (`main_task_cls=Report`, `response_model=Order`): the repository's own class,
        # imported by the test; `service_class` refuses anything else (and attribute walks in the name).
        module, top, expression = service_class(reference.group(1), path, classes)
        return RepoExpr(expression, frozenset({f"from {module} import {top}"}))
    if classes is not None and enum is None:
        # Enum members inside a larger repr (`Mode(versions={<Feature.X: 1>})`) read as `Feature.X`.
        text = _ENUM_REPR.sub(lambda m: " | ".join(f"{m.group(1)}.{n}" for n in m.group(2).split("|")), text)
    try:
        return _literal(ast.parse(text, mode="eval").body, classes)
    except (SyntaxError, ValueError, TypeError, decimal.InvalidOperation, RecursionError) as exc:
        raise Unusable(f"{path} is {value[:60]!r}, which does not round-trip ({type(exc).__name__})") from None


_TRUNCATED = "<truncated>"
_CAPTURED_KINDS: dict[str, Callable[[list[Any]], Any]] = {
    "__tuple__": tuple,
    "__set__": set,
    "__frozenset__": frozenset,
}
_CLASS_PATH = re.compile(r"[A-Za-z_][\w.]{0,200}")
_NAME = re.compile(r"[A-Za-z_]\w{0,99}")


def service_class(dotted: str, path: str, classes: ClassResolver | None) -> tuple[str, str, str]:
    """(module, top-level class, class expression) of `pkg.mod.Outer.Inner`: the longest module prefix the
    repository defines the class in."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module, top = ".".join(parts[:cut]), parts[cut]
        if classes is not None and classes(f"{module}:{top}") == module:
            nested = parts[cut + 1 :]
            if any(not _NAME.fullmatch(n) or n.startswith("_") for n in nested):
                # production data: `Cls.__init__.__globals__` is an attribute walk, not a nested class
                raise Unusable(f"{path} names {'.'.join(nested)[:60]} inside {top}, which is not a nested class")
            # `scheduler` of `luigi.scheduler`: the class, not the module's name again
            return module, top, ".".join(parts[cut:])
    raise Unusable(f"{path} is a {dotted[:120]}, not a class of the service")


def _captured_object(value: dict[str, Any], path: str, classes: ClassResolver | None) -> RepoExpr:
    """`{"__class__": "pkg.mod.Cls", "__state__": {...}}` from prodloop_capture: the service's own class, rebuilt
    without running its constructor (its recorded attributes set on a new instance)."""
    dotted, state = value["__class__"], value["__state__"]
    if not isinstance(dotted, str) or not _CLASS_PATH.fullmatch(dotted) or not isinstance(state, dict):
        raise Unusable(f"{path} has a malformed captured object")
    module, top, expression = service_class(dotted, path, classes)
    imports = {f"from {module} import {top}"}
    fields = {}
    for key, item in state.items():
        if not isinstance(key, str) or not _CLASS_PATH.fullmatch(key) or "." in key:
            raise Unusable(f"{path} has an attribute name that is not a Python name")
        fields[key] = rebuild(item, f"{path}.{key}", classes, captured=True)
    body = ", ".join(f"{k!r}: {render(v, imports)}" for k, v in fields.items())
    imports.add(RESTORE_MARK)
    return RepoExpr(f"{_RESTORE}({expression}, {{{body}}})", frozenset(imports))


# The `__init__` of a service class, parsed at the deployed commit: (module, class expression) -> def, or None.
InitSource = Callable[[str, str], ast.FunctionDef | None]


def constructed(value: Any, path: str, classes: ClassResolver, init_of: InitSource) -> RepoExpr:
    """A captured object rebuilt the way real code builds it: its class called with the recorded attributes that
    `__init__` stores straight from a parameter (`self.id = worker_id`). A parameter whose recorded value equals its
    default is left out, as production most likely left it out: the test then runs the constructor as it is at
    the commit under test, fix included. Refused when a required parameter has no such attribute."""
    if not (isinstance(value, dict) and set(value) == {"__class__", "__state__"}):
        raise Unusable(f"{path} was not captured as an object")
    _captured_object(value, path, classes)  # validates the class and every attribute
    state = value["__state__"]
    module, top, expression = service_class(value["__class__"], path, classes)
    init = init_of(module, expression)
    if init is None:
        raise Unusable(f"{path}: {expression} has no __init__ of its own to call")
    args = init.args
    if args.vararg or args.kwarg or args.posonlyargs:
        raise Unusable(f"{path}: {expression}.__init__ takes *args, **kwargs or positional-only parameters")
    stored = {
        stmt.value.id: stmt.targets[0].attr
        for stmt in init.body
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.value, ast.Name)
        and isinstance(stmt.targets[0], ast.Attribute) and isinstance(stmt.targets[0].value, ast.Name)
        and stmt.targets[0].value.id == (args.args[0].arg if args.args else "")
    }  # fmt: skip
    params = [*args.args[1:], *args.kwonlyargs]
    defaults = dict(zip([a.arg for a in args.args][len(args.args) - len(args.defaults) :], args.defaults, strict=True))
    defaults |= {a.arg: d for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None}
    imports = {f"from {module} import {top}"}
    given = []
    for param in params:
        attr = stored.get(param.arg)
        if attr is None or attr not in state:
            if param.arg in defaults:
                continue
            raise Unusable(f"{path}: {expression}'s parameter {param.arg} is not stored as a recorded attribute")
        recorded = rebuild(state[attr], f"{path}.{attr}", classes, captured=True)
        if param.arg in defaults:
            try:
                if ast.literal_eval(defaults[param.arg]) == recorded and not isinstance(recorded, RepoExpr):
                    continue
            except (ValueError, TypeError, SyntaxError):
                pass  # not a literal default: pass the recorded value
        given.append(f"{param.arg}={render(recorded, imports)}")
    return RepoExpr(f"{expression}({', '.join(given)})", frozenset(imports))


# The helper a test uses to rebuild a captured object; rendered into the test by `regression_test`.
_RESTORE = "_restored"
RESTORE_MARK = "# prodloop: _restored"
RESTORE_HELPER = (
    "def _restored(cls, state):\n"
    '    """An instance of `cls` with the attributes production recorded (its constructor is not run)."""\n'
    "    obj = cls.__new__(cls)\n"
    "    for name, value in state.items():\n"
    "        object.__setattr__(obj, name, value)\n"
    "    return obj\n"
)


def _key(key: str) -> Any:
    """Dict keys arrive as strings: the repr of a string key, or a bare number."""
    try:
        parsed = ast.literal_eval(key)
    except (ValueError, SyntaxError):
        return key
    return parsed if isinstance(parsed, (str, int, float, bool)) or parsed is None else key


def _literal(node: ast.expr, classes: ClassResolver | None = None) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = [_literal(e, classes) for e in node.elts]
        return {ast.List: list, ast.Tuple: tuple, ast.Set: set}[type(node)](items)
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise ValueError("dict unpacking")
        return {
            _literal(k, classes): _literal(v, classes)
            for k, v in zip(node.keys, node.values, strict=True)
            if k is not None
        }
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _literal(node.operand, classes)
        if not isinstance(operand, (int, float, decimal.Decimal)):
            raise ValueError("sign of a non-number")
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.Call):
        name = ast.unparse(node.func)
        if name not in _SAFE_CALLS:
            return _repo_call(node, classes)
        args = [_literal(a, classes) for a in node.args]
        kwargs = {k.arg: _literal(k.value, classes) for k in node.keywords if k.arg}
        if any(isinstance(v, RepoExpr) for v in [*args, *kwargs.values()]):
            raise ValueError(f"a service object inside {name}()")
        return _SAFE_CALLS[name](*args, **kwargs)
    if isinstance(node, ast.Attribute) and ast.unparse(node) in _SAFE_CALLS:
        return _SAFE_CALLS[ast.unparse(node)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        left, right = _literal(node.left, classes), _literal(node.right, classes)
        if isinstance(left, re.RegexFlag) and isinstance(right, re.RegexFlag):
            return left | right
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and not node.attr.startswith("_")
        and classes is not None
    ):
        module = classes(node.value.id)
        if module is not None:
            return RepoExpr(ast.unparse(node), frozenset({f"from {module} import {node.value.id}"}))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and classes is not None:
        left, right = _literal(node.left, classes), _literal(node.right, classes)
        if isinstance(left, RepoExpr) and isinstance(right, RepoExpr):
            return RepoExpr(f"{left.code} | {right.code}", left.imports | right.imports)
    raise ValueError(type(node).__name__)


def _repo_call(node: ast.Call, classes: ClassResolver | None) -> RepoExpr:
    """`Config(depth=2, name='x')` where `Config` is a class the service defines and every argument is data."""
    if classes is None or not isinstance(node.func, ast.Name):
        raise ValueError(f"call to {ast.unparse(node.func)[:60]}")
    module = classes(node.func.id)
    unpacked = any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords)
    if module is None or unpacked:
        raise ValueError(f"call to {node.func.id}, not a class of the service")
    imports = {f"from {module} import {node.func.id}"}
    parts = [render(_literal(a, classes), imports) for a in node.args]
    parts += [f"{k.arg}={render(_literal(k.value, classes), imports)}" for k in node.keywords]
    return RepoExpr(f"{node.func.id}({', '.join(parts)})", frozenset(imports))


def evaluate(node: ast.expr, scope: Mapping[str, Any], unusable: Mapping[str, str]) -> Any:
    """An argument expression of a call site, over the caller's rebuilt locals."""
    if isinstance(node, ast.Name):
        if node.id in scope:
            return scope[node.id]
        raise Unusable(unusable.get(node.id, f"{node.id} is not among the caller's recorded locals"))
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = [evaluate(e, scope, unusable) for e in node.elts]
        return {ast.List: list, ast.Tuple: tuple, ast.Set: set}[type(node)](items)
    if isinstance(node, ast.Dict):
        out = {}
        for k, v in zip(node.keys, node.values, strict=True):
            if k is None:
                out.update(evaluate(v, scope, unusable))
            else:
                out[evaluate(k, scope, unusable)] = evaluate(v, scope, unusable)
        return out
    if isinstance(node, ast.Subscript):
        container = evaluate(node.value, scope, unusable)
        index = evaluate(node.slice, scope, unusable)
        try:
            return container[index]
        except (KeyError, IndexError, TypeError) as exc:
            raise Unusable(
                f"{ast.unparse(node)} cannot be evaluated on the recorded values ({type(exc).__name__})"
            ) from None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = evaluate(node.operand, scope, unusable)
        if isinstance(value, (int, float, decimal.Decimal)):
            return -value
    raise Unusable(f"{ast.unparse(node)[:60]} is not an expression prodloop evaluates (only data access)")


def render(value: Any, imports: set[str]) -> str:
    """Python source for a rebuilt value, noting the imports it needs."""
    if isinstance(value, RepoExpr):
        imports.update(value.imports)
        return value.code
    if isinstance(value, datetime.datetime | datetime.date | datetime.time | datetime.timedelta):
        imports.add("import datetime")
        return repr(value)
    if isinstance(value, decimal.Decimal):
        imports.add("from decimal import Decimal")
    elif isinstance(value, uuid.UUID):
        imports.add("from uuid import UUID")
    elif isinstance(value, re.Pattern):
        imports.add("import re")
        flags = value.flags & ~re.UNICODE if isinstance(value.pattern, str) else value.flags
        return f"re.compile({value.pattern!r}, {int(flags)})" if flags else f"re.compile({value.pattern!r})"
    elif isinstance(value, re.RegexFlag):
        imports.add("import re")
        return str(int(value))
    elif isinstance(value, pathlib.PurePath):
        imports.add("from pathlib import PurePosixPath")
        return f"PurePosixPath({str(value)!r})"
    elif isinstance(value, dict):
        return "{" + ", ".join(f"{render(k, imports)}: {render(v, imports)}" for k, v in value.items()) + "}"
    elif isinstance(value, list):
        return "[" + ", ".join(render(v, imports) for v in value) + "]"
    elif isinstance(value, tuple):
        inner = ", ".join(render(v, imports) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    elif isinstance(value, (set, frozenset)):
        inner = ", ".join(render(v, imports) for v in sorted(value, key=repr))
        return f"{type(value).__name__}([{inner}])"
    return repr(value)
