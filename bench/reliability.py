"""`query_reliability_history` speed at scale, and what session and transaction items cost at ingest.

1. A store with `--events` error events (~1,000 issues whose in-app frames name the files of a generated
   repository of `--commits` commits; see `_code_path_repo.py`), `--session-updates` session updates (as request-mode
   aggregates and application-mode sessions, over 90 days and 20 releases), 100k transactions and `--deploys` deploys of
   the repository's commits. Then the history of one crash-path file, its folder and a function: cold (a fresh
   `GitRepo`, empty caches) and warm (one `GitRepo` reused).
2. Ingest cost: parsing and counting one `sessions` aggregate item and one `transaction` item (what the endpoint does
   off the event loop), per item.

Run from the repository root:

    python bench/reliability.py                        # 100k events, 1M session updates, 1k deploys, 10k commits
    python bench/reliability.py --events 10000 --session-updates 100000 --deploys 100 --commits 1000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from prodloop.server.clock import FixedClock
from prodloop.server.context import AppContext
from prodloop.server.ingest.pipeline import EventProcessor
from prodloop.server.settings import load_settings
from prodloop.server.store.records import HOUR, EventRecord, FrameRef, Health, SessionCounts, TransactionSample
from prodloop.tools.engine.git_repo import GitRepo
from prodloop.tools.observe.reliability import query_reliability_history

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _code_path_repo import TARGETS, generated_repo, git

GOAL_WARM_P50_MS = 50.0
GOAL_COLD_P50_MS = 300.0
DAY = 86400.0


def _fill(ctx: AppContext, repo: Path, args: argparse.Namespace, rng: random.Random) -> None:
    now = ctx.clock.now()
    project = ctx.store.create_project("bench")
    files = [f for f in git(repo, "ls-files").split() if f.endswith(".py") and not f.startswith("tests/")]
    hot = list(TARGETS)
    releases = [f"acme@1.{n}.0" for n in range(20)]
    started = time.perf_counter()
    for first in range(0, args.events, 5_000):
        batch = []
        for _ in range(first, min(first + 5_000, args.events)):
            issue = rng.randrange(1_000)
            path = hot[issue % len(hot)] if issue < 60 else files[issue % len(files)]
            at = now - rng.random() * 90 * DAY
            batch.append(
                EventRecord(
                    project_id=project.id, event_id=f"{rng.getrandbits(128):032x}", fingerprint=f"fp{issue}",
                    title=f"KeyError: 'k{issue}'", exception_type="KeyError", culprit=f"{path} in f{issue}",
                    culprit_module=None, culprit_function=f"f{issue}", culprit_filename=path, timestamp=at,
                    received=at, release=releases[int((at - now + 90 * DAY) / (4.5 * DAY)) % 20],
                    environment="production", level="error", user_hash=f"{rng.randrange(50_000):032x}",
                    source="bench", payload=json.dumps({"transaction": f"/route/{issue % 40}"}),
                    frames=(FrameRef(path, path.removesuffix(".py").replace("/", "."), f"f{issue}"),),
                )
            )  # fmt: skip
        ctx.store.write_events(batch)
    print(f"  events            {args.events:,} stored in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    health: list[Health] = []
    remaining = args.session_updates
    while remaining > 0:
        at = now - rng.random() * 90 * DAY
        release = releases[int((at - now + 90 * DAY) / (4.5 * DAY)) % 20]
        size = min(remaining, 50)  # one aggregate of 50 sessions, or 50 application-mode updates
        crashed = rng.randrange(3)
        health.append(Health([SessionCounts(project.id, release, "production", int(at // HOUR), started=size,
                                             errored=crashed + rng.randrange(3), crashed=crashed)], []))  # fmt: skip
        remaining -= size
    for n in range(args.transactions):
        at = now - rng.random() * 90 * DAY
        sample = TransactionSample(project.id, f"/route/{n % 40}", releases[n % 20], "production", int(at // HOUR),
                                   rng.random() < 0.02, rng.lognormvariate(4, 1))  # fmt: skip
        health.append(Health([], [sample]))
    for first in range(0, len(health), 2_000):
        ctx.store.write_events([], health[first : first + 2_000])
    print(f"  health            {args.session_updates:,} session updates, {args.transactions:,} transactions stored "
          f"in {time.perf_counter() - started:.1f} s")  # fmt: skip
    shas = git(repo, "rev-list", "--reverse", "HEAD").split()
    step = max(1, len(shas) // args.deploys)
    for n, sha in enumerate(shas[::step][: args.deploys]):
        ctx.store.record_deploy(
            release=f"acme@deploy{n}", commit_sha=sha, environment="production",
            deployed_at=now - 90 * DAY + n * (90 * DAY / args.deploys),
        )  # fmt: skip


def _timed(call: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _line(label: str, ms: list[float], goal: float) -> str:
    p50 = statistics.median(ms)
    verdict = "met" if p50 <= goal else "MISSED"
    return (f"  {label:<34} p50 {p50:8.1f} ms  max {max(ms):8.1f} ms   goal p50 <= {goal:.0f} ms "
            f"(achieved/goal {p50 / goal:.2f}, {verdict})")  # fmt: skip


def _bench_queries(ctx: AppContext, repo_path: Path, args: argparse.Namespace) -> None:
    target = TARGETS[0]
    folder = target.rsplit("/", 1)[0] + "/"
    warm_repo = GitRepo(repo_path)
    for label, path in (("file", target), ("folder", folder), ("function", f"{target}::handle_checkout")):

        def warm(path: str = path) -> object:
            return query_reliability_history(ctx.store, warm_repo, ctx.settings, ctx.clock, path=path, days=90)

        def cold(path: str = path) -> object:
            repo = GitRepo(repo_path)
            try:
                return query_reliability_history(ctx.store, repo, ctx.settings, ctx.clock, path=path, days=90)
            finally:
                repo._repo.close()

        result = warm()
        assert hasattr(result, "issues_total")
        print(
            f"  {label:<8} {path}: {result.issues_total} issues, {result.events} events, "  # type: ignore[attr-defined]
            f"{result.delivery.deploys_touching} deploys touching it, "  # type: ignore[attr-defined]
            f"{result.churn.commits} commits, tier {result.tier.tier}"
        )  # type: ignore[attr-defined]
        print(_line(f"{label}: cold (fresh GitRepo)", _timed(cold, args.cold_runs), GOAL_COLD_P50_MS))
        print(_line(f"{label}: warm (GitRepo reused)", _timed(warm, args.warm_runs), GOAL_WARM_P50_MS))


def _bench_ingest(ctx: AppContext, runs: int = 20_000) -> None:
    processor = EventProcessor(ctx.settings, ctx.clock)
    group = {"started": "2026-12-04T10:01:00Z", "exited": 40, "errored": 2, "crashed": 1, "did": "u1"}
    attrs = {"release": "acme@1.0.0", "environment": "production"}
    aggregate = json.dumps({"attrs": attrs, "aggregates": [group]}).encode()
    transaction = json.dumps({
        "type": "transaction", "transaction": "/checkout/{cart_id}", "start_timestamp": 1.0, "timestamp": 1.25, **attrs,
        "contexts": {"trace": {"status": "ok"}}, "spans": [{"op": "db"}] * 20,
    }).encode()  # fmt: skip
    for label, kind, payload in (("sessions aggregate", "sessions", aggregate), ("transaction", "transaction",
                                                                                  transaction)):  # fmt: skip
        t0 = time.perf_counter()
        for _ in range(runs):
            processor.health([(kind, payload)], project_id=1, user_salt="salt")
        per = (time.perf_counter() - t0) / runs * 1e6
        print(f"  {label:<20} {per:7.1f} µs per item to parse and count ({len(payload)} bytes)")
    project = ctx.store.create_project("ingest-cost")
    counts = processor.health([("sessions", aggregate)], project_id=project.id, user_salt="salt")
    t0 = time.perf_counter()
    for _ in range(2_000):
        ctx.store.write_events([], [dataclasses.replace(counts)])
    print(f"  store one aggregate  {(time.perf_counter() - t0) / 2_000 * 1e3:7.3f} ms per commit (one per envelope; "
          f"the writer batches envelopes into one commit under load)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--session-updates", type=int, default=1_000_000)
    parser.add_argument("--transactions", type=int, default=100_000)
    parser.add_argument("--deploys", type=int, default=1_000)
    parser.add_argument("--commits", type=int, default=10_000)
    parser.add_argument("--files", type=int, default=2_000)
    parser.add_argument("--cold-runs", type=int, default=10)
    parser.add_argument("--warm-runs", type=int, default=30)
    args = parser.parse_args()
    rng = random.Random(5)
    print(f"prodloop reliability bench: Python {sys.version.split()[0]}")
    repo, built = generated_repo(args.commits, args.files)
    print(f"[1] history over {args.commits:,} commits ({'cached' if built is None else f'built in {built:.0f} s'})")
    with tempfile.TemporaryDirectory(prefix="prodloop-bench-reliability-") as data:
        clock = FixedClock(at=1_700_000_000.0 + args.commits * 3600 + DAY)  # a day after the last commit
        ctx = AppContext.open(load_settings(repo=repo, data_dir=Path(data)), clock=clock)
        try:
            _fill(ctx, repo, args, rng)
            size = sum(p.stat().st_size for p in Path(data).glob("prodloop.db*"))
            print(f"  store             {size / 1e6:.1f} MB on disk")
            _bench_queries(ctx, repo, args)
            print("[2] ingest cost of health items")
            _bench_ingest(ctx)
        finally:
            ctx.close()


if __name__ == "__main__":
    main()
