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
from typing import Any

from pydantic import BaseModel, Field

from prodloop.server.context import AppContext
from prodloop.server.ingest.grouping import exceptions, frames_of
from prodloop.tools.call_plan import (
    CallerSite,
    PlannedCall,
    RebuiltInput,
    invocation,
    module_of,
    plan_call,
    statement_at,
)
from prodloop.tools.candidate import prepare_input, run_candidate_test
from prodloop.tools.code_path import CodePath, ExceptionPath, MappedFrame, map_code_path
from prodloop.tools.gates import Gate
from prodloop.tools.reconstruct import ClassResolver, Unusable, render

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*){0,20}")


class FrameAttempt(BaseModel):
    frame: str
    usable: bool
    reason: str


class SynthesizedCall(BaseModel):
    """How the synthesized test calls the service, so that it can be rendered again (see `characterize`)."""

    module: str
    callee: str
    import_name: str
    params: list[tuple[str, str]] = Field(description="(name, kind): posonly, pos, kw, star or starstar")
    arguments: dict[str, str] = Field(description="each argument as Python source")
    imports: list[str]
    exception: str
    exception_module: str | None
    issue_id: int
    title: str
    fingerprint: str
    event_id: str
    commit: str
    receiver: str | None = Field(default=None, description="source that rebuilds the method's receiver")


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


def synthesize_regression_test(ctx: AppContext, *, issue_id: int, max_frames: int = 5) -> SynthesisResult:
    issue = ctx.store.get_issue(issue_id)
    code_path = map_code_path(ctx.store, ctx.git(), issue_id=issue_id, path_rewrites=ctx.settings.path_rewrites)
    event = json.loads(ctx.store.get_event(code_path.event_id).payload)
    raw_chain = exceptions(event)
    attempts: list[FrameAttempt] = []
    tried = 0
    known_classes: dict[str, set[str]] = {}
    for exc_path, mapped in _candidates(code_path):
        raw_frames = frames_of(raw_chain[exc_path.index]) if exc_path.index < len(raw_chain) else []
        if tried >= max_frames:
            break
        label = f"{mapped.location.repo_path}::{mapped.qualname or mapped.function}"
        classes = class_resolver(
            ctx, code_path.release.commit, module_of(mapped.location.repo_path or ""), known_classes
        )
        try:
            call = _plan_call(ctx, code_path, mapped, exc_path.path, raw_frames, classes)
        except (Unusable, SyntaxError, ValueError, RecursionError) as why:
            attempts.append(FrameAttempt(frame=label, usable=False, reason=str(why)[:300]))
            continue
        tried += 1
        exc_type, exc_module = exc_path.type or "Exception", raw_chain[exc_path.index].get("module")
        if not _IDENTIFIER.fullmatch(exc_type) or (isinstance(exc_module, str) and not _DOTTED.fullmatch(exc_module)):
            # Production data is hostile: only a plain name may become code in the test.
            attempts.append(FrameAttempt(frame=label, usable=False, reason="the exception's type is not a Python name"))
            continue
        imports: set[str] = set(call.imports)
        planned = SynthesizedCall(
            module=call.module, callee=call.callee, import_name=call.import_name, params=call.params,
            arguments={p: render(call.values[p], imports) for p, _ in call.params}, imports=sorted(imports),
            exception=exc_type, exception_module=exc_module if isinstance(exc_module, str) else None,
            issue_id=issue_id, title=issue.title, fingerprint=issue.fingerprint, event_id=code_path.event_id,
            commit=code_path.release.commit, receiver=call.receiver,
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
    classes: ClassResolver,
) -> PlannedCall:
    path = mapped.location.repo_path
    if path is None or mapped.extent is None or mapped.qualname is None:
        raise Unusable("the frame's function was not found at the deployed commit")
    commit = code_path.release.commit
    source = ctx.git().read(commit, path) or ""
    frame_pos = mapped.frame_index if mapped.frame_index < len(raw_frames) else None
    callee_vars = (raw_frames[frame_pos].get("vars") or {}) if frame_pos is not None else {}
    # The call site is only trusted in the repository's own code (the caller is the frame just before).
    caller_frame = next((f for f in in_repo if frame_pos is not None and f.frame_index == frame_pos - 1), None)
    caller = None
    if caller_frame is not None and frame_pos:
        raw = raw_frames[frame_pos - 1]
        statement = None
        if caller_frame.location.repo_path and caller_frame.location.lineno:
            caller_source = ctx.git().read(commit, caller_frame.location.repo_path) or ""
            statement = statement_at(caller_source, caller_frame.location.lineno)
        context = raw.get("context_line")
        caller = CallerSite(statement, context if isinstance(context, str) else None, raw.get("vars") or {})
    return plan_call(path, source, mapped.qualname, mapped.extent.def_line, callee_vars, caller, classes)


