"""One bug, end to end, in its own process (so that the runner can stop it at its deadline): set-up, capture,
then every stage, with the results in WORK/<bug>/result.json as they come."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import _stages as st
from _bug import Bug, split_trigger
from _capture import capture, open_context
from _record import STAGES, Done, Recorder
from _setup import add_service_module, build_venv, clone_service, fix_diff


def run_bug(bug: Bug, root: Path, *, mirrors: Path, cache: Path, python: str, budget_seconds: float) -> dict[str, Any]:
    # The runner decides prodloop's configuration: none of the developer's PRODLOOP_* variables (a GitHub
    # token would send the PR to GitHub) may leak into the bug's settings.
    for key in [k for k in os.environ if k.startswith("PRODLOOP_")]:
        del os.environ[key]
    rec = Recorder(bug.name, root / "result.json", echo=_echo)
    rec.result["bug_info"] = {
        "project": bug.project, "repo": bug.repo, "buggy_commit": bug.buggy_commit, "fixed_commit": bug.fixed_commit,
        "exception": bug.exception, "fault": [str(f) for f in bug.faults], "regression_test": bug.regression_test,
        "install_project": bug.install_project,
    }  # fmt: skip
    svc: st.Service | None = rec.stage("setup", lambda: _setup(bug, root, mirrors, cache, python))
    rec.start_budget(budget_seconds)
    if svc is None:
        for name in STAGES[1:]:
            rec.stage(name, lambda: Done("skip", "setup did not pass"), needs=("setup",))
        return rec.result
    bug = svc.bug  # in module mode, deployed with the service's module
    ctx = open_context(svc.service, root / "data", svc.python)
    try:
        issue = rec.stage("capture", lambda: capture(ctx, bug, svc.service, svc.python, svc.script))
        rec.result["issue_id"] = issue
        cp = rec.stage("release", lambda: st.release(ctx, svc, issue), needs=("capture",))
        no_path = Done("skip", "no code path: map_code_path raised in the release stage")
        rec.stage("top1", lambda: st.top1(ctx, svc, cp) if cp is not None else no_path, needs=("capture",))
        rec.stage("top3", lambda: st.top3(ctx, svc, cp) if cp is not None else no_path, needs=("capture",))
        synthesized = rec.stage("synth", lambda: st.synth(ctx, issue), needs=("capture",))
        rec.stage("repro", lambda: st.repro(svc, synthesized), needs=("synth",))
        rec.stage("loop", lambda: st.loop(ctx, svc, issue), needs=("capture",))
        rec.stage("own", lambda: st.own(ctx, svc, issue), needs=("capture",))
    finally:
        ctx.close()
    return rec.result


def _setup(bug: Bug, root: Path, mirrors: Path, cache: Path, python: str) -> Done:
    service, origin = root / "service", root / "origin.git"
    t0 = time.monotonic()
    clone_service(mirrors, bug, service, origin)
    cloned = time.monotonic() - t0
    script = bug.trigger
    if os.environ.get("REALBUGS_SERVICE_MODULE") == "1":
        module_source, runner = split_trigger(bug.trigger.read_text(encoding="utf-8"))
        bug = add_service_module(service, bug, module_source, root)
        script = root / "run_service.py"
        script.write_text(runner, encoding="utf-8")
    diff, tests = fix_diff(service, bug)
    interpreter, hit = build_venv(bug, python, cache, root / "venv", service)
    venv_seconds = time.monotonic() - t0 - cloned
    data = {
        "clone_seconds": round(cloned, 1), "venv_cache_hit": hit, "venv_seconds": round(venv_seconds, 1),
        "fix_diff_lines": diff.count("\n"), "test_files_left_out": tests,
    }  # fmt: skip
    svc = st.Service(
        bug=bug, root=root, service=service, origin=origin, python=interpreter, fix_diff=diff, tests_left_out=tests,
        script=script,
    )  # fmt: skip
    venv = "cached venv" if hit else "venv built"
    return Done("ok", f"cloned in {cloned:.0f} s, {venv}, fix {diff.count(chr(10))} diff lines", data, svc)


def _echo(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
