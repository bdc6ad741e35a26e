"""A pytest plugin prodloop loads into the service's own test runs (`PYTEST_PLUGINS=prodloop_probe`).

It runs in the service's interpreter, so it uses only the standard library, pytest and, when asked
for coverage, coverage.py. Its state lives on one plugin object (`Probe`, also `config.stash[PROBE]`),
registered at configure time, the way pytest's own plugins keep theirs; outcomes are observed in
`pytest_runtest_logreport`, as the mutation driver observes its own, exception chains in
`pytest_runtest_makereport`. Driven by environment variables,
each taken out of the environment when the probe starts:
  PRODLOOP_PROBE_FD       the write end of a pipe the parent reads: outcomes, exception chains, coverage (JSON)
  PRODLOOP_SHUFFLE_SEED   run the collected tests in an order shuffled with this seed
  PRODLOOP_RUN_LAST       this test (node id; all its parameter cases) runs after every other collected test
  PRODLOOP_COVER_FILE     measure line coverage of these files (absolute paths, os.pathsep-separated)
  PRODLOOP_WATCH_ROOT     record exceptions raised in frames under this folder during each test's call,
                          also those a framework catches (a web handler's error turned into a 500)
"""

from __future__ import annotations

import json
import os
import random
import traceback
from typing import Any

import pytest


class _LineTracer:
    """Executed lines of a few files with the standard library's tracer, where coverage.py is not installed."""

    def __init__(self, files: list[str]) -> None:
        self.files = {os.path.realpath(f) for f in files}
        self.lines: dict[str, set[int]] = {}
        self._known: dict[str, str | None] = {}

    def _global(self, frame: Any, event: str, arg: Any) -> Any:
        name = frame.f_code.co_filename
        real = self._known.get(name, "")
        if real == "":
            path = os.path.realpath(name)
            real = self._known[name] = path if path in self.files else None
        if real is None:
            return None
        hits = self.lines.setdefault(real, set())
        hits.add(frame.f_lineno)

        def local(frame: Any, event: str, arg: Any) -> Any:
            if event == "line":
                hits.add(frame.f_lineno)
            return local

        return local

    def start(self) -> None:
        import sys
        import threading

        threading.settrace(self._global)
        sys.settrace(self._global)

    def stop(self) -> None:
        import sys
        import threading

        sys.settrace(None)
        threading.settrace(None)

    def measured(self) -> dict[str, list[int]]:
        return {name: sorted(lines) for name, lines in self.lines.items()}