def _candidates(code_path: CodePath) -> list[tuple[ExceptionPath, MappedFrame]]:
    """Frames to try: the exception finally raised first, from the crash outward; public functions before
    private helpers, so a test goes through the interface a caller would use when one is on the path."""
    ordered = [(e, f) for e in reversed(code_path.exceptions) for f in reversed(e.path)]
    return sorted(ordered, key=lambda pair: _private(pair[1]))


def _private(frame: MappedFrame) -> bool:
    parts = [*(frame.location.repo_path or "").removesuffix(".py").split("/"), *(frame.qualname or "").split(".")]
    return any(p.startswith("_") and not (p.startswith("__") and p.endswith("__")) for p in parts)


def class_resolver(ctx: AppContext, commit: str, near: str | None, cache: dict[str, set[str]]) -> ClassResolver:
    """Resolve a class name to the service module that defines it (the one `near` first; else only if unique).
    The index of the repository's classes is built on first use into `cache`, shared between frames."""

    def resolve(name: str) -> str | None:
        if not cache:
            cache.update(_class_index(ctx, commit) or {"": set()})
        modules = cache.get(name, set())
        if near is not None and near in modules:
            return near
        return next(iter(modules)) if len(modules) == 1 else None

    return resolve


def _class_index(ctx: AppContext, commit: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in ctx.git().files(commit):
        module = module_of(path)
        if not path.endswith(".py") or not _DOTTED.fullmatch(module) or "test" in module.split(".")[0]:
            continue
        try:
            tree = ast.parse(ctx.git().read(commit, path) or "")
        except (SyntaxError, ValueError):
            continue
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                out.setdefault(node.name, set()).add(module)
    return out


def render_test(
    call: SynthesizedCall, expected: str | None = None, expected_type: str | None = None, *, as_text: bool = False
) -> str:
    """The regression test: the production call must not raise the production exception; with `expected`,
    it must also return what the fixed code returned for that input (a characterization of the fix)."""
    import_lines = call_imports(call)
    if not hasattr(builtins, call.exception) and call.exception_module:
        import_lines.append(f"from {call.exception_module} import {call.exception}")
    short = re.sub(r"\W+", "_", call.exception).lower()
    fn_name = re.sub(r"\W+", "_", call.callee.removeprefix("obj.").lower())
    invoke = invocation(call.callee, call.params)
    invoke = f"result = {invoke}" if expected is not None else invoke
    checks: list[str] = []
    if as_text and expected is not None:
        checks = [f"    assert str(result) == {expected}  # the text of what the fixed code returns for this input"]
    elif expected == "None":
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
        *(f"    {line}" for line in argument_lines(call)),
        "    try:",
        f"        {invoke}",
        f"    except {call.exception} as exc:",
        f'        raise AssertionError(f"{call.callee} still raises the production {call.exception}: {{exc!r}}")'
        " from exc",
        *checks,
        "",
    ]
    return "\n".join(lines)


def call_imports(call: SynthesizedCall) -> list[str]:
    lines = list(call.imports)
    if call.import_name:
        lines.append(f"from {call.module} import {call.import_name}")
    return list(dict.fromkeys(lines))


def argument_lines(call: SynthesizedCall) -> list[str]:
    """`obj = ...` for a method's receiver, then one assignment per argument."""
    receiver = [f"obj = {call.receiver}"] if call.receiver is not None else []
    return receiver + [f"{p} = {call.arguments[p]}" for p, _ in call.params]


def _doc(text: str) -> str:
    return text.replace('"""', "'''").replace("\\", "\\\\")[:150]
