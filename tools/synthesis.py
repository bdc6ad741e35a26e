"""`synthesize_regression_test`: a deterministic pytest test rebuilt from production inputs.

Frames on the mapped path are tried from the crash outward. A frame is usable when its
function can be imported and called (module-level functions, static and class methods)
and every argument can be rebuilt: preferably by evaluating the call expression in the
caller's code line over the caller's recorded locals (the callee may have changed its
arguments before crashing), else from the callee's own locals. The test's oracle is the
crash itself: calling with the production input must not raise the production exception.
Each candidate is run on the deployed code through `run_candidate_test`'s machinery; the
first that reproduces is returned.
"""

from __future__ import annotations

import ast
import builtins
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from prodloop.server.context import AppContext
from prodloop.server.ingest.grouping import exceptions, frames_of
from prodloop.tools.candidate import prepare_input, run_candidate_test
from prodloop.tools.code_path import CodePath, MappedFrame, map_code_path
from prodloop.tools.functions import FunctionIndex
from prodloop.tools.gates import Gate
from prodloop.tools.reconstruct import Unusable, evaluate, rebuild, render

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*){0,20}")


class RebuiltInput(BaseModel):
    parameter: str
    value: str = Field(description="the rebuilt value as Python source")
    source: Literal["call-site", "callee-locals", "default"]


class FrameAttempt(BaseModel):
    frame: str
    usable: bool
    reason: str


class SynthesizedCall(BaseModel):
    """How the synthesized test calls the service, so that it can be rendered again (see `characterize`)."""

    module: str
    callee: str
    import_name: str
    params: list[tuple[str, str]] = Field(description="(name, 'pos' or 'kw')")
    arguments: dict[str, str] = Field(description="each argument as Python source")
    imports: list[str]
    exception: str
    exception_module: str | None
    issue_id: int
    title: str
    fingerprint: str
    event_id: str
    commit: str


class SynthesisResult(BaseModel):
    issue_id: int
    event_id: str
    test_code: str | None
    test_path: str | None
    frame: str | None = Field(description="the function the test calls, path::qualname")
    inputs: list[RebuiltInput]
    attempts: list[FrameAttempt] = Field(description="every frame tried, with why it was or was not used")
    reproduction: Gate | None
    receipt_id: str | None
    call: SynthesizedCall | None = None


@dataclass
class _Call:
    module: str
    callee: str  # how the test calls it: name or Class.method
    import_name: str
    params: list[tuple[str, str]]  # (name, kind) kind: pos / kw
    inputs: list[RebuiltInput]
    values: dict[str, Any]


def synthesize_regression_test(ctx: AppContext, *, issue_id: int, max_frames: int = 5) -> SynthesisResult:
    issue = ctx.store.get_issue(issue_id)
    code_path = map_code_path(ctx.store, ctx.git(), issue_id=issue_id, path_rewrites=ctx.settings.path_rewrites)
    event = json.loads(ctx.store.get_event(code_path.event_id).payload)
    raw_chain = exceptions(event)
    attempts: list[FrameAttempt] = []
    tried = 0
    for exc_path in reversed(code_path.exceptions):
        raw_frames = frames_of(raw_chain[exc_path.index]) if exc_path.index < len(raw_chain) else []
        for mapped in reversed(exc_path.path):
            if tried >= max_frames:
                break
            label = f"{mapped.location.repo_path}::{mapped.qualname or mapped.function}"
            try:
                call = _plan_call(ctx, code_path, mapped, exc_path.path, raw_frames)
            except Unusable as why:
                attempts.append(FrameAttempt(frame=label, usable=False, reason=str(why)))
                continue
            tried += 1
            exc_type, exc_module = exc_path.type or "Exception", raw_chain[exc_path.index].get("module")
            if not _IDENTIFIER.fullmatch(exc_type) or (
                isinstance(exc_module, str) and not _DOTTED.fullmatch(exc_module)
            ):
                # Production data is hostile: only a plain name may become code in the test.
                attempts.append(
                    FrameAttempt(frame=label, usable=False, reason="the exception's type is not a Python name")
                )
                continue
            imports: set[str] = set()
            planned = SynthesizedCall(
                module=call.module, callee=call.callee, import_name=call.import_name, params=call.params,
                arguments={p: render(call.values[p], imports) for p, _ in call.params}, imports=sorted(imports),
                exception=exc_type, exception_module=exc_module if isinstance(exc_module, str) else None,
                issue_id=issue_id, title=issue.title, fingerprint=issue.fingerprint, event_id=code_path.event_id,
                commit=code_path.release.commit,
            )  # fmt: skip
            code = render_test(planned)
            given = prepare_input(
                ctx, issue_id=issue_id, test_code=code, test_file=None, test_path=None, test_name=None,
                fix_diff=None, fix_from_working_tree=False, code_path=code_path,
            )  # fmt: skip
            result = run_candidate_test(ctx, code_path, given, budget_kind="synthesis")
            gate = next(g for g in result.gates if g.name == "reproduces")
            if gate.passed:
                attempts.append(FrameAttempt(frame=label, usable=True, reason=gate.evidence))
                return SynthesisResult(
                    issue_id=issue_id, event_id=code_path.event_id, test_code=code, test_path=given.test_path,
                    frame=label, inputs=call.inputs, attempts=attempts, reproduction=gate, receipt_id=result.receipt_id,
                    call=planned,
                )  # fmt: skip
            attempts.append(FrameAttempt(frame=label, usable=False, reason=f"did not reproduce: {gate.evidence}"))
    return SynthesisResult(
        issue_id=issue_id, event_id=code_path.event_id, test_code=None, test_path=None, frame=None, inputs=[],
        attempts=attempts, reproduction=None, receipt_id=None,
    )  # fmt: skip


