"""The crash, captured for real: prodloop's ingest on 127.0.0.1, the bug's trigger run by the service's
interpreter with a real sentry-sdk, the event stored as an issue, and a deploy of the buggy commit."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from _bug import Bug
from _record import Done, short

from prodloop.server.context import AppContext
from prodloop.server.demo import serve_in_thread
from prodloop.server.settings import load_settings
from prodloop.tools.observe.deploys import record_deploy

TRIGGER_TIMEOUT = 180.0
EVENT_WAIT = 30.0


def open_context(service: Path, data: Path, python: Path) -> AppContext:
    return AppContext.open(load_settings(repo=service, data_dir=data, service_python=python, triage={"mode": "off"}))


def service_env(roots: list[Path], **extra: str) -> dict[str, str]:
    """This process's environment without Python, virtualenv, Sentry or prodloop variables, with `roots`
    importable first (a project that is not installed is imported from its checkout)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "SENTRY_", "PRODLOOP_"))}
    env.update(PYTHONPATH=os.pathsep.join(str(r) for r in roots if r.is_dir()), PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


def import_roots(tree: Path) -> list[Path]:
    return [p for p in (tree / "src", tree) if p.is_dir()]


_WITH_HELPER = """
import runpy, sys
import sentry_sdk
import prodloop_capture

_init = sentry_sdk.init


def init(*args, **kwargs):  # the one line a service adds after its own sentry_sdk.init(...)
    result = _init(*args, **kwargs)
    prodloop_capture.install()
    return result


sentry_sdk.init = init
sys.argv = [sys.argv[1]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _with_capture_helper(python: Path, script: Path, env: dict[str, str]) -> list[str]:
    """Run the trigger as a service that opted in to prodloop's capture helper (a copy of the one file)."""
    from prodloop.server import sdk_capture

    folder = Path(tempfile.mkdtemp(prefix="realbugs-capture-"))
    shutil.copy(sdk_capture.__file__, folder / "prodloop_capture.py")
    (folder / "run_with_capture.py").write_text(_WITH_HELPER)
    env["PYTHONPATH"] = os.pathsep.join([str(folder), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return [str(python), str(folder / "run_with_capture.py"), str(script.resolve())]


def capture(ctx: AppContext, bug: Bug, service: Path, python: Path, script: Path) -> Done:
    """Run the trigger against a fresh project; the issue id is the stage's value."""
    project = ctx.store.create_project(bug.name)
    with serve_in_thread(ctx, token="realbugs-not-exposed") as port:  # noqa: S106 (loopback only)
        dsn = f"http://{project.public_key}@127.0.0.1:{port}/{project.id}"
        env = service_env(import_roots(service), SENTRY_DSN=dsn, SENTRY_RELEASE=bug.buggy_commit)
        t0 = time.monotonic()
        command = [str(python), str(script.resolve())]
        if os.environ.get("REALBUGS_CAPTURE") == "1":
            command = _with_capture_helper(python, script, env)
        try:
            done = subprocess.run(
                command, cwd=service, env=env, capture_output=True, text=True, timeout=TRIGGER_TIMEOUT
            )  # fmt: skip
            exit_code, output = done.returncode, (done.stderr or "") + (done.stdout or "")
        except subprocess.TimeoutExpired as exc:
            exit_code, output = None, f"killed after {TRIGGER_TIMEOUT:.0f} s: {exc.stderr!s}"
        trigger = {"exit_code": exit_code, "seconds": round(time.monotonic() - t0, 2), "output_tail": output[-1500:]}
        issues = _wait_for_issues(ctx, project.id)
    data: dict[str, Any] = {"trigger": trigger, "issues": [{"id": i.id, "title": i.title} for i in issues]}
    if not issues:
        last = output.strip().splitlines()[-1:] or ["no output"]
        return Done("fail", f"no event reached prodloop (trigger exit {exit_code}; {short(last[0], 160)})", data)
    wanted = bug.exception.rsplit(".", 1)[-1]
    issue = next((i for i in issues if (i.exception_type or "").rsplit(".", 1)[-1] == wanted), None)
    deploy = record_deploy(ctx.store, ctx.git(), ctx.clock, release=bug.buggy_commit, commit=bug.buggy_commit)
    data["deploy"] = deploy.model_dump()
    if issue is None:
        issue = issues[0]
        data["issue"] = issue.id
        return Done(
            "fail", f"the event is a {issue.exception_type}, not {bug.exception}: {issue.title}", data, issue.id
        )
    data["issue"] = issue.id
    return Done("ok", f"issue {issue.id}: {issue.title}", data, issue.id)


def _wait_for_issues(ctx: AppContext, project_id: int) -> list[Any]:
    """The project's issues once events stopped arriving (sentry-sdk flushes at exit; ingest is quick)."""
    deadline = time.monotonic() + EVENT_WAIT
    seen, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        issues, _ = ctx.store.list_issues(project_id=project_id, order="last_seen", limit=50)
        count = sum(i.event_count for i in issues)
        if count != seen:
            seen, stable_since = count, time.monotonic()
        elif count > 0 and time.monotonic() - stable_since > 1.0:
            return issues
        time.sleep(0.2)
    issues, _ = ctx.store.list_issues(project_id=project_id, order="last_seen", limit=50)
    return issues
