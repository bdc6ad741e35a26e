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
_BUILTIN_TYPES = {"int", "float", "str", "bool", "bytes", "list", "dict", "tuple", "set", "frozenset"}


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
        return None, f"the result does not round-trip, so only the crash oracle is kept ({why})"
    imports: set[str] = set()
    expected = render(value, imports)
    kind = type(value).__name__
    stronger = call.model_copy(update={"imports": sorted({*call.imports, *imports})})
    code_text = render_test(stronger, expected=expected, expected_type=kind if kind in _BUILTIN_TYPES else None)
    return code_text, f"the fixed code returns {expected[:80]} for the production input; asserted"
