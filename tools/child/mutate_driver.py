"""prodloop's mutation runner, run in the service's interpreter as `python mutate_driver.py SPEC.json`.

Mutants come in the spec, made by mutmut's own generator on prodloop's side
(`child/mutate_generate.py`), so the service needs no mutmut here. Each mutant runs in a
child forked from a parent that has imported pytest but none
of the service's code, so no state (memo caches, module globals) leaks between mutants;
the child imports the mutated module through an import hook and runs the chosen tests
with `pytest.main(["-x", ...])`. A child past its deadline is killed: a timeout. Progress
goes to stdout as JSON lines; the verdicts to the output file.

A surviving mutant is also asked whether the tests could have seen it at all: every run is
traced at the boundary between the test files and the code they call (each call a test makes:
its return value or raised exception, and its arguments' state when it returns), field by
field (`2:prune:self.last_active`), each field's value hashed. The baseline runs three times; a
field whose value differs between any two of those runs (a timestamp, a port, a random id) says
nothing and is left out. A survivor whose every remaining field equals the unmutated run's changed nothing the
tests' calls returned, raised or left in their arguments, on the tests' inputs: it is
reported as `unexercised` rather than `survived` (no input of the test tells it apart; a
different input might). Effects a test could only see some other way (files, module globals)
are not traced: such a survivor counts as unexercised. When the clean runs make different calls,
as many fields vary as hold still, the trace outgrew its bound or tracing was lost, every survivor
stays `survived`.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.abc
import importlib.util
import json
import os
import re
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

# Exit codes of a child: pytest's, plus ours for a mutant that could not be loaded and for a run whose
# tests were skipped rather than passed (pytest's 0 then proves nothing).
_LOAD_FAILED = 40
_NOTHING_PASSED = 41


class _Outcomes:
    """Counts what really happened in a child's run (a skipped test must never read as a pass). Observed in
    `pytest_runtest_logreport`, as the probe observes the gates' runs."""

    def __init__(self) -> None:
        self.passed = 0
        self.skipped = 0

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when == "call" and report.passed:
            self.passed += 1
        elif report.skipped:
            self.skipped += 1


class _Observer:
    """Folds what the tests saw of the code they call in one run into a digest (see the module's docstring)."""

    def __init__(self, tests: list[str]) -> None:
        self.tests = {os.path.realpath(path) for path in tests}
        self.known: dict[str, bool] = {}  # code file name -> is it a test file (resolved once)
        self.raised: dict[int, str] = {}
        self.fields: dict[str, str] = {}  # "call:function:path" -> hash of the value seen there
        self.calls = 0
        self.truncated = False

    def start(self) -> None:
        threading.settrace(self._call)
        sys.settrace(self._call)

    def intact(self) -> bool:
        return sys.gettrace() == self._call

    def _call(self, frame: FrameType, event: str, arg: Any) -> Any:
        # A call the test file makes into other code (the service, or asyncio.run running it): what the test saw.
        caller = frame.f_back
        if caller is None or not self._is_test(caller.f_code.co_filename) or self._is_test(frame.f_code.co_filename):
            return None
        return self._local

    def _is_test(self, filename: str) -> bool:
        known = self.known.get(filename)
        if known is None:
            known = self.known[filename] = os.path.realpath(filename) in self.tests
        return known

    def _local(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "exception":
            self.raised[id(frame)] = f"{type(arg[1]).__qualname__}: {_shape(arg[1], 1)}"
        elif event == "line":
            self.raised.pop(id(frame), None)  # caught inside the call: not its outcome
        elif event == "return":
            code = frame.f_code
            raised = self.raised.pop(id(frame), None)
            leaves: list[tuple[str, str]] = []
            if raised is not None and arg is None:
                leaves.append(("raise", raised))
            else:
                _leaves(arg, 3, "return", leaves)
            for name in code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]:
                _leaves(frame.f_locals.get(name), 3, name, leaves)
            prefix = f"{self.calls}:{code.co_name}:"
            self.calls += 1
            for path, text in leaves:
                if len(self.fields) >= _MAX_FIELDS:
                    self.truncated = True  # what is not recorded cannot be compared: nothing is called unexercised
                    break
                self.fields[prefix + path] = hashlib.sha1(text.encode(errors="replace")).hexdigest()[:16]  # noqa: S324
        return self._local


