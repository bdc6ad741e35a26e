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
import json
import re
from dataclasses import replace
from typing import Any

from pydantic import BaseModel, Field

from prodloop.server.clock import Clock
from prodloop.server.errors import ProdloopError
from prodloop.server.ingest.grouping import exceptions, frames_of
from prodloop.server.settings import Settings
from prodloop.server.store import Store
from prodloop.server.store.receipts import Gate
from prodloop.tools.engine.collaborators import Collaborators
from prodloop.tools.engine.git_repo import GitRepo
from prodloop.tools.engine.runner import Runner
from prodloop.tools.judge.candidate import prepare_input, run_candidate_test
from prodloop.tools.locate.code_path import CodePath, ExceptionPath, MappedFrame, map_code_path
from prodloop.tools.locate.source_map import module_of
from prodloop.tools.observe.triage import require_clearance
from prodloop.tools.reproduce.call_plan import (
    CallerSite,
    PlannedCall,
    RebuiltInput,
    plan_call,
    statement_at,
)
from prodloop.tools.reproduce.reconstruct import ClassResolver, InitSource, Unusable, render
from prodloop.tools.reproduce.regression_test import Case, SynthesizedCall, render_test
from prodloop.tools.reproduce.replay import find_apps, planned_replay, replayed

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*){0,20}")


class FrameAttempt(BaseModel):
    frame: str
    usable: bool
    reason: str


class SynthesisResult(BaseModel):
    issue_id: int
    event_id: str
    test_code: str | None
    test_path: str | None
    frame: str | None = Field(description="path::qualname the test calls")
    inputs: list[RebuiltInput]
    attempts: list[FrameAttempt] = Field(description="each frame tried, and why it was or was not used")
    reproduction: Gate | None
    receipt_id: str | None
    call: SynthesizedCall | None = None


def synthesize_regression_test(
    store: Store,
    repo: GitRepo,
    runner: Runner,
    settings: Settings,
    clock: Clock,
    *,
    issue_id: int,
    max_frames: int = 5,
    code_path: CodePath | None = None,
) -> SynthesisResult:
    ctx = Collaborators(store, repo, runner, settings, clock)
    issue = store.get_issue(issue_id)
    require_clearance(store, repo, settings, clock, issue_id, action="synthesize_regression_test")
    if code_path is None or code_path.issue_id != issue_id:
        code_path = map_code_path(store, repo, issue_id=issue_id, path_rewrites=settings.path_rewrites)
    event = json.loads(store.get_event(code_path.event_id).payload)
    raw_chain = exceptions(event)
    attempts: list[FrameAttempt] = []
    tried = 0
    known_classes: dict[str, set[str]] = {}
    init_source = _init_source(repo, code_path.release.commit)
    for exc_path, mapped in _candidates(code_path):
        raw_frames = frames_of(raw_chain[exc_path.index]) if exc_path.index < len(raw_chain) else []
        if tried >= max_frames:
            break
        label = f"{mapped.location.repo_path}::{mapped.qualname or mapped.function}"
        classes = class_resolver(
            repo, code_path.release.commit, module_of(mapped.location.repo_path or ""), known_classes
        )
        # A receiver the capture helper recorded is first built by calling its class, the way real code builds it
        # (a fixed constructor then takes part); its recorded state is the fallback.
        plans: list[tuple[InitSource | None, PlannedCall]] = []
        for init_of in (init_source, None):
            try:
                plans.append(
                    (init_of, _plan_call(repo, code_path, mapped, exc_path.path, raw_frames, classes, init_of))
                )
            except (Unusable, SyntaxError, ValueError, RecursionError) as why:
                if init_of is None:
                    attempts.append(FrameAttempt(frame=label, usable=False, reason=str(why)[:300]))
        if len(plans) == 2 and plans[0][1].receiver == plans[1][1].receiver:
            plans = plans[1:]  # no receiver, or one built the same way both times: one test, not two
        tried += 1 if plans else 0  # frames tried, whatever number of ways their receiver was built
        for init_of, call in plans:
            found = _try_plan(ctx, issue_id, issue, code_path, mapped, exc_path, raw_chain, call, label, attempts,
                              known_classes, init_of=init_of)  # fmt: skip
            if found is not None:
                return found
    replayed = _try_replay(ctx, issue_id, issue, code_path, event, raw_chain, attempts, known_classes)
    if replayed is not None:
        return replayed
    return SynthesisResult(
        issue_id=issue_id, event_id=code_path.event_id, test_code=None, test_path=None, frame=None, inputs=[],
        attempts=attempts, reproduction=None, receipt_id=None,
    )  # fmt: skip


