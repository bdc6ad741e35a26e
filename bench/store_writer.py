"""The store's event writer alone, on SQLite and on PostgreSQL: real sentry-sdk-shaped events, scrubbed and
grouped once up front (this measures the writer, not ingest: bench/ingest.py measures that), written by
`Store.write_events` in batches as ingest's writer thread hands them over. Prints events/s and the writer's own CPU
per event for each engine and batch size, and the ratio PostgreSQL / SQLite.

    python bench/store_writer.py [--events 3000] [--batches 1 10 50] [--database-url postgresql://HOST/postgres]

PostgreSQL: a throwaway database is created on that server (the URL's database is only used to create and drop
it); default the machine's server at 127.0.0.1:5432.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _pg import throwaway_database

from prodloop.server.clock import SystemClock
from prodloop.server.ingest.pipeline import EventProcessor
from prodloop.server.settings import load_settings
from prodloop.server.store import EventRecord, Store
from tests.conftest import make_event


def records(project_id: int, n: int, processor: EventProcessor) -> list[EventRecord]:
    """n events over 20 issues, 50 users and 3 releases, each with its stack's frames."""
    stack = make_event()["exception"]["values"][0]["stacktrace"]
    out = []
    for i in range(n):
        event = make_event(
            user={"id": f"u{i % 50}"}, release=f"shop@{i % 3}",
            exception={"values": [{"type": f"Error{i % 20}", "value": f"bad {i}", "stacktrace": stack}]},
        )  # fmt: skip
        out.append(processor.process(event, project_id=project_id, user_salt="bench", source="bench"))
    return out


def run(target: Path | str, n: int, batch: int, processor: EventProcessor) -> tuple[float, float]:
    store = Store(target)
    try:
        recs = records(store.create_project(f"bench-{batch}").id, n, processor)
        wall, cpu = time.perf_counter(), time.process_time()
        for start in range(0, n, batch):
            store.write_events(recs[start : start + batch])
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        assert store.count_events() == n, "the store must hold every event written"
    finally:
        store.close()
    return n / wall, cpu / n * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    processor = EventProcessor(load_settings(repo=Path(tempfile.mkdtemp())), SystemClock())
    print(f"store writer: {args.events} events over 20 issues, 50 users, 3 releases; Store.write_events per batch")
    head = ("batch", "SQLite ev/s", "CPU ms/ev", "PostgreSQL ev/s", "CPU ms/ev", "PG/SQLite")
    print("{:>6} {:>12} {:>10} {:>16} {:>10} {:>10}".format(*head))
    for batch in args.batches:
        with tempfile.TemporaryDirectory(prefix="prodloop-bench-writer-") as tmp:
            sqlite_rate, sqlite_cpu = run(Path(tmp) / "prodloop.db", args.events, batch, processor)
        with throwaway_database(args.database_url, "writer") as url:
            pg_rate, pg_cpu = run(url, args.events, batch, processor)
        print(f"{batch:>6} {sqlite_rate:>12,.0f} {sqlite_cpu:>10.3f} {pg_rate:>16,.0f} {pg_cpu:>10.3f}"
              f" {pg_rate / sqlite_rate:>10.2f}")  # fmt: skip
    print("(CPU: this process's, the writer's side only; PostgreSQL's server work is not in it)")


if __name__ == "__main__":
    main()