# Where an object lives says nothing of what the code did: `<X object at 0x7f..>`, unittest.mock's `id='1402..'`.
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+| id='\d+'")
_MAX_FIELDS = 50_000


def _leaves(value: Any, depth: int, path: str, out: list[tuple[str, str]]) -> None:
    """(path, text) of every leaf of a value: containers item by item, plain objects field by field."""
    try:
        if value is None or isinstance(value, (bool, int, float, complex, str, bytes)) or depth <= 0:
            out.append((path, _shape(value, depth)))
        elif isinstance(value, dict):
            out.append((path, f"dict/{len(value)}"))
            for key, item in list(value.items())[:50]:
                _leaves(item, depth - 1, f"{path}[{_shape(key, 1)}]", out)
        elif isinstance(value, (list, tuple)):
            out.append((path, f"{type(value).__name__}/{len(value)}"))
            for i, item in enumerate(list(value)[:50]):
                _leaves(item, depth - 1, f"{path}[{i}]", out)
        elif getattr(type(value), "__repr__", None) is getattr(object, "__repr__", None) and hasattr(value, "__dict__"):
            out.append((path, type(value).__qualname__))
            for key, item in list(vars(value).items())[:50]:
                _leaves(item, depth - 1, f"{path}.{key}", out)
        else:
            out.append((path, _shape(value, depth)))
    except Exception as exc:  # a value whose parts cannot be read is still a value: its class and the failure
        out.append((path, f"{type(value).__qualname__}<unreadable: {type(exc).__name__}>"))


def _shape(value: Any, depth: int) -> str:
    """A bounded, address-free text of a value: containers item by item, plain objects by their fields."""
    try:
        if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
            return repr(value)[:300]
        if depth <= 0:
            return type(value).__qualname__
        if isinstance(value, dict):
            items = list(value.items())[:50]
            return "{" + ", ".join(f"{_shape(k, depth - 1)}: {_shape(v, depth - 1)}" for k, v in items) + "}"
        if isinstance(value, (list, tuple)):
            return f"{type(value).__name__}[" + ", ".join(_shape(v, depth - 1) for v in list(value)[:50]) + "]"
        if isinstance(value, (set, frozenset)):
            return "set{" + ", ".join(sorted(_shape(v, depth - 1) for v in list(value)[:50])) + "}"
        if getattr(type(value), "__repr__", None) is getattr(object, "__repr__", None) and hasattr(value, "__dict__"):
            return f"{type(value).__qualname__}({_shape(dict(vars(value)), depth - 1)})"
        return _ADDRESS.sub("", repr(value))[:500]
    except Exception as exc:  # a value whose repr fails is still a value: its class and the failure
        return f"{type(value).__qualname__}<unprintable: {type(exc).__name__}>"


