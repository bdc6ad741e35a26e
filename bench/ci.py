"""CI signals at scale: ingest of a 10,000-test JUnit file (1% failing with pytest tracebacks, 1% skipped, some
reruns) into a fresh store, and `ci select` of the tests guarding the last commit of a 10,000-commit / 2,000-file
repository (bench/_code_path_repo.py, cached under /tmp). Prints figures.

    python bench/ci.py [--tests 10000] [--commits 10000] [--files 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _code_path_repo import generated_repo, git

from prodloop.server.clock import FixedClock
from prodloop.server.context import AppContext
from prodloop.server.settings import load_settings
from prodloop.tools.observe.ci_select import select_tests
from prodloop.tools.observe.ci_signals import ingest_junit


def junit(tests: int, seed: int) -> bytes:
    rng = random.Random(seed)
    parts = ['<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">']
    for n in range(tests):
        cls, name = f"tests.test_mod{n // 50}", f"test_case_{n}"
        roll = rng.random()
        if roll < 0.01:
            body = (
                f"def test_case_{n}():\n&gt;       assert compute({n}) == {n + 1}\n\npkg/mod{n % 97}.py:{n % 300 + 1}: "
                f"in compute\n    return table[key]\nE   KeyError: {n}\n\npkg/mod{n % 97}.py:{n % 300 + 1}: KeyError"
            )
            parts.append(f'<testcase classname="{cls}" name="{name}" time="0.01"><failure message="KeyError: {n}">'
                         f"{body}</failure></testcase>")  # fmt: skip
        elif roll < 0.02:
            parts.append(f'<testcase classname="{cls}" name="{name}" time="0"><skipped message="later"/></testcase>')
        elif roll < 0.025:
            parts.append(f'<testcase classname="{cls}" name="{name}" time="0.2"><rerunFailure message="timeout">'
                         "E TimeoutError</rerunFailure></testcase>")  # fmt: skip
        else:
            parts.append(f'<testcase classname="{cls}" name="{name}" time="{rng.random() / 100:.4f}"/>')
    parts.append("</testsuite></testsuites>")
    return "".join(parts).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=10_000)
    parser.add_argument("--commits", type=int, default=10_000)
    parser.add_argument("--files", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="prodloop-bench-ci-") as tmp:
        root = Path(tmp) / "svc"
        root.mkdir()
        ctx = AppContext.open(load_settings(repo=root, data_dir=Path(tmp) / "data"), clock=FixedClock())
        data = junit(args.tests, 1)
        times = []
        for r in range(args.rounds):
            started = time.perf_counter()
            report = ingest_junit(ctx.store, ctx.settings, ctx.clock, data, commit=f"{r:040x}", job="unit")
            times.append(time.perf_counter() - started)
        ctx.close()
        print(f"ingest of {args.tests:,} tests ({len(data) / 1e6:.1f} MB, {report.failed} failing, "
              f"{len(report.flaky)} flaky): p50 {statistics.median(times) * 1000:.0f} ms "
              f"({args.tests / statistics.median(times):,.0f} tests/s) over {args.rounds} runs")  # fmt: skip
    repo, built = generated_repo(args.commits, args.files)
    if built is not None:
        print(f"built the {args.commits:,}-commit repository in {built:.0f} s")
    base = git(repo, "rev-parse", "HEAD~1").strip()
    with tempfile.TemporaryDirectory(prefix="prodloop-bench-ci-store-") as tmp:
        ctx = AppContext.open(load_settings(repo=repo, data_dir=Path(tmp)))
        times = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            selection = select_tests(ctx.store, ctx.git(), ctx.settings, base=base)
            times.append(time.perf_counter() - started)
        ctx.close()
    print(f"ci select on {args.commits:,} commits / {args.files:,} files (last commit: {len(selection.changed)} "
          f"changed files): {selection.selected} of {selection.test_files} test files; first "
          f"{times[0] * 1000:.0f} ms, then p50 {statistics.median(times[1:] or times) * 1000:.0f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
