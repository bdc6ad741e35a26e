"""Run prodloop's real-bug development set: every stage of the loop on real crashes of real projects.

For each bug under bugs/ (see README.md): clone the project from its local mirror at the buggy commit with a
bare `origin`, build the service's venv (cached by its pins), capture the crash that trigger.py causes with a
real sentry-sdk into prodloop's ingest, then record, as ok / fail / skip with a reason and seconds:

  release   map_code_path resolved the event's release to the buggy commit
  top1/top3 the culprit / the first three ranked fault candidates name bug.toml's `fault`
  synth     synthesize_regression_test produced a test
  repro     that test, with plain pytest in clean checkouts, fails at buggy (with the exception) and passes at fixed
  loop      the fix's non-test diff in the working tree, then run_loop headless: steps, gates, mutation, PR branch
  own       the project's own regression test with the fix, through run_candidate_test's gates and mutate_validate

Each bug runs in its own process with a deadline (set-up, then a stage budget); results are printed as one
table with totals, the issue's bar and the first failing stage of each bug. Needs git, the mirrors
(`fetch github:owner/name` puts them in /work/.mirror) and a package index for the venvs: a developer
machine, not CI.

    python bench/realbugs_dev/run.py [--only black-1,tornado-3] [--jobs 2] [--json out.json] [--keep]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bug import Bug, discover
from _record import STAGES
from _report import render

HERE = Path(__file__).resolve().parent
_MARKER = ".realbugs-run"
_GRACE_SECONDS = 60.0  # past set-up and stage budget, before a worker is stopped from outside
_print_lock = threading.Lock()
_running: dict[str, subprocess.Popen[str]] = {}  # bug -> its worker, to be stopped on Ctrl-C


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.worker:
        return _worker_main(args)
    if importlib.util.find_spec("prodloop") is None:
        print("prodloop is not importable by this interpreter: pip install -e '.[test]' first", file=sys.stderr)
        return 2
    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    if args.capture:
        os.environ["REALBUGS_CAPTURE"] = "1"  # read by each worker's capture stage
    if args.service_module:
        os.environ["REALBUGS_SERVICE_MODULE"] = "1"  # read by each worker's set-up
    bugs, problems = discover(args.bugs_dir, only)
    for problem in problems:
        print(f"skipped {problem}", file=sys.stderr)
    if not bugs:
        print(f"no bugs to run in {args.bugs_dir}", file=sys.stderr)
        return 2
    made_workdir = args.workdir is None
    work = Path(tempfile.mkdtemp(prefix="prodloop-realbugs-")) if made_workdir else args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    print(f"{len(bugs)} bug(s), work in {work}, {args.jobs} at a time", flush=True)
    started = time.monotonic()
    pool = ThreadPoolExecutor(max_workers=max(1, args.jobs))
    try:
        results = list(pool.map(lambda bug: _run_one(bug, work, args), bugs))
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in list(_running.values()):
            _kill_tree(proc.pid)
        print(f"\ninterrupted; work left in {work}", file=sys.stderr)
        return 130
    pool.shutdown()
    print(f"\nall bugs done in {time.monotonic() - started:.0f} s\n")
    print(render(results))
    if args.json:
        args.json.write_text(json.dumps({"work": str(work), "results": results}, indent=1, default=str))
        print(f"\nraw results: {args.json}")
    if not args.keep:
        for bug in bugs:
            if (work / bug.name / _MARKER).exists():
                shutil.rmtree(work / bug.name, ignore_errors=True)
        if made_workdir:
            shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"work kept in {work}")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", help="comma-separated bug names (folders of bugs/), e.g. black-1,tornado-3")
    p.add_argument(
        "--capture", action="store_true", help="services opt in to prodloop's capture helper (structured locals)"
    )
    p.add_argument("--workdir", type=Path, help="where each bug's clone, venv and store go (default: a fresh temp dir)")
    p.add_argument("--mirrors", type=Path, default=Path("/work/.mirror"), help="<owner>+<name>/repo per project")
    p.add_argument("--keep", action="store_true", help="keep the work folders afterwards")
    p.add_argument("--jobs", type=int, default=1, help="bugs run at the same time (default 1)")
    p.add_argument("--json", type=Path, help="write every result, raw, to this file")
    p.add_argument(
        "--venv-cache", type=Path, default=Path.home() / ".cache" / "prodloop-realbugs", help="cached venvs by pins"
    )
    p.add_argument(
        "--service-module",
        action="store_true",
        help="module mode: the trigger's definitions are committed into the clone as a module of the service "
        "(as a service's own code would be), and only its batch runs as a script",
    )
    p.add_argument("--python", default="python3", help="interpreter the service venvs are made from")
    p.add_argument("--budget", type=float, default=600.0, help="seconds per bug for the stages after set-up")
    p.add_argument("--setup-timeout", type=float, default=1800.0, help="seconds per bug for clone and venv")
    p.add_argument("--bugs-dir", type=Path, default=HERE / "bugs", help=argparse.SUPPRESS)
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run this one bug in this process
    return p


def _worker_main(args: argparse.Namespace) -> int:
    from _bug import load_bug
    from _worker import run_bug

    bug = load_bug(args.bugs_dir / args.worker)
    root = args.workdir / bug.name
    run_bug(bug, root, mirrors=args.mirrors, cache=args.venv_cache, python=args.python, budget_seconds=args.budget)
    return 0


def _say(bug: str, line: str) -> None:
    with _print_lock:
        print(f"[{bug}] {line}", flush=True)


def _run_one(bug: Bug, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    root = work / bug.name
    if root.exists():
        if not (root / _MARKER).exists():
            return _dead(bug, f"{root} exists and was not made by this runner; remove it or choose another --workdir")
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / _MARKER).write_text("made by bench/realbugs_dev/run.py\n")
    command = [
        sys.executable, str(Path(__file__).resolve()), "--worker", bug.name,
        "--bugs-dir", str(args.bugs_dir.resolve()), "--workdir", str(work), "--mirrors", str(args.mirrors.resolve()),
        "--venv-cache", str(args.venv_cache.resolve()), "--python", args.python, "--budget", str(args.budget),
    ]  # fmt: skip
    deadline = args.setup_timeout + args.budget + _GRACE_SECONDS
    _say(bug.name, "started")
    with open(root / "worker.log", "wb") as log:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
        _running[bug.name] = proc
        reader = threading.Thread(target=_relay, args=(bug.name, proc), daemon=True)
        reader.start()
        killed = False
        try:
            proc.wait(timeout=deadline)
        except subprocess.TimeoutExpired:
            killed = True
            _kill_tree(proc.pid)
            proc.wait()
        except BaseException:
            _kill_tree(proc.pid)
            raise
        finally:
            _running.pop(bug.name, None)
        reader.join(timeout=5)
    if killed:
        _sweep_worktrees(root)
    return _collect(bug, root, proc.returncode, killed, deadline)


def _sweep_worktrees(root: Path) -> None:
    """prodloop's throwaway worktrees (in the temp dir) of a worker that was stopped before it removed them."""
    for base in Path(tempfile.gettempdir()).glob("prodloop-run-*"):
        try:
            gitdir = (base / "tree" / ".git").read_text()
        except OSError:
            continue
        if str(root / "service") in gitdir:
            shutil.rmtree(base, ignore_errors=True)