def main() -> int:
    with open(sys.argv[1]) as fh:
        spec = json.load(fh)
    import pytest  # before the repository's folders go on sys.path: none of its files may stand in for pytest's

    sys.path[:0] = [p for p in (os.path.join(spec["root"], "src"), spec["root"]) if os.path.isdir(p)]
    os.chdir(spec["root"])

    # Mutants were made on prodloop's side (`child/mutate_generate.py`): this interpreter needs only pytest.
    mutants: list[dict[str, Any]] = [{**m, "source": spec["sources"][m["path"]]} for m in spec["mutants"]]
    total = len(mutants)
    _emit({"event": "generated", "total": total})
    args = ["-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-o", "addopts=", *spec["tests"]]

    # Most of a child's time is pytest importing every installed plugin again. When the tests pass without
    # autoloaded plugins, every mutant runs that way too (same baseline, same verdicts, several times faster).
    test_files = [os.path.join(spec["root"], t.split("::")[0]) for t in spec["tests"]]
    traces = spec["traces"]
    os.makedirs(traces, exist_ok=True)
    ctx = {"tests": test_files, "traces": traces}
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    baseline_start = time.monotonic()
    clean = _run_child(None, args, pytest, spec["baseline_timeout"], ctx, "baseline")
    if clean != 0:
        del os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"]
        baseline_start = time.monotonic()
        clean = _run_child(None, args, pytest, spec["baseline_timeout"], ctx, "baseline")
    baseline = time.monotonic() - baseline_start
    if clean != 0:
        _emit({"event": "clean_failed", "exit_code": clean})
        _emit({"event": "result", "clean_exit_code": clean, "results": []})
        return 0
    timeout = max(spec["min_timeout"], baseline * spec["timeout_multiplier"])
    # Three clean runs: a field that differs between any two of them (a port, a Date header, a time) is noise. Two
    # runs that happen to agree (the same second) would let noise in a mutant's run read as a behaviour change.
    # Each starts on a new second of the wall clock, so a value with one-second resolution (an HTTP Date header, a
    # timestamp) is seen to vary even when the runs are fast: else its change in a mutant's later run looks like one.
    for key in ("baseline-again", "baseline-third"):
        time.sleep(1.0 - time.time() % 1.0 + 0.01)
        _run_child(None, args, pytest, timeout, ctx, key)
    clean_traces = [_trace(traces, key) for key in ("baseline", "baseline-again", "baseline-third")]
    stable: dict[str, str] = {}
    unstable: set[str] = set()
    if all(t is not None and t["calls"] == clean_traces[0]["calls"] > 0 for t in clean_traces):  # type: ignore[index]
        runs = [t["fields"] for t in clean_traces if t is not None]
        stable = {k: v for k, v in runs[0].items() if all(r.get(k) == v for r in runs[1:])}
        unstable = set().union(*runs) - set(stable)
    # Left-out fields must stay the exception: when as many vary as hold still (or the calls themselves vary),
    # the clean runs say too little, and every survivor is scored.
    observable = bool(stable) and len(unstable) < len(stable)
    results: list[dict[str, Any]] = []
    running: dict[int, tuple[int, float]] = {}
    overdue: list[int] = []
    queue = list(range(total))
    done = 0
    while queue or running:
        while queue and len(running) < spec["workers"]:
            index = queue.pop(0)
            pid = _fork_child(mutants[index], args, pytest, ctx, str(index))
            running[pid] = (index, time.monotonic() + timeout)
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            now = time.monotonic()
            for child, (index, deadline) in list(running.items()):
                if now > deadline:
                    os.kill(child, signal.SIGKILL)
                    os.waitpid(child, 0)
                    del running[child]
                    overdue.append(index)
            time.sleep(0.002)
            continue
        if pid not in running:
            continue
        index, _ = running.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        verdict = _status(code)
        if verdict == "survived" and observable and _unchanged(_trace(traces, str(index)), stable, unstable):
            verdict = "unexercised"
        results.append(_verdict(mutants[index], verdict, code))
        done += 1
        _emit({"event": "progress", "done": done, "total": total})
    # A mutant over its deadline among parallel runs may only have been starved of CPU (a loaded machine), and a
    # timeout counts as killed: each runs again alone with three times the budget before it is called one.
    for index in overdue:
        code = _run_child(mutants[index], args, pytest, timeout * 3, ctx, str(index))
        verdict = "timeout" if code == -9 else _status(code)
        if verdict == "survived" and observable and _unchanged(_trace(traces, str(index)), stable, unstable):
            verdict = "unexercised"
        results.append(_verdict(mutants[index], verdict, None if code == -9 else code))
        done += 1
        _emit({"event": "progress", "done": done, "total": total})
    plugins = "off" if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD") else "on"
    summary = {
        "baseline_seconds": baseline,
        "timeout_seconds": timeout,
        "plugin_autoload": plugins,
        "observable": observable,
        "observed_calls": clean_traces[0]["calls"] if clean_traces[0] else 0,
        "unstable_fields": len(unstable),
    }
    # The verdicts go to prodloop on stdout, a pipe no mutant's test can reach (a child's stdout is /dev/null).
    _emit({"event": "result", "clean_exit_code": 0, **summary, "results": results})
    return 0


