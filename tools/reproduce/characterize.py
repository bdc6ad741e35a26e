"""Strengthening a synthesized crash oracle with what the fix actually returns.

A crash oracle only says "this must not raise"; mutation testing rightly finds it weak when
the fixed code's result matters. With a fix in hand, prodloop runs the production call once
on the fixed code (in a throwaway worktree, in the service's interpreter, confined) and,
when the result round-trips, adds `assert result == <value>` and its exact type: a
characterization of the fixed behaviour that a reviewer sees in the PR.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from pathlib import Path

from prodloop.tools.engine.git_repo import GitRepo
from prodloop.tools.engine.runner import Runner
from prodloop.tools.engine.sandbox import workspace
from prodloop.tools.reproduce.call_plan import invocation
from prodloop.tools.reproduce.reconstruct import Unusable, rebuild, render
from prodloop.tools.reproduce.regression_test import (
    SynthesizedCall,
    argument_lines,
    call_imports,
    cases,
    helper_lines,
    render_test,
)

_MARK = "PRODLOOP-RESULT-{nonce} "  # a nonce per run: output the service prints cannot pose as a result line
_STR_MARK = "PRODLOOP-STR-{nonce} "
_BUILTIN_TYPES = {"int", "float", "str", "bool", "bytes", "list", "dict", "tuple", "set", "frozenset"}


def _marked(output: str, mark: str) -> str | None:
    """The last line with the mark (the probe prints after the call returned)."""
    return next((x[len(mark) :] for x in reversed(output.splitlines()) if x.startswith(mark)), None)


def _text_form(line: str | None, shown: str) -> str | None:
    """`str(result)` as a literal, when it says more than a repr with an address (lib2to3 nodes print as code)."""
    if line is None:
        return None
    try:
        text = rebuild(line, "str(result)")
    except Unusable:
        return None
    if not isinstance(text, str) or " at 0x" in text or len(text) > 4000 or text == shown:
        return None
    return repr(text)


def characterize(repo: GitRepo, runner: Runner, call: SynthesizedCall, fix_diff: str) -> tuple[str | None, str]:
    """(stronger test code or None, what happened): every production input of the test, run once on the fix."""
    every = cases(call)
    nonce = secrets.token_hex(8)
    mark, str_mark = _MARK.format(nonce=nonce), _STR_MARK.format(nonce=nonce)
    lines = [*call_imports(call), *helper_lines(call)]
    for i, case in enumerate(every):
        lines += [
            *argument_lines(call, case),
            f"result = {invocation(call.callee, call.params, is_async=call.is_async)}",
            f"print({f'{mark}{i} '!r} + repr(result))",
            f"print({f'{str_mark}{i} '!r} + repr(str(result)))",
        ]
    scratch = Path(tempfile.mkdtemp(prefix="prodloop-characterize-"))
    try:
        (scratch / "probe.py").write_text("\n".join([*lines, ""]))
        with workspace(repo, call.commit) as ws:
            ws.apply_diff(fix_diff)
            run = runner.script([str(scratch / "probe.py")], cwd=ws.root, keep=[ws.root.parent, scratch])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    output = run.output
    if run.timed_out or run.exit_code != 0:
        return (
            None,
            f"the fixed code did not return for the production input ({'timeout' if run.timed_out else output[-300:]})",
        )
    shown = [_marked(output, f"{mark}{i} ") for i in range(len(every))]
    if any(s is None for s in shown):
        return None, "the fixed code's result was not printed"
    imports: set[str] = set()
    expected: list[str] = []
    kinds: list[str | None] = []
    try:
        for i, text in enumerate(shown):
            value = rebuild(text, f"result {i}")
            expected.append(render(value, imports))
            kind = type(value).__name__
            kinds.append(kind if kind in _BUILTIN_TYPES else None)
    except Unusable as why:
        texts = [_text_form(_marked(output, f"{str_mark}{i} "), s or "") for i, s in enumerate(shown)]
        if any(t is None for t in texts):
            return None, f"the result does not round-trip, so only the crash oracle is kept ({why})"
        code_text = render_test(call, expected=[t for t in texts if t is not None], as_text=True)
        return (
            code_text,
            f"the fixed code returns objects whose text is {texts[0][:60] if texts[0] else ''}...; asserted",
        )
    stronger = call.model_copy(update={"imports": sorted({*call.imports, *imports})})
    code_text = render_test(stronger, expected=expected, expected_type=kinds)
    return (
        code_text,
        f"the fixed code returns {expected[0][:80]} for the production input; asserted ({len(every)} input(s))",
    )
