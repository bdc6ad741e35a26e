"""Strengthening a synthesized crash oracle with what the fix actually returns.

A crash oracle only says "this must not raise"; mutation testing rightly finds it weak when
the fixed code's result matters. With a fix in hand, prodloop runs the production call once
on the fixed code (in a throwaway worktree, in the service's interpreter, confined) and,
when the result round-trips, adds `assert result == <value>` and its exact type: a
characterization of the fixed behaviour that a reviewer sees in the PR.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from prodloop.server.context import AppContext
from prodloop.server.settings import service_python
from prodloop.tools.call_plan import invocation
from prodloop.tools.reconstruct import Unusable, rebuild, render
from prodloop.tools.sandbox import Limits, confine, guard_for, import_roots, sandbox_env, wait, workspace
from prodloop.tools.synthesis import SynthesizedCall, argument_lines, call_imports, render_test

_MARK = "PRODLOOP-RESULT "
_STR_MARK = "PRODLOOP-STR "
_BUILTIN_TYPES = {"int", "float", "str", "bool", "bytes", "list", "dict", "tuple", "set", "frozenset"}


def _text_form(output: str, shown: str) -> str | None:
    """`str(result)` as a literal, when it says more than a repr with an address (lib2to3 nodes print as code)."""
    line = next((x[len(_STR_MARK) :] for x in reversed(output.splitlines()) if x.startswith(_STR_MARK)), None)
    if line is None:
        return None
    try:
        text = rebuild(line, "str(result)")
    except Unusable:
        return None
    if not isinstance(text, str) or " at 0x" in text or len(text) > 4000 or text == shown:
        return None
    return repr(text)


def characterize(ctx: AppContext, call: SynthesizedCall, fix_diff: str) -> tuple[str | None, str]:
    """(stronger test code or None, what happened)."""
    gates = ctx.settings.gates
    limits = Limits(
        timeout_seconds=gates.timeout_seconds, cpu_seconds=int(gates.timeout_seconds) + 5, memory_mb=gates.memory_mb
    )
    script = "\n".join(
        [
            *call_imports(call),
            *argument_lines(call),
            f"result = {invocation(call.callee, call.params)}",
            f"print({_MARK!r} + repr(result))",
            f"print({_STR_MARK!r} + repr(str(result)))",
            "",
        ]
    )
    scratch = Path(tempfile.mkdtemp(prefix="prodloop-characterize-"))
    try:
        (scratch / "probe.py").write_text(script)
        with workspace(ctx.git(), call.commit) as ws:
            ws.apply_diff(fix_diff)
            guard = guard_for(ctx.settings)
            command, _ = confine([str(service_python(ctx.settings)), str(scratch / "probe.py")], limits, guard)
            with open(scratch / "out.txt", "wb") as out:
                env = sandbox_env(scratch, *import_roots(ws.root))
                proc = subprocess.Popen(
                    command, cwd=ws.root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
                code, _, timed_out = wait(proc, limits.timeout_seconds)
        output = (scratch / "out.txt").read_text(errors="replace")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if timed_out or code != 0:
        return (
            None,
            f"the fixed code did not return for the production input ({'timeout' if timed_out else output[-300:]})",
        )
    shown = next((line[len(_MARK) :] for line in reversed(output.splitlines()) if line.startswith(_MARK)), None)
    if shown is None:
        return None, "the fixed code's result was not printed"
    try:
        value = rebuild(shown, "result")
    except Unusable as why:
        as_text = _text_form(output, shown)
        if as_text is None:
            return None, f"the result does not round-trip, so only the crash oracle is kept ({why})"
        code_text = render_test(call, expected=as_text, as_text=True)
        return code_text, f"the fixed code returns an object whose text is {as_text[:80]}; asserted"
    imports: set[str] = set()
    expected = render(value, imports)
    kind = type(value).__name__
    stronger = call.model_copy(update={"imports": sorted({*call.imports, *imports})})
    code_text = render_test(stronger, expected=expected, expected_type=kind if kind in _BUILTIN_TYPES else None)
    return code_text, f"the fixed code returns {expected[:80]} for the production input; asserted"