def _status(code: int) -> str:
    statuses = {0: "survived", 1: "killed", 3: "killed", 5: "no_tests", _NOTHING_PASSED: "no_tests"}
    return statuses.get(code, "suspicious")


def _verdict(mutant: dict[str, Any], status: str, code: int | None) -> dict[str, Any]:
    diff = "".join(
        difflib.unified_diff(
            mutant["source"].splitlines(keepends=True),
            mutant["code"].splitlines(keepends=True),
            f"a/{mutant['path']}",
            f"b/{mutant['path']}",
            n=1,
        )
    )
    changed = next(
        (
            i + 1
            for i, (a, b) in enumerate(zip(mutant["source"].splitlines(), mutant["code"].splitlines(), strict=False))
            if a != b
        ),
        None,
    )
    return {"path": mutant["path"], "line": changed, "status": status, "exit_code": code, "diff": diff}


class _Mutated(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, name: str, path: str, code: str) -> None:
        self.name, self.path, self.code = name, path, code

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != self.name:
            return None
        is_package = self.path.endswith("__init__.py")
        spec = importlib.util.spec_from_loader(fullname, self, origin=self.path, is_package=is_package)
        if spec is not None:
            spec.has_location = True
            if is_package:
                spec.submodule_search_locations = [os.path.dirname(self.path)]
        return spec

    def create_module(self, spec: Any) -> None:
        return None

    def exec_module(self, module: Any) -> None:
        module.__file__ = self.path
        exec(compile(self.code, self.path, "exec"), module.__dict__)  # noqa: S102 (the mutant under test)


def _trace(folder: str, key: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(folder, f"{key}.json")) as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    ok = isinstance(data, dict) and data.get("intact") is True and isinstance(data.get("fields"), dict)
    return data if ok else None


def _unchanged(trace: dict[str, Any] | None, stable: dict[str, str], unstable: set[str]) -> bool:
    """Every stable field as in the baseline, and no field the baseline never had."""
    if trace is None:
        return False
    fields = trace["fields"]
    return all(fields.get(k) == v for k, v in stable.items()) and all(k in stable or k in unstable for k in fields)


def _fork_child(mutant: dict[str, Any] | None, args: list[str], pytest: Any, ctx: dict[str, Any], key: str) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 99
    observer = _Observer(ctx["tests"])
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        if mutant is not None:
            path = os.path.join(os.getcwd(), mutant["path"])
            sys.meta_path.insert(0, _Mutated(mutant["module"], path, mutant["code"]))
        outcomes = _Outcomes()
        observer.start()
        code = int(pytest.main(args, plugins=[outcomes]))
        intact = observer.intact()
        sys.settrace(None)
        if code == 0 and (outcomes.passed == 0 or outcomes.skipped):
            code = _NOTHING_PASSED
        if code == 0:
            trace = {"fields": observer.fields, "calls": observer.calls, "intact": intact and not observer.truncated}
            _write(os.path.join(ctx["traces"], f"{key}.json"), trace)
    except BaseException:
        code = _LOAD_FAILED
    finally:
        os._exit(code)


def _run_child(
    mutant: dict[str, Any] | None, args: list[str], pytest: Any, timeout: float, ctx: dict[str, Any], key: str
) -> int:
    pid = _fork_child(mutant, args, pytest, ctx, key)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return -9
        time.sleep(0.002)


def _emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _write(path: str, data: dict[str, Any]) -> None:
    with open(path, "w") as fh:
        json.dump(data, fh)


if __name__ == "__main__":
    sys.exit(main())
