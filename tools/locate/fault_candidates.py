"""Where the fault may be when it is not where it crashed: ranked candidate locations, each with its reason.

The innermost in-repository frame is where the exception surfaced, not always where the bug is.
From what the event and the code at the deployed commit show, without running anything:
- data flow of the failing value: a name on the crash line that is a parameter of the crashing
  function came from its caller; the caller's argument expression may again be a parameter, and
  so on outward — each caller that handed the value on is a candidate, the one that made it first;
- `'X' object has no attribute 'y'`: the constructor of the repository's class `X`, where `y`
  should have been set;
- `'NoneType' object ...`: the function that returned `None` — a call on the crash line whose
  callee is in the repository;
- an exception built from a caught one (raised in an `except` handler, or created there and raised
  later, `raise exc from None`): the calls of the `try` block it replaced, and what they call first;
  raised from a `for` loop's `else` after every attempt failed: the function that chose the attempts;
- a lookup error in one half of a round-trip pair (`from_str_params` / `to_str_params`, `load` /
  `dump`, `decode` / `encode`, ...): the other half, which produced what this half could not read;
- functions on the path that suspect commits since the previous release touched;
- then the rest of the path from the crash outward.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from prodloop.tools.engine.functions import FunctionIndex

_NO_ATTRIBUTE = re.compile(r"'(\w+)' object has no attribute '(\w+)'")


class FaultCandidate(BaseModel):
    path: str
    qualname: str
    line: int | None = Field(description="the line to start reading at, when known")
    score: float = Field(description="0..1, higher first")
    reasons: list[str]


class _Frame:
    """What ranking needs of one mapped frame (kept apart from CodePath's models to avoid a cycle)."""

    def __init__(self, path: str, qualname: str, line: int | None, start: int, end: int, index: FunctionIndex):
        self.path, self.qualname, self.line, self.start, self.end, self.index = path, qualname, line, start, end, index

    def text(self, line: int) -> str:
        lines = self.index.lines
        return lines[line - 1].strip() if 0 < line <= len(lines) else ""


def rank_faults(
    frames: list[_Frame],
    exception_type: str | None,
    exception_value: str | None,
    suspects: set[str],
    index_of: Callable[[str], FunctionIndex],
    holding: Callable[[str], tuple[str, ...]],
    limit: int = 5,
    causes: list[_Frame] | None = None,
) -> list[FaultCandidate]:
    """`frames` entry point first, crash last; `suspects` holds `path::qualname` touched by suspect commits."""
    found: dict[tuple[str, str], FaultCandidate] = {}

    def add(path: str, qualname: str, line: int | None, score: float, reason: str) -> None:
        key = (path, qualname)
        if key in found:
            found[key].score = max(found[key].score, score)
            if reason not in found[key].reasons:
                found[key].reasons.append(reason)
        else:
            found[key] = FaultCandidate(path=path, qualname=qualname, line=line, score=score, reasons=[reason])

    if not frames:
        return []
    crash = frames[-1]
    add(crash.path, crash.qualname, crash.line, 0.8, "the exception was raised here")
    for hop, (frame, name) in enumerate(_value_flow(frames), start=1):
        add(frame.path, frame.qualname, frame.line, 0.78 - 0.04 * hop, f"passed the failing value `{name}` inward")
    message = exception_value or ""
    missing = _NO_ATTRIBUTE.search(message) if exception_type == "AttributeError" else None
    if missing and missing.group(1) != "NoneType":
        for path, qualname, line in _constructors(missing.group(1), index_of, holding):
            add(path, qualname, line, 0.85, f"`{missing.group(2)}` is never set here on `{missing.group(1)}`")
    if "NoneType" in message and crash.line is not None:
        for name in _called_names(crash.text(crash.line)):
            for frame in frames:
                if frame.qualname.rsplit(".", 1)[-1] == name:
                    add(frame.path, frame.qualname, frame.line, 0.82, f"`{name}()` may have returned None")
            for path, qualname, line in _functions_named(name, crash.path, index_of):
                add(path, qualname, line, 0.8, f"`{name}()` on the crash line may have returned None")
    for cause in causes or []:
        add(cause.path, cause.qualname, cause.line, 0.76, "the exception it was raised from started here")
    # A lookup or state error on a line that reads `self.x`: the methods that change `x` left it wrong.
    state_error = exception_type in ("KeyError", "IndexError", "AttributeError", "TypeError", "AssertionError")
    for path, qualname, line, attr in _attribute_writers(crash):
        add(path, qualname, line, 0.79 if state_error else 0.7, f"changes `self.{attr}`, which the crash line reads")
    for path, qualname, line in _exhausted_choices(crash, index_of, holding):
        add(
            path, qualname, line, 0.77, "chose what the loop tried: every attempt failed, then the loop's `else` raised"
        )
    for depth, (path, qualname, line, via) in enumerate(_replaced_calls(crash, index_of, holding)):
        reason = (
            "called in the `try` block whose exception the raised one replaced"
            if not via
            else f"called first by `{via}`, inside the `try` block whose exception the raised one replaced"
        )
        add(path, qualname, line, 0.75 - 0.005 * depth, reason)
    if exception_type in _LOOKUP_ERRORS:
        for path, qualname, line in _inverses(crash):
            add(path, qualname, line, 0.79, "the other half of a round trip: it produced what the crash could not read")
    for i, (path, qualname, line) in enumerate(_callees_before(crash)):
        add(path, qualname, line, 0.6 - 0.01 * i, "called by the crashing function before it failed; what it "
            "returned or changed is that function's input")  # fmt: skip
    for distance, frame in enumerate(reversed(frames)):
        add(frame.path, frame.qualname, frame.line, max(0.1, 0.6 - 0.08 * distance), "on the path to the crash")
    for candidate in found.values():
        if f"{candidate.path}::{candidate.qualname}" in suspects:
            candidate.score = min(1.0, candidate.score + 0.15)
            candidate.reasons.append("changed by a suspect commit since the previous release")
    ranked = sorted(found.values(), key=lambda c: -c.score)
    for c in ranked:
        c.score = round(c.score, 3)
    return ranked[:limit]


_LOOKUP_ERRORS = frozenset({"KeyError", "IndexError", "ValueError", "TypeError", "AttributeError", "LookupError"})
# Round-trip pairs by word: a failure reading what one half wrote points at the other half.
_INVERSE_WORDS = {
    "load": "dump", "loads": "dumps", "decode": "encode", "deserialize": "serialize", "unserialize": "serialize",
    "unpack": "pack", "parse": "format", "read": "write", "decompress": "compress", "unquote": "quote",
    "unescape": "escape", "unpickle": "pickle", "from": "to",
}  # fmt: skip
_INVERSE_WORDS.update({v: k for k, v in list(_INVERSE_WORDS.items()) if v not in _INVERSE_WORDS})


def _inverses(crash: _Frame) -> list[tuple[str, str, int]]:
    """Functions beside the crashing one (same class, or module level) whose name is its round-trip inverse."""
    owner, _, name = crash.qualname.rpartition(".")
    words = name.split("_")
    wanted = {
        "_".join(_INVERSE_WORDS.get(w, w) if i == j else w for i, w in enumerate(words)) for j in range(len(words))
    }
    wanted.discard(name)
    return [
        (crash.path, d.qualname, d.def_line)
        for d in crash.index.defs
        if d.qualname.rpartition(".")[0] == owner and d.qualname.rpartition(".")[2] in wanted
    ][:2]


def _replaced_calls(
    crash: _Frame, index_of: Callable[[str], FunctionIndex], holding: Callable[[str], tuple[str, ...]]
) -> list[tuple[str, str, int, str]]:
    """When the raised exception was built from a caught one, the repository functions the `try` block called
    (and, one level down, what each of those calls first): where the replaced exception came from."""
    defs = [d for d in crash.index.named(crash.qualname) if d.start == crash.start]
    if crash.line is None or not defs:
        return []
    function = defs[0].node
    raise_node = next((n for n in ast.walk(function) if isinstance(n, ast.Raise) and n.lineno == crash.line), None)
    if raise_node is None:
        return []
    made = raise_node.exc.id if isinstance(raise_node.exc, ast.Name) else None
    tries = []
    for node in ast.walk(function):
        if not isinstance(node, ast.Try):
            continue
        for handler in node.handlers:
            inside = handler.lineno <= crash.line <= (handler.end_lineno or handler.lineno)
            builds = made is not None and any(
                isinstance(a, ast.Assign) and any(isinstance(t, ast.Name) and t.id == made for t in a.targets)
                for a in ast.walk(handler)
            )
            if inside or builds:
                tries.append(node)
                break
    out: list[tuple[str, str, int, str]] = []
    seen = {(crash.path, crash.qualname)}
    owner = crash.qualname.rsplit(".", 1)[0] if "." in crash.qualname else None

    def first(call: ast.Call, near: str, in_class: str | None) -> tuple[str, str, int, Any] | None:
        found = _resolve(call, near, in_class, index_of, holding)
        return found[0] if found and (found[0][0], found[0][1]) not in seen else None

    for attempt in tries:
        for call in _calls_in_order(attempt.body):
            hit = first(call, crash.path, owner)
            if hit is None:
                continue
            path, qualname, line, node = hit
            seen.add((path, qualname))
            out.append((path, qualname, line, ""))
            for inner in _calls_in_order(node.body)[:3]:
                deeper = first(inner, path, qualname.rsplit(".", 1)[0] if "." in qualname else None)
                if deeper is not None:
                    seen.add((deeper[0], deeper[1]))
                    out.append((deeper[0], deeper[1], deeper[2], qualname))
            if len(out) >= 4:
                return out[:4]
    return out


def _exhausted_choices(
    crash: _Frame, index_of: Callable[[str], FunctionIndex], holding: Callable[[str], tuple[str, ...]]
) -> list[tuple[str, str, int]]:
    """`for x in choose(...): try ... else: raise`: the function that chose the attempts, when all of them failed."""
    defs = [d for d in crash.index.named(crash.qualname) if d.start == crash.start]
    if crash.line is None or not defs:
        return []
    owner = crash.qualname.rsplit(".", 1)[0] if "." in crash.qualname else None
    out = []
    for loop in ast.walk(defs[0].node):
        if not isinstance(loop, (ast.For, ast.AsyncFor)) or not loop.orelse:
            continue
        first, last = loop.orelse[0].lineno, loop.orelse[-1].end_lineno or loop.orelse[-1].lineno
        if first <= crash.line <= last and isinstance(loop.iter, ast.Call):
            out += [(path, qualname, line) for path, qualname, line, _ in _resolve(loop.iter, crash.path, owner,
                                                                                  index_of, holding)[:1]]  # fmt: skip
    return out


def _calls_in_order(body: list[ast.stmt]) -> list[ast.Call]:
    calls = [n for stmt in body for n in ast.walk(stmt) if isinstance(n, ast.Call)]
    return sorted(calls, key=lambda c: (c.lineno, c.col_offset))


def _resolve(
    call: ast.Call,
    near: str,
    owner: str | None,
    index_of: Callable[[str], FunctionIndex],
    holding: Callable[[str], tuple[str, ...]],
) -> list[tuple[str, str, int, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Repository functions a call may reach: a function of the same file, a method of the same class through
    `self.`, or a function or method of that name found by `git grep` (test files left out)."""
    func = call.func
    if isinstance(func, ast.Name):
        name, qualified = func.id, None
    elif isinstance(func, ast.Attribute):
        name = func.attr
        qualified = f"{owner}.{func.attr}" if owner and _root_name(func.value) == "self" else None
    else:
        return []
    local = [
        d
        for d in index_of(near).defs
        if d.qualname == qualified or (qualified is None and d.qualname == name and isinstance(func, ast.Name))
    ]
    if local:
        return [(near, d.qualname, d.def_line, d.node) for d in local]
    out = []
    for path in holding(f"def {name}(")[:3]:
        if "test" in path.split("/")[0]:
            continue
        out += [
            (path, d.qualname, d.def_line, d.node) for d in index_of(path).defs if d.qualname.rsplit(".", 1)[-1] == name
        ]
    return out


def _attribute_writers(crash: _Frame) -> list[tuple[str, str, int, str]]:
    """Other methods of the crashing method's class that assign an attribute of `self` the crash line reads."""
    if crash.line is None or "." not in crash.qualname:
        return []
    tree = _parse(crash.text(crash.line))
    read = (
        {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and _root_name(n.value) == "self"}
        if tree
        else set()
    )
    if not read:
        return []
    owner = crash.qualname.rsplit(".", 1)[0]
    out = []
    for d in crash.index.defs:
        if d.qualname.rsplit(".", 1)[0] != owner or d.qualname == crash.qualname:
            continue
        for node in ast.walk(d.node):
            targets = (
                node.targets
                if isinstance(node, ast.Assign)
                else [node.target]
                if isinstance(node, (ast.AugAssign, ast.AnnAssign))
                else []
            )
            hit = next(
                (
                    t.attr
                    for t in targets
                    if isinstance(t, ast.Attribute) and _root_name(t.value) == "self" and t.attr in read
                ),
                None,
            )
            if hit:
                out.append((crash.path, d.qualname, getattr(node, "lineno", d.def_line), hit))
                break
    return out[:4]


def _callees_before(crash: _Frame) -> list[tuple[str, str, int]]:
    """Functions of the crashing function's file (module-level, or methods of its class via `self.`) that it
    called on lines before the crash line."""
    if crash.line is None:
        return []
    index = crash.index
    defs = [d for d in index.named(crash.qualname) if d.start == crash.start]
    if not defs:
        return []
    owner = crash.qualname.rsplit(".", 1)[0] if "." in crash.qualname else None
    by_name = {d.qualname: d for d in index.defs}
    out: list[tuple[str, str, int]] = []
    calls = sorted(
        (n for n in ast.walk(defs[0].node) if isinstance(n, ast.Call) and n.lineno < crash.line),
        key=lambda n: -n.lineno,
    )
    for call in calls:
        name = None
        if isinstance(call.func, ast.Name):
            name = call.func.id
        elif isinstance(call.func, ast.Attribute) and _root_name(call.func.value) == "self" and owner:
            name = f"{owner}.{call.func.attr}"
        target = by_name.get(name or "")
        if target is not None and target.qualname != crash.qualname and target.qualname not in [o[1] for o in out]:
            out.append((crash.path, target.qualname, target.def_line))
    return out[:3]


def _root_name(node: ast.AST) -> str | None:
    return node.id if isinstance(node, ast.Name) else None


def frame(path: str, qualname: str, line: int | None, start: int, end: int, index: FunctionIndex) -> _Frame:
    return _Frame(path, qualname, line, start, end, index)


def _value_flow(frames: list[_Frame]) -> list[tuple[_Frame, str]]:
    """Callers that handed a value used on the crash line inward, parameter by parameter."""
    out: list[tuple[_Frame, str]] = []
    crash = frames[-1]
    if crash.line is None:
        return out
    names = _names(crash.text(crash.line)) & _parameters(crash)
    for i in range(len(frames) - 2, -1, -1):
        if not names:
            break
        caller, callee = frames[i], frames[i + 1]
        if caller.line is None:
            break
        argument = _argument_names(caller.text(caller.line), callee.qualname.rsplit(".", 1)[-1], names)
        if argument is None:
            break
        out.append((caller, ", ".join(sorted(names))))
        names = argument & _parameters(caller)
    return out


def _parse(text: str) -> ast.AST | None:
    for candidate in (text, text.rstrip(":") + ": pass", f"({text.rstrip(':')})"):
        try:
            return ast.parse(candidate)
        except SyntaxError:
            continue
    return None


def _names(text: str) -> set[str]:
    tree = _parse(text)
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} if tree else set()


def _called_names(text: str) -> set[str]:
    tree = _parse(text)
    out = set()
    for n in ast.walk(tree) if tree else []:
        if isinstance(n, ast.Call):
            out.add(n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", ""))
    return out - {""}


def _parameters(f: _Frame) -> set[str]:
    index = f.index
    defs = [d for d in index.named(f.qualname) if d.start == f.start]
    if not defs:
        return set()
    a = defs[0].node.args
    return {x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs]} - {"self", "cls"}


def _argument_names(text: str, callee: str, params_wanted: set[str]) -> set[str] | None:
    """Names in the caller's arguments to `callee` (None when the call is not on the line)."""
    tree = _parse(text)
    for n in ast.walk(tree) if tree else []:
        if isinstance(n, ast.Call):
            name = n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", "")
            if name == callee:
                return {x.id for a in [*n.args, *(k.value for k in n.keywords)] for x in ast.walk(a)
                        if isinstance(x, ast.Name)}  # fmt: skip
    return None


def _constructors(
    cls: str, index_of: Callable[[str], FunctionIndex], holding: Callable[[str], tuple[str, ...]]
) -> list[tuple[str, str, int]]:
    """Constructors of the repository's class `cls` (files found by `git grep`, not by reading every file)."""
    out = []
    for path in holding(f"class {cls}"):
        if "test" in path.split("/")[0]:
            continue
        for d in index_of(path).defs:
            if d.qualname in (f"{cls}.__init__", f"{cls}.__post_init__", f"{cls}.setUp"):
                out.append((path, d.qualname, d.def_line))
    return out[:3]


def _functions_named(name: str, near: str, index_of: Callable[[str], FunctionIndex]) -> list[tuple[str, str, int]]:
    return [(near, d.qualname, d.def_line) for d in index_of(near).defs if d.qualname.rsplit(".", 1)[-1] == name]
