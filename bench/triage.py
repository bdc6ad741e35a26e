"""`triage_signals` over a large store: `--issues` issues and `--events` events over the 14-day baseline, most at a
steady rate, `--spikes` of them rising sharply in the last hours (those get their events read, causes sought and
their code path mapped). Prints the time of a full pass, cold (fresh process caches) and warm, against the goal.

    python bench/triage.py                      # 100k events, 1k issues, 20 spikes
    python bench/triage.py --events 20000 --issues 200
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from prodloop.server.clock import FixedClock
from prodloop.server.context import AppContext
from prodloop.server.settings import load_settings
from prodloop.server.store.records import EventRecord, FrameRef
from prodloop.tools.observe.triage import triage_signals

GOAL_SECONDS = 1.0
DAY = 86400.0
NOW = 1_780_000_000.0


def _fill(ctx: AppContext, args: argparse.Namespace, rng: random.Random) -> None:
    project = ctx.store.create_project("bench")
    spikes = set(rng.sample(range(args.issues), args.spikes))
    batch: list[EventRecord] = []
    for n in range(args.events):
        issue = n % args.issues
        at = NOW - rng.random() * (5 * 3600 if issue in spikes and rng.random() < 0.8 else 14 * DAY)
        frame = FrameRef(f"acme/mod{issue % 50}.py", f"acme.mod{issue % 50}", f"f{issue}")
        payload = {"transaction": f"/route/{issue % 40}", "tags": [["tenant", f"t{rng.randrange(30)}"]],
                   "contexts": {"runtime": {"name": "CPython", "version": "3.12.1"}},
                   "exception": {"values": [{"type": "KeyError", "stacktrace": {"frames": [
                       {"filename": frame.filename, "module": frame.module, "function": frame.function,
                        "in_app": True}]}}]}}  # fmt: skip
        batch.append(EventRecord(
            project_id=project.id, event_id=f"{rng.getrandbits(128):032x}", fingerprint=f"fp{issue}",
            title=f"KeyError: 'k{issue}'", exception_type="KeyError", culprit=f"{frame.module} in f{issue}",
            culprit_module=frame.module, culprit_function=frame.function, culprit_filename=frame.filename,
            timestamp=at, received=at, release=f"acme@1.{int((NOW - at) // (3 * DAY))}", environment="production",
            level="error", user_hash=f"{rng.randrange(20_000):x}", source="bench", payload=json.dumps(payload),
            frames=(frame,),
        ))  # fmt: skip
        if len(batch) == 5_000:
            ctx.store.write_events(batch)
            batch = []
    ctx.store.write_events(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--issues", type=int, default=1_000)
    parser.add_argument("--spikes", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"prodloop triage bench: Python {sys.version.split()[0]}; {args.events:,} events, {args.issues:,} issues, "
          f"{args.spikes} rising")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="prodloop-bench-triage-") as data:
        ctx = AppContext.open(load_settings(repo=Path.cwd(), data_dir=Path(data)), clock=FixedClock(at=NOW))
        try:
            t0 = time.perf_counter()
            _fill(ctx, args, random.Random(3))
            print(f"  stored in {time.perf_counter() - t0:.1f} s")
            times = []
            report = None
            for _ in range(args.runs):
                t0 = time.perf_counter()
                report = triage_signals(ctx.store, ctx.git(), ctx.settings, ctx.clock, limit=1_000)
                times.append(time.perf_counter() - t0)
            assert report is not None
            significant = sum(s.onset.significant for s in report.signals)
            print(f"  {len(report.signals)} issues triaged: {significant} significant rises (of {args.spikes} made), "
                  f"{report.actionable} actionable")  # fmt: skip
            p50 = statistics.median(times)
            print(f"  full pass: first {times[0]:.2f} s, p50 {p50:.2f} s over {args.runs} runs   goal <= "
                  f"{GOAL_SECONDS:.0f} s (achieved/goal {p50 / GOAL_SECONDS:.2f}, "
                  f"{'met' if p50 <= GOAL_SECONDS else 'MISSED'})")  # fmt: skip
        finally:
            ctx.close()


if __name__ == "__main__":
    main()