def _try_plan(
    ctx: Collaborators,
    issue_id: int,
    issue: Any,
    code_path: CodePath,
    mapped: MappedFrame,
    exc_path: ExceptionPath,
    raw_chain: list[dict[str, Any]],
    call: PlannedCall,
    label: str,
    attempts: list[FrameAttempt],
    known_classes: dict[str, set[str]],
    *,
    init_of: InitSource | None,
) -> SynthesisResult | None:
    """Render one planned call as a test and run it on the deployed code; the result when it reproduces."""
    exc_type, exc_module = exc_path.type or "Exception", raw_chain[exc_path.index].get("module")
    if not _IDENTIFIER.fullmatch(exc_type) or (isinstance(exc_module, str) and not _DOTTED.fullmatch(exc_module)):
        # Production data is hostile: only a plain name may become code in the test.
        attempts.append(FrameAttempt(frame=label, usable=False, reason="the exception's type is not a Python name"))
        return None
    imports: set[str] = set(call.imports)
    planned = SynthesizedCall(
        module=call.module, callee=call.callee, import_name=call.import_name, params=call.params,
        arguments={p: render(call.values[p], imports) for p, _ in call.params}, imports=sorted(imports),
        exception=exc_type, exception_module=exc_module if isinstance(exc_module, str) else None,
        issue_id=issue_id, title=issue.title, fingerprint=issue.fingerprint, event_id=code_path.event_id,
        commit=code_path.release.commit, receiver=call.receiver, is_async=call.is_async, helper=call.helper,
    )  # fmt: skip
    code = render_test(planned)
    given = prepare_input(
        ctx.repo, issue_id=issue_id, test_code=code, test_file=None, test_path=None, test_name=None,
        fix_diff=None, fix_from_working_tree=False, code_path=code_path,
    )  # fmt: skip
    result = run_candidate_test(*ctx, code_path, given, budget_kind="synthesis")
    gate = next(g for g in result.gates if g.name == "reproduces")
    if gate.passed:
        attempts.append(FrameAttempt(frame=label, usable=True, reason=gate.evidence))
        if call.helper is not None:
            more = _more_requests(ctx, issue_id, code_path, planned)
        else:
            more = _more_cases(ctx, issue_id, code_path, mapped, planned, known_classes, init_of)
        if more:
            wider = planned.model_copy(update={"more_cases": more})
            wider_code = render_test(wider)
            again = run_candidate_test(*ctx, code_path, replace(given, test_code=wider_code), budget_kind="synthesis")
            wider_gate = next(g for g in again.gates if g.name == "reproduces")
            detail = f"{1 + len(more)} distinct production inputs"
            if wider_gate.passed:
                planned, code, gate, result = wider, wider_code, wider_gate, again
                attempts.append(FrameAttempt(frame=label, usable=True, reason=f"{detail}: {gate.evidence}"))
            else:
                attempts.append(FrameAttempt(frame=label, usable=False, reason=f"{detail}: {wider_gate.evidence}"))
        return SynthesisResult(
            issue_id=issue_id, event_id=code_path.event_id, test_code=code, test_path=given.test_path,
            frame=label, inputs=call.inputs, attempts=attempts, reproduction=gate, receipt_id=result.receipt_id,
            call=planned,
        )  # fmt: skip
    attempts.append(FrameAttempt(frame=label, usable=False, reason=f"did not reproduce: {gate.evidence}"))
    return None