def _plan_call(
    ctx: AppContext,
    code_path: CodePath,
    mapped: MappedFrame,
    in_repo: list[MappedFrame],
    raw_frames: list[dict[str, Any]],
) -> _Call:
    path = mapped.location.repo_path
    if path is None or mapped.extent is None or mapped.qualname is None:
        raise Unusable("the frame's function was not found at the deployed commit")
    module = _module_of(path)
    if not _DOTTED.fullmatch(module):
        raise Unusable(f"{path} is not importable as a module")
    if module.split(".")[0] in ("tests", "test") or module.rsplit(".", 1)[-1].startswith("test_"):
        raise Unusable("the frame is in a test module")
    index = FunctionIndex(ctx.git().read(code_path.release.commit, path) or "")
    found = [d for d in index.named(mapped.qualname) if d.def_line == mapped.extent.def_line]
    if not found:
        raise Unusable(f"{mapped.qualname} could not be parsed at the deployed commit")
    node = found[0].node
    parts = mapped.qualname.split(".")
    decorators = {ast.unparse(d) for d in node.decorator_list}
    if len(parts) == 1:
        callee, import_name, skip_first = parts[0], parts[0], False
    elif len(parts) == 2 and parts[0][:1].isupper() and decorators & {"staticmethod", "classmethod"}:
        callee, import_name, skip_first = mapped.qualname, parts[0], "classmethod" in decorators
    elif len(parts) == 2 and parts[0][:1].isupper():
        raise Unusable(f"{mapped.qualname} is a bound method: the instance cannot be rebuilt from its repr")
    else:
        raise Unusable(f"{mapped.qualname} is a nested function: it cannot be imported")
    if decorators - {"staticmethod", "classmethod"}:
        raise Unusable(f"{mapped.qualname} is wrapped by {sorted(decorators)}: calling it may not reach the same code")
    params = _params(node.args, skip_first)
    frame_pos = _raw_index(raw_frames, mapped)
    callee_vars = raw_frames[frame_pos].get("vars") or {} if frame_pos is not None else {}
    # The call site is only trusted in the repository's own code (the caller is the frame just before).
    caller_in_repo = frame_pos is not None and any(f.frame_index == frame_pos - 1 for f in in_repo)
    caller = raw_frames[frame_pos - 1] if frame_pos and caller_in_repo else None
    values, inputs = _from_call_site(caller, parts[-1], params) if caller else (None, [])
    if values is None:
        values, inputs = _from_locals(callee_vars, params, node.args)
    return _Call(module=module, callee=callee, import_name=import_name, params=params, inputs=inputs, values=values)


def _raw_index(raw_frames: list[dict[str, Any]], mapped: MappedFrame) -> int | None:
    return mapped.frame_index if mapped.frame_index < len(raw_frames) else None


def _params(args: ast.arguments, skip_first: bool) -> list[tuple[str, str]]:
    positional = [a.arg for a in [*args.posonlyargs, *args.args]]
    if skip_first and positional:
        positional = positional[1:]
    out = [(name, "pos") for name in positional] + [(a.arg, "kw") for a in args.kwonlyargs]
    if args.vararg or args.kwarg:
        raise Unusable("the function takes *args or **kwargs: its production call cannot be rebuilt exactly")
    return out


