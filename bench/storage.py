"""What the store keeps per day of traffic, and that retention bounds it.

Simulates `--days` days of production: `--events-per-day` error events (real sentry-sdk events of the bench shop,
scrubbed and grouped as ingest does, each day's under a new release), `--session-updates-per-day` session updates
(aggregates of 50) and `--transactions-per-day` transactions over `--transaction-names` names. After each day the
retention prune runs with short settings (`--hourly-days`, `--event-days`), so the run shows both the bytes a day
adds to each kind of row and that the store stops growing once data ages out. Sizes are live bytes per table and
index (SQLite's dbstat); the file keeps freed pages for reuse.

It prints the bytes per day of each kind and the steady-state size at the default retention (hour rows 14 days,
day rows 400, raw events 90).

    python bench/storage.py                         # 10k events, 100k session updates, 50k transactions a day
    python bench/storage.py --events-per-day 2000 --days 4
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

from prodloop.server.clock import FixedClock
from prodloop.server.context import AppContext
from prodloop.server.ingest.pipeline import EventProcessor
from prodloop.server.settings import RetentionSettings, load_settings
from prodloop.server.store.records import HOUR, EventRecord, Health, SessionCounts, TransactionSample

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _ingest_pool import sample_events

DAY = 86400.0
START = 1_780_000_000.0 - 1_780_000_000.0 % DAY  # a midnight
KINDS = {
    "raw events": ("events",),
    "hour rows": ("issue_hourly", "session_hours", "transaction_hours"),
    "day rows": ("session_days", "session_day_users", "transaction_days", "issue_releases"),
    "per issue": ("issues", "issue_users", "issue_frames", "release_packages"),
}


def _live_bytes(ctx: AppContext) -> dict[str, int]:
    rows = ctx.store.reader().execute("SELECT name, tbl_name FROM sqlite_schema WHERE type IN ('table', 'index')")
    owner = {name: table for name, table in rows}
    sizes: dict[str, int] = {}
    for name, size in ctx.store.reader().execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
        table = owner.get(name, name)
        kind = next((k for k, tables in KINDS.items() if table in tables), "other")
        sizes[kind] = sizes.get(kind, 0) + int(size)
    return sizes


def _day(ctx: AppContext, processor: EventProcessor, samples: list[dict[str, object]], day: int,
         args: argparse.Namespace, rng: random.Random) -> None:  # fmt: skip
    start = START + day * DAY
    release = f"shop@1.{day}.0"
    records: list[EventRecord] = []
    for n in range(args.events_per_day):
        raw = dict(samples[n % len(samples)])
        raw.update(event_id=f"{rng.getrandbits(128):032x}", timestamp=start + rng.random() * DAY, release=release)
        records.append(processor.process(raw, project_id=1, user_salt="salt", source="bench"))
    for first in range(0, len(records), 1_000):
        ctx.store.write_events(records[first : first + 1_000])
    health: list[Health] = []
    for _ in range(args.session_updates_per_day // 50):
        hour = int((start + rng.random() * DAY) // HOUR)
        crashed = rng.randrange(3)
        health.append(Health([SessionCounts(1, release, "production", hour, started=50, errored=crashed,
                                            crashed=crashed, user_hash=f"{rng.randrange(5_000):x}")], []))  # fmt: skip
    for n in range(args.transactions_per_day):
        hour = int((start + rng.random() * DAY) // HOUR)
        health.append(Health([], [TransactionSample(1, f"/route/{n % args.transaction_names}", release, "production",
                                                    hour, rng.random() < 0.02, rng.lognormvariate(4, 1))]))  # fmt: skip
    for first in range(0, len(health), 2_000):
        ctx.store.write_events([], health[first : first + 2_000])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--events-per-day", type=int, default=10_000)
    parser.add_argument("--session-updates-per-day", type=int, default=100_000)
    parser.add_argument("--transactions-per-day", type=int, default=50_000)
    parser.add_argument("--transaction-names", type=int, default=40)
    parser.add_argument("--days", type=int, default=6)
    parser.add_argument("--hourly-days", type=int, default=1)
    parser.add_argument("--event-days", type=int, default=2)
    args = parser.parse_args()
    rng = random.Random(11)
    print(f"prodloop storage bench: Python {sys.version.split()[0]}; a day: {args.events_per_day:,} events, "
          f"{args.session_updates_per_day:,} session updates, {args.transactions_per_day:,} transactions "
          f"({args.transaction_names} names); retention here: hours {args.hourly_days} day(s), raw events "
          f"{args.event_days}")  # fmt: skip
    samples: list[dict[str, object]] = list(sample_events(200))
    with tempfile.TemporaryDirectory(prefix="prodloop-bench-storage-") as data:
        retention = {"hourly_days": args.hourly_days, "event_days": args.event_days, "aggregate_days": 400}
        clock = FixedClock(at=START)
        ctx = AppContext.open(load_settings(repo=Path.cwd(), data_dir=Path(data), retention=retention), clock=clock)
        try:
            ctx.store.create_project("bench")
            processor = EventProcessor(ctx.settings, ctx.clock)
            print(f"  {'day':>3} {'raw events':>12} {'hour rows':>12} {'day rows':>12} {'per issue':>12} "
                  f"{'file':>10} {'prune':>8}")  # fmt: skip
            growth: dict[str, int] = {}
            previous: dict[str, int] = {}
            for day in range(args.days):
                _day(ctx, processor, samples, day, args, rng)
                sizes = _live_bytes(ctx)
                if day == 0:
                    growth = dict(sizes)  # nothing has aged out yet: one day's bytes of each kind
                clock.at = START + (day + 1) * DAY
                t0 = time.perf_counter()
                ctx.apply_retention()
                took = time.perf_counter() - t0
                sizes = _live_bytes(ctx)
                file_size = sum(p.stat().st_size for p in Path(data).glob("prodloop.db*"))
                print(f"  {day:>3} " + " ".join(f"{sizes.get(k, 0) / 1e6:>9.2f} MB" for k in KINDS)
                      + f" {file_size / 1e6:>7.1f} MB {took:>6.2f} s")  # fmt: skip
                previous = sizes
        finally:
            ctx.close()
    defaults = RetentionSettings()
    kept_days = {"raw events": defaults.event_days, "hour rows": defaults.hourly_days,
                 "day rows": defaults.aggregate_days}  # fmt: skip
    print("  bytes per day of traffic, and what the default retention keeps of each:")
    total = 0.0
    for kind, days in kept_days.items():
        per_day = growth.get(kind, 0)
        total += per_day * days
        print(f"    {kind:<11} {per_day / 1e6:8.2f} MB/day x {days:>3} days = {per_day * days / 1e9:7.2f} GB")
    issues = previous.get("per issue", 0)
    print(f"    {'per issue':<11} {issues / 1e6:8.2f} MB (grows with distinct issues, users and frames, not days)")
    print(f"  steady state at the default retention: {(total + issues) / 1e9:.2f} GB for "
          f"{args.events_per_day:,} events/day ({(total + issues) / 1e9 / (args.events_per_day / 10_000):.2f} GB "
          f"per 10k events/day)")  # fmt: skip


if __name__ == "__main__":
    main()