def _try_replay(
    ctx: Collaborators,
    issue_id: int,
    issue: Any,
    code_path: CodePath,
    event: dict[str, Any],
    raw_chain: list[dict[str, Any]],
    attempts: list[FrameAttempt],
    known_classes: dict[str, set[str]],
) -> SynthesisResult | None:
    """No frame could be called: replay the production request through the repository's web application."""
    if not isinstance(event.get("request"), dict) or not code_path.exceptions:
        return None
    on_path = [f.location.repo_path for e in code_path.exceptions for f in e.path if f.location.repo_path]
    apps = find_apps(ctx.repo, code_path.release.commit, on_path)
    if not apps:
        attempts.append(FrameAttempt(frame="request replay", usable=False,
                                     reason="the event has a request but the repository defines no module-level "
                                            "FastAPI, Starlette or Flask application"))  # fmt: skip
        return None
    try:
        request = replayed(event)
    except Unusable as why:
        attempts.append(FrameAttempt(frame="request replay", usable=False, reason=str(why)))
        return None
    app = apps[0]
    label = f"{app.module}.{app.name} ({request.method} request replay)"
    exc_path = code_path.exceptions[-1]
    mapped = exc_path.path[-1] if exc_path.path else None
    if mapped is None:
        return None
    return _try_plan(ctx, issue_id, issue, code_path, mapped, exc_path, raw_chain, planned_replay(app, request),
                     label, attempts, known_classes, init_of=None)  # fmt: skip


def _more_requests(
    ctx: Collaborators,
    issue_id: int,
    code_path: CodePath,
    planned: SynthesizedCall,
    *,
    max_events: int = 20,
    max_cases: int = 9,
) -> list[Case]:
    """The other distinct requests of the issue's events on the same deployed code."""
    seen = {tuple(sorted(planned.arguments.items()))}
    out: list[Case] = []
    for stored in ctx.store.recent_events(issue_id, max_events):
        if stored.event_id == code_path.event_id or len(out) >= max_cases:
            continue
        event = json.loads(stored.payload)
        if event.get("release") != code_path.release.release:
            continue
        try:
            request = replayed(event)
        except Unusable:
            continue
        imports: set[str] = set()
        values = request.values()
        arguments = {p: render(values[p], imports) for p, _ in planned.params}
        key = tuple(sorted(arguments.items()))
        if key not in seen and not imports:
            seen.add(key)
            out.append(Case(event_id=stored.event_id, arguments=arguments))
    return out


def _more_cases(
    ctx: Collaborators,
    issue_id: int,
    code_path: CodePath,
    mapped: MappedFrame,
    planned: SynthesizedCall,
    cache: dict[str, set[str]],
    init_of: InitSource | None,
    *,
    max_events: int = 20,
    max_cases: int = 9,
) -> list[Case]:
    """The same function's distinct inputs in the issue's other events on the same deployed code."""
    seen = {(planned.receiver, tuple(sorted(planned.arguments.items())))}
    names = [p for p, _ in planned.params]
    out: list[Case] = []
    for stored in ctx.store.recent_events(issue_id, max_events):
        if stored.event_id == code_path.event_id or len(out) >= max_cases:
            continue
        try:
            other = map_code_path(
                ctx.store, ctx.repo, event_id=stored.event_id, path_rewrites=ctx.settings.path_rewrites
            )
        except ProdloopError:
            continue
        if other.release.commit != code_path.release.commit:
            continue
        raw_chain = exceptions(json.loads(stored.payload))
        for exc_path in other.exceptions:
            frame = next(
                (f for f in exc_path.path
                 if f.location.repo_path == mapped.location.repo_path and f.qualname == mapped.qualname),
                None,
            )  # fmt: skip
            if frame is None or exc_path.index >= len(raw_chain):
                continue
            classes = class_resolver(
                ctx.repo, code_path.release.commit, module_of(frame.location.repo_path or ""), cache
            )
            try:
                call = _plan_call(
                    ctx.repo, other, frame, exc_path.path, frames_of(raw_chain[exc_path.index]), classes, init_of
                )
            except (Unusable, SyntaxError, ValueError, RecursionError):
                break
            imports: set[str] = set(call.imports)
            arguments = {p: render(call.values[p], imports) for p, _ in call.params}
            key = (call.receiver, tuple(sorted(arguments.items())))
            same_shape = call.callee == planned.callee and [p for p, _ in call.params] == names
            if same_shape and imports <= set(planned.imports) and key not in seen:
                seen.add(key)
                out.append(Case(event_id=stored.event_id, arguments=arguments, receiver=call.receiver))
            break
    return out


