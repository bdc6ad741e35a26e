"""Stage bookkeeping for one bug: each stage ends ok, fail or skip, with a short reason and its seconds.

A stage never takes the run down: its exception becomes a failure (type and message). The results are
written to `result.json` after every stage, so a bug that is killed at its deadline still reports what it
did, and which stage it was in.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Status = Literal["ok", "fail", "skip"]
STAGES = ("setup", "capture", "release", "top1", "top3", "synth", "repro", "loop", "own")


@dataclass
class Done:
    """What a stage function returns: its verdict, the facts behind it, and a value later stages use."""

    status: Status
    reason: str
    data: dict[str, Any] = field(default_factory=dict)
    value: Any = None


def short(text: object, limit: int = 240) -> str:
    one = " ".join(str(text).split())
    return one if len(one) <= limit else one[: limit - 1] + "…"


class Recorder:
    def __init__(self, bug: str, out: Path, echo: Callable[[str], None] = print) -> None:
        self.out = out
        self.echo = echo
        self.started = time.monotonic()
        self.deadline: float | None = None
        self.result: dict[str, Any] = {"bug": bug, "stages": {}, "running": None, "seconds": 0.0}
        self.values: dict[str, Any] = {}

    def start_budget(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.result["budget_seconds"] = seconds

    def status(self, name: str) -> Status | None:
        stage = self.result["stages"].get(name)
        return stage["status"] if stage else None

    def stage(self, name: str, fn: Callable[[], Done], *, needs: tuple[str, ...] = ()) -> Any:
        """Run one stage (unless a stage it needs did not pass, or the bug's budget is spent); its value."""
        blocked = [n for n in needs if self.status(n) != "ok"]
        if blocked:
            return self._save(name, Done("skip", f"{blocked[0]} did not pass"), 0.0)
        if self.deadline is not None and time.monotonic() > self.deadline:
            spent = self.result.get("budget_seconds", 0)
            return self._save(name, Done("skip", f"the bug's {spent:.0f} s budget was spent before this stage"), 0.0)
        self.result["running"] = name
        self._write()
        t0 = time.monotonic()
        try:
            done = fn()
        except Exception as exc:  # a stage's failure is a result, never the end of the run
            where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            done = Done(
                "fail",
                short(f"{type(exc).__name__}: {exc}"),
                {"where": f"{Path(where.filename).name}:{where.lineno}" if where else None},
            )
        return self._save(name, done, time.monotonic() - t0)

    def _save(self, name: str, done: Done, seconds: float) -> Any:
        self.result["stages"][name] = {
            "status": done.status, "reason": short(done.reason), "seconds": round(seconds, 2), "data": done.data,
        }  # fmt: skip
        self.result["running"] = None
        self.values[name] = done.value
        self._write()
        mark = {"ok": "ok  ", "fail": "FAIL", "skip": "skip"}[done.status]
        self.echo(f"{mark} {name:<8} {seconds:7.1f}s  {short(done.reason, 160)}")
        return done.value

    def _write(self) -> None:
        self.result["seconds"] = round(time.monotonic() - self.started, 2)
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.result, indent=1, default=str))
        tmp.replace(self.out)