def _relay(bug: str, proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        _say(bug, line.rstrip())


def _collect(bug: Bug, root: Path, code: int | None, killed: bool, deadline: float) -> dict[str, Any]:
    path = root / "result.json"
    try:
        result: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        tail = (root / "worker.log").read_text(errors="replace")[-600:] if (root / "worker.log").exists() else ""
        why = f"killed at its {deadline:.0f} s deadline" if killed else f"the worker died (exit {code})"
        return _dead(bug, f"{why}: {' '.join(tail.split())[-300:]}")
    unfinished = result.get("running") or next((n for n in STAGES if n not in result["stages"]), None)
    if unfinished and (killed or code != 0):
        why = (
            f"killed at the bug's {deadline:.0f} s deadline"
            if killed
            else f"the worker died (exit {code}{_last_log_line(root)})"
        )
        stage = {"status": "fail", "reason": f"{why} in or before this stage", "seconds": None, "data": {}}
        result["stages"][unfinished] = stage
    for name in STAGES:
        result["stages"].setdefault(name, {"status": "skip", "reason": "not reached", "seconds": None, "data": {}})
    result["worker_exit"] = code
    return result


def _last_log_line(root: Path) -> str:
    try:
        lines = [ln for ln in (root / "worker.log").read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return f": {lines[-1].strip()[:200]}" if lines else ""


def _dead(bug: Bug, reason: str) -> dict[str, Any]:
    stages = {n: {"status": "skip", "reason": "not reached", "seconds": None, "data": {}} for n in STAGES}
    stages["setup"] = {"status": "fail", "reason": reason, "seconds": None, "data": {}}
    _say(bug.name, f"FAIL {reason}")
    return {"bug": bug.name, "stages": stages}


def _kill_tree(pid: int) -> None:
    """Stop the worker and every process it started (test runs live in sessions of their own), by id."""
    for child in [*_descendants(pid), pid]:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


if __name__ == "__main__":
    sys.exit(main())