def _from_call_site(
    caller: dict[str, Any], name: str, params: list[tuple[str, str]]
) -> tuple[dict[str, Any] | None, list[RebuiltInput]]:
    """Evaluate the caller's call expression; None when it cannot be used (the callee's locals are tried next)."""
    line = caller.get("context_line")
    if not isinstance(line, str):
        return None, []
    call = _find_call(line.strip(), name)
    if call is None:
        return None, []
    scope: dict[str, Any] = {}
    unusable: dict[str, str] = {}
    for var, raw in (caller.get("vars") or {}).items():
        try:
            scope[var] = rebuild(raw, var)
        except Unusable as why:
            unusable[var] = str(why)
    values: dict[str, Any] = {}
    try:
        positional = [p for p, kind in params if kind == "pos"]
        if len(call.args) > len(positional) or any(isinstance(a, ast.Starred) for a in call.args):
            return None, []
        for param, arg in zip(positional, call.args, strict=False):
            values[param] = evaluate(arg, scope, unusable)
        for kw in call.keywords:
            if kw.arg is None or kw.arg not in dict(params):
                return None, []
            values[kw.arg] = evaluate(kw.value, scope, unusable)
    except (Unusable, TypeError, ValueError, ArithmeticError):  # hostile or odd code lines: use the locals instead
        return None, []
    if any(p not in values for p, _ in params):
        return None, []  # defaults are taken from the callee's locals instead
    imports: set[str] = set()
    return values, [RebuiltInput(parameter=p, value=render(values[p], imports), source="call-site") for p, _ in params]


def _find_call(line: str, name: str) -> ast.Call | None:
    for candidate in (line, line.removeprefix("return ").removeprefix("yield "), f"({line.rstrip(':')})"):
        try:
            tree = ast.parse(candidate)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                if (isinstance(func, ast.Name) and func.id == name) or (
                    isinstance(func, ast.Attribute) and func.attr == name
                ):
                    return node
    return None


def _from_locals(
    callee_vars: dict[str, Any], params: list[tuple[str, str]], args: ast.arguments
) -> tuple[dict[str, Any], list[RebuiltInput]]:
    values: dict[str, Any] = {}
    inputs: list[RebuiltInput] = []
    blocked: list[str] = []
    imports: set[str] = set()
    for param, _ in params:
        if param not in callee_vars:
            blocked.append(f"{param} was not recorded")
            continue
        try:
            values[param] = rebuild(callee_vars[param], param)
            inputs.append(RebuiltInput(parameter=param, value=render(values[param], imports), source="callee-locals"))
        except Unusable as why:
            blocked.append(str(why))
    if blocked:
        raise Unusable("; ".join(blocked))
    return values, inputs


def _module_of(path: str) -> str:
    return path.removeprefix("src/").removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def render_test(call: SynthesizedCall, expected: str | None = None, expected_type: str | None = None) -> str:
    """The regression test: the production call must not raise the production exception; with `expected`,
    it must also return what the fixed code returned for that input (a characterization of the fix)."""
    import_lines = list(call.imports)
    if not hasattr(builtins, call.exception) and call.exception_module:
        import_lines.append(f"from {call.exception_module} import {call.exception}")
    import_lines.append(f"from {call.module} import {call.import_name}")
    args = ", ".join(p if kind == "pos" else f"{p}={p}" for p, kind in call.params)
    short = re.sub(r"\W+", "_", call.exception).lower()
    fn_name = re.sub(r"\W+", "_", call.callee.lower())
    invoke = f"result = {call.callee}({args})" if expected is not None else f"{call.callee}({args})"
    checks: list[str] = []
    if expected == "None":
        checks = ["    assert result is None  # what the fixed code returns for the production input"]
    elif expected is not None:
        checks = [f"    assert result == {expected}  # what the fixed code returns for the production input"]
        if expected_type:
            checks.append(f"    assert type(result) is {expected_type}")
    lines = [
        f'"""Regression test for production issue {call.issue_id}: {_doc(call.title)}.',
        "",
        f"Synthesized by prodloop from the production inputs of {call.module}.{call.callee}",
        f"(event {call.event_id}, fingerprint {call.fingerprint}, commit {call.commit[:12]}).",
        f"In production this call raised {call.exception}; it must not any more.",
        '"""',
        "",
        *import_lines,
        "",
        "",
        f"def test_{fn_name}_does_not_raise_{short}_issue_{call.issue_id}():",
        *(f"    {p} = {call.arguments[p]}" for p, _ in call.params),
        "    try:",
        f"        {invoke}",
        f"    except {call.exception} as exc:",
        f'        raise AssertionError(f"{call.callee} still raises the production {call.exception}: {{exc!r}}")'
        " from exc",
        *checks,
        "",
    ]
    return "\n".join(lines)


def _doc(text: str) -> str:
    return text.replace('"""', "'''").replace("\\", "\\\\")[:150]