def _chain(exc: BaseException | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen = set()
    while exc is not None and id(exc) not in seen and len(out) < 10:
        seen.add(id(exc))
        frames = [
            {"filename": f.filename, "lineno": f.lineno, "function": f.name}
            for f in traceback.extract_tb(exc.__traceback__)
        ]
        out.append(
            {
                "type": type(exc).__name__,
                "qualified_type": type(exc).__module__ + "." + type(exc).__qualname__,
                "message": str(exc)[:500],
                "frames": frames[-50:],
            }
        )
        exc = exc.__cause__ or exc.__context__
    return out


class _RaiseWatcher:
    """Exceptions raised or passing through frames under `root` while one test runs (type, file, line)."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/") + "/"
        self.seen: dict[tuple[str, str, int], dict[str, Any]] = {}

    def _global(self, frame: Any, event: str, arg: Any) -> Any:
        if not frame.f_code.co_filename.startswith(self.root):
            return None
        return self._local

    def _local(self, frame: Any, event: str, arg: Any) -> Any:
        if event == "exception" and len(self.seen) < 200:
            name = arg[0].__name__ if isinstance(arg, tuple) and arg and isinstance(arg[0], type) else "?"
            key = (name, frame.f_code.co_filename, frame.f_lineno)
            self.seen.setdefault(
                key, {"type": name, "filename": key[1], "lineno": key[2], "function": frame.f_code.co_name}
            )
        return self._local


class Probe:
    """The plugin object: one per pytest session, its state on itself (reachable as `config.stash[PROBE]`)."""

    def __init__(self) -> None:
        self.results: dict[str, Any] = {}
        self.cov: Any = None
        settings = _TAKEN
        self.seed, self.last = settings["PRODLOOP_SHUFFLE_SEED"], settings["PRODLOOP_RUN_LAST"]
        self.watch_root = settings["PRODLOOP_WATCH_ROOT"]
        self.channel = _CHANNEL
        target = settings["PRODLOOP_COVER_FILE"]
        if target:
            try:
                import coverage
            except ImportError:
                self.cov = _LineTracer(target.split(os.pathsep))
            else:
                self.cov = coverage.Coverage(include=target.split(os.pathsep), data_file=None, branch=False)
            self.cov.start()

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            text = str(getattr(report, "longrepr", "") or "")
            last = next((line for line in reversed(text.splitlines()) if line.strip()), "")
            self.results.setdefault("_collect_errors", []).append(f"{report.nodeid or '<session>'}: {last[:200]}")

    def pytest_collection_modifyitems(self, session: Any, config: Any, items: list[Any]) -> None:
        seed, last = self.seed, self.last
        if seed:
            random.Random(int(seed)).shuffle(items)  # noqa: S311 (test order, not security)
        if last:  # after every other test: whatever state they leave behind, the candidate meets it
            items.sort(key=lambda item: item.nodeid == last or item.nodeid.startswith(last + "["))
        if seed or last:
            self.results["_order"] = [item.nodeid for item in items]
        self.results["_collected"] = [item.nodeid for item in items]

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item: Any) -> Any:
        import sys
        import threading

        root = self.watch_root
        if not root or self.cov is not None:
            yield
            return
        watcher = _RaiseWatcher(root)
        threading.settrace(watcher._global)
        sys.settrace(watcher._global)
        try:
            yield
        finally:
            sys.settrace(None)
            threading.settrace(None)
            self.results.setdefault(item.nodeid, {})["raised"] = list(watcher.seen.values())

    def pytest_runtest_makereport(self, item: Any, call: Any) -> None:
        """Each phase's exception chain (the report's text has no types or frames to read)."""
        if call.excinfo is not None and call.when in ("setup", "call", "teardown"):
            entry = self.results.setdefault(item.nodeid, {})
            entry.setdefault("phases", {})[call.when] = _chain(call.excinfo.value)

    def pytest_runtest_logreport(self, report: Any) -> None:
        """Each test's outcome, observed in the hook the mutation driver observes its own in: failed in the call
        is `failed`, failed in set-up or teardown is `error`, a skip or an expected failure is `skipped`."""
        entry = self.results.setdefault(report.nodeid, {})
        outcome = entry.setdefault("outcome", {"outcome": "passed", "seconds": 0.0, "message": ""})
        outcome["seconds"] += float(getattr(report, "duration", 0.0) or 0.0)
        if outcome["outcome"] != "passed":
            return  # the first failure or skip speaks for the test
        if report.failed:
            outcome["outcome"] = "failed" if report.when == "call" else "error"
            crash = getattr(getattr(report, "longrepr", None), "reprcrash", None)
            outcome["message"] = str(getattr(crash, "message", "") or report.longreprtext.strip()[-500:])[:500]
        elif report.skipped:
            outcome["outcome"] = "skipped"
            longrepr = report.longrepr
            outcome["message"] = str(longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else "")[:500]

    def pytest_unconfigure(self, config: Any) -> None:
        lines: dict[str, list[int]] = {}
        if self.cov is not None:
            self.cov.stop()
            if isinstance(self.cov, _LineTracer):
                lines = self.cov.measured()
            else:
                data = self.cov.get_data()
                lines = {name: sorted(data.lines(name) or []) for name in data.measured_files()}
        if self.channel is not None:
            payload = json.dumps({"results": self.results, "coverage": lines}).encode()
            view = memoryview(payload)
            while view:
                view = view[os.write(self.channel, view) :]
            os.close(self.channel)


_SETTINGS = (
    "PRODLOOP_PROBE_FD", "PRODLOOP_SHUFFLE_SEED", "PRODLOOP_RUN_LAST", "PRODLOOP_COVER_FILE", "PRODLOOP_WATCH_ROOT",
    "PYTEST_PLUGINS",
)  # fmt: skip


def _hidden(fd: str) -> int | None:
    """The result pipe's write end on a free descriptor drawn at random, not inherited by the test's children."""
    if not fd.isdigit():
        return None
    draw = random.SystemRandom()
    for _ in range(50):
        target = draw.randrange(300, 1000)
        try:
            os.fstat(target)
        except OSError:
            os.dup2(int(fd), target, inheritable=False)
            os.close(int(fd))
            return target
    return int(fd)


# What prodloop asked for, taken out of the environment as soon as this module is imported (before any conftest.py
# of the repository): no test sees a marker of the probe, nor the pipe's number (it moves to a random descriptor).
# Code in the test's own process can still find it (`/proc/self/fd`, the plugin manager): the hermetic gate refuses
# the ways a test would, and SECURITY.md says what remains.
_TAKEN = {name: os.environ.pop(name, "") for name in _SETTINGS}
_CHANNEL = _hidden(_TAKEN["PRODLOOP_PROBE_FD"])
PROBE = pytest.StashKey[Probe]()


def pytest_configure(config: Any) -> None:
    probe = Probe()
    config.stash[PROBE] = probe
    config.pluginmanager.register(probe, "prodloop-probe-state")