def _plan_call(
    repo: GitRepo,
    code_path: CodePath,
    mapped: MappedFrame,
    in_repo: list[MappedFrame],
    raw_frames: list[dict[str, Any]],
    classes: ClassResolver,
    init_of: InitSource | None = None,
) -> PlannedCall:
    path = mapped.location.repo_path
    if path is None or mapped.extent is None or mapped.qualname is None:
        raise Unusable("the frame's function was not found at the deployed commit")
    commit = code_path.release.commit
    source = repo.read(commit, path) or ""
    frame_pos = mapped.frame_index if mapped.frame_index < len(raw_frames) else None
    callee_vars = (raw_frames[frame_pos].get("vars") or {}) if frame_pos is not None else {}
    # The call site is only trusted in the repository's own code (the caller is the frame just before).
    caller_frame = next((f for f in in_repo if frame_pos is not None and f.frame_index == frame_pos - 1), None)
    caller = None
    if caller_frame is not None and frame_pos:
        raw = raw_frames[frame_pos - 1]
        statement = None
        if caller_frame.location.repo_path and caller_frame.location.lineno:
            caller_source = repo.read(commit, caller_frame.location.repo_path) or ""
            statement = statement_at(caller_source, caller_frame.location.lineno)
        context = raw.get("context_line")
        caller = CallerSite(statement, context if isinstance(context, str) else None, raw.get("vars") or {})
    return plan_call(path, source, mapped.qualname, mapped.extent.def_line, callee_vars, caller, classes, init_of)


def _candidates(code_path: CodePath) -> list[tuple[ExceptionPath, MappedFrame]]:
    """Frames to try: the exception finally raised first, from the crash outward; public functions before
    private helpers, so a test goes through the interface a caller would use when one is on the path."""
    ordered = [(e, f) for e in reversed(code_path.exceptions) for f in reversed(e.path)]
    return sorted(ordered, key=lambda pair: _private(pair[1]))


def _private(frame: MappedFrame) -> bool:
    parts = [*(frame.location.repo_path or "").removesuffix(".py").split("/"), *(frame.qualname or "").split(".")]
    return any(p.startswith("_") and not (p.startswith("__") and p.endswith("__")) for p in parts)


def _module_paths(files: tuple[str, ...]) -> dict[str, str]:
    """Module name -> the first file at the commit that is that module."""
    out: dict[str, str] = {}
    for path in files:
        if path.endswith(".py"):
            out.setdefault(module_of(path), path)
    return out


def _init_source(repo: GitRepo, commit: str) -> InitSource:
    """The `__init__` a service class defines itself, read at `commit` (None when it inherits one)."""

    def init_of(module: str, expression: str) -> ast.FunctionDef | None:
        modules = repo.memo(("module-paths", commit), lambda: _module_paths(repo.files(commit)))
        path = modules.get(module)
        try:
            tree = ast.parse(repo.read(commit, path) or "") if path else None
        except (SyntaxError, ValueError):
            return None
        body: list[ast.stmt] = tree.body if tree else []
        for name in expression.split("."):
            cls = next((n for n in body if isinstance(n, ast.ClassDef) and n.name == name), None)
            if cls is None:
                return None
            body = cls.body
        return next((n for n in body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)

    return init_of


def class_resolver(repo: GitRepo, commit: str, near: str | None, cache: dict[str, set[str]]) -> ClassResolver:
    """Resolve a class name to the service module that defines it (the one `near` first; else only if unique).
    The index of the repository's classes is built on first use into `cache`, shared between frames."""

    def resolve(name: str) -> str | None:
        if not cache:
            cache.update(_class_index(repo, commit) or {"": set()})
        if ":" in name:  # "module:Class": does the repository define Class in module?
            module, _, cls = name.partition(":")
            return module if module in cache.get(cls, set()) else None
        modules = cache.get(name, set())
        if near is not None and near in modules:
            return near
        return next(iter(modules)) if len(modules) == 1 else None

    return resolve


def _class_index(repo: GitRepo, commit: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in repo.files(commit):
        module = module_of(path)
        if not path.endswith(".py") or not _DOTTED.fullmatch(module) or "test" in module.split(".")[0]:
            continue
        try:
            tree = ast.parse(repo.read(commit, path) or "")
        except (SyntaxError, ValueError):
            continue
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                out.setdefault(node.name, set()).add(module)
    return out
