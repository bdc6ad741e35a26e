"""The source of a synthesized regression test: one production input, or every distinct one as parameters.

The oracle is the crash itself (the call must not raise the production exception) and, once a fix
is characterized, what the fixed code returns for each input (`assert result == ...`, or the text
of an object that does not round-trip).
"""

from __future__ import annotations

import builtins
import re

from pydantic import BaseModel, Field

from prodloop.tools.reproduce.call_plan import invocation
from prodloop.tools.reproduce.reconstruct import RESTORE_HELPER, RESTORE_MARK
from prodloop.tools.reproduce.replay import helper_imports, helper_source


class Case(BaseModel):
    """One production input of the called function."""

    event_id: str
    arguments: dict[str, str] = Field(description="each argument as Python source")
    receiver: str | None = None


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
    is_async: bool = Field(default=False, description="the callee is a coroutine function (run with asyncio.run)")
    more_cases: list[Case] = Field(
        default_factory=list, description="the other distinct production inputs of the issue's events"
    )
    helper: str | None = Field(
        default=None, description="asgi or flask: the test replays production requests through the app's test client"
    )


def cases(call: SynthesizedCall) -> list[Case]:
    """Every input of the test, the latest event's first."""
    return [Case(event_id=call.event_id, arguments=call.arguments, receiver=call.receiver), *call.more_cases]


def render_test(
    call: SynthesizedCall,
    expected: list[str] | None = None,
    expected_type: list[str | None] | None = None,
    *,
    as_text: bool = False,
) -> str:
    """The regression test: each production call must not raise the production exception; with `expected` (one
    per case), it must also return what the fixed code returned for that input (a characterization of the fix)."""
    import_lines = call_imports(call)
    if not hasattr(builtins, call.exception) and call.exception_module:
        import_lines.append(f"from {call.exception_module} import {call.exception}")
    every = cases(call)
    short = re.sub(r"\W+", "_", call.exception).lower()
    fn_name = re.sub(r"\W+", "_", call.callee.removeprefix("obj.").lower())
    invoke = invocation(call.callee, call.params, is_async=call.is_async)
    invoke = f"result = {invoke}" if expected is not None else invoke
    names = (["obj"] if call.receiver is not None else []) + [p for p, _ in call.params]
    head: list[str] = []
    body: list[str]
    if len(every) == 1:
        body = argument_lines(call)
        want = expected[0] if expected else None
        kind = expected_type[0] if expected_type else None
    else:
        import_lines.insert(0, "import pytest")
        columns = names + (["expected"] if expected is not None else [])
        rows = []
        for i, case in enumerate(every):
            values = ([case.receiver or "None"] if call.receiver is not None else []) + [
                case.arguments[p] for p, _ in call.params
            ]
            values += [expected[i]] if expected is not None else []
            rows.append(f"        pytest.param({', '.join(values)}, id={('event-' + case.event_id[:8])!r}),")
        head = ["@pytest.mark.parametrize(", f"    {tuple(columns)!r},", "    [", *rows, "    ],", ")"]
        body = []
        want = "expected" if expected is not None else None
        kind = None
    checks: list[str] = []
    if as_text and want is not None:
        checks = [f"    assert str(result) == {want}  # the text of what the fixed code returns for this input"]
    elif want == "None":
        checks = ["    assert result is None  # what the fixed code returns for the production input"]
    elif want is not None:
        checks = [f"    assert result == {want}  # what the fixed code returns for the production input"]
        if kind:
            checks.append(f"    assert type(result) is {kind}")
    signature = ", ".join(names) if len(every) > 1 else ""
    if len(every) > 1 and expected is not None:
        signature += ", expected"
    inputs = "the production inputs" if len(every) == 1 else f"{len(every)} distinct production inputs"
    if call.helper is not None:
        inputs = "the production request" if len(every) == 1 else f"{len(every)} distinct production requests"
    target = f"{call.module}.{call.import_name} (replayed)" if call.helper else f"{call.module}.{call.callee}"
    lines = [
        f'"""Regression test for production issue {call.issue_id}: {_doc(call.title)}.',
        "",
        f"Synthesized by prodloop from {inputs} of {target}",
        f"(event {call.event_id}, fingerprint {call.fingerprint}, commit {call.commit[:12]}).",
        f"In production this call raised {call.exception}; it must not any more.",
        '"""',
        "",
        *import_lines,
        *helper_lines(call),
        "",
        "",
        *head,
        f"def test_{fn_name}_does_not_raise_{short}_issue_{call.issue_id}({signature}):",
        *(f"    {line}" for line in body),
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
    lines = [line for line in call.imports if line != RESTORE_MARK]
    if call.helper is not None:
        lines += helper_imports(call.helper)
    if call.import_name:
        lines.append(f"from {call.module} import {call.import_name}")
    return list(dict.fromkeys(lines))


def helper_lines(call: SynthesizedCall) -> list[str]:
    """The helpers an input uses (after the imports): rebuilding captured objects, replaying requests."""
    out = ["", "", *RESTORE_HELPER.rstrip("\n").split("\n")] if RESTORE_MARK in call.imports else []
    if call.helper is not None:
        out += ["", "", *helper_source(call.helper, call.import_name)]
    return out


def argument_lines(call: SynthesizedCall, case: Case | None = None) -> list[str]:
    """`obj = ...` for a method's receiver, then one assignment per argument."""
    case = case or cases(call)[0]
    receiver = [f"obj = {case.receiver}"] if case.receiver is not None else []
    return receiver + [f"{p} = {case.arguments[p]}" for p, _ in call.params]


def _doc(text: str) -> str:
    return text.replace('"""', "'''").replace("\\", "\\\\")[:150]
