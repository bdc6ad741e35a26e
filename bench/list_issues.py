"""`list_issues` at scale: a store holding `--issues` issues over `--projects` projects (a quarter resolved), filled
directly with SQL (this measures reads: the ingest path is bench/ingest.py's), then each filter and order timed and
its SQLite query plan printed. Prints figures.

    python bench/list_issues.py [--issues 100000] [--projects 4] [--runs 30]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from _pg import throwaway_database

from prodloop.server.clock import FixedClock
from prodloop.server.store.db import Store

sys.path.insert(0, str(Path(__file__).resolve().parent))


def fill(store: Store, issues: int, projects: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    ids = [store.create_project(f"p{n}").id for n in range(projects)]
    now = 1_780_000_000.0
    rows = []
    for n in range(issues):
        first = now - rng.uniform(0, 90 * 86_400)
        rows.append((
            rng.choice(ids), f"fp{n:08d}", f"KeyError: {n}", "KeyError", f"mod{n % 500}.f", first,
            first + rng.uniform(0, 86_400 * 10), rng.randint(1, 5000), rng.randint(0, 300),
            "resolved" if rng.random() < 0.25 else "unresolved",
        ))  # fmt: skip
    with store.transaction() as conn:
        if store.dialect == "postgres":  # as `store copy` fills: the counts' triggers off, the counts made once
            conn.execute("ALTER TABLE issues DISABLE TRIGGER USER")
        conn.executemany(
            "INSERT INTO issues (project_id, fingerprint, title, exception_type, culprit, first_seen, last_seen,"
            " event_count, user_count, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        if store.dialect == "postgres":
            conn.execute(
                "INSERT INTO issue_counts (project_id, status, n)"
                " SELECT project_id, status, count(*) FROM issues GROUP BY project_id, status"
            )
            conn.execute("ALTER TABLE issues ENABLE TRIGGER USER")
    if store.dialect == "postgres":
        store.reader().execute("ANALYZE")  # as autovacuum would soon after such a fill


@contextlib.contextmanager
def _target(url: str | None, tmp: str) -> Iterator[Path | str]:
    """A SQLite file in `tmp`, or a throwaway database on the PostgreSQL server of `url` (dropped after)."""
    if url is None:
        yield Path(tmp) / "prodloop.db"
        return
    with throwaway_database(url, "issues") as database:
        yield database


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--issues", type=int, default=100_000)
    parser.add_argument("--projects", type=int, default=4)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument(
        "--database-url", help="postgresql://HOST/DB: a throwaway database on that server instead of a SQLite file"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="prodloop-bench-issues-") as tmp, _target(args.database_url, tmp) as at:
        store = Store(at, clock=FixedClock(1_780_000_000.0))
        started = time.perf_counter()
        fill(store, args.issues, args.projects)
        print(f"list_issues over {args.issues:,} issues in {args.projects} projects on {store.dialect} "
              f"(filled in {time.perf_counter() - started:.1f} s)")  # fmt: skip
        project = store.list_projects()[0].id
        cases = [
            ("newest first", {}),
            ("newest first, one project", {"project_id": project}),
            ("unresolved, newest first", {"status": "unresolved"}),
            ("one project, unresolved, newest first", {"project_id": project, "status": "unresolved"}),
            ("most events", {"order": "event_count"}),
            ("one project, most events", {"project_id": project, "order": "event_count"}),
            (
                "one project, unresolved, most users",
                {"project_id": project, "status": "unresolved", "order": "user_count"},
            ),
            (
                "one project, unresolved, first seen",
                {"project_id": project, "status": "unresolved", "order": "first_seen"},
            ),
            ("one project, any status, most users (no index)", {"project_id": project, "order": "user_count"}),
            ("unresolved by priority (triage's score)", {"status": "unresolved", "order": "priority"}),
            ("page 40 (offset 1,000), newest first", {"offset": 1000}),
        ]
        for name, kw in cases:
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                rows, total = store.list_issues(limit=25, **kw)  # type: ignore[arg-type]
                times.append((time.perf_counter() - t0) * 1000)
            assert len(rows) == 25 and total > 0
            print(f"  {name:<42} p50 {statistics.median(times):7.2f} ms  max {max(times):7.2f} ms  total {total:,}")
        conn = store.reader()
        for sql, params in (
            ("SELECT id FROM issues WHERE project_id = ? ORDER BY last_seen DESC, id DESC LIMIT 25", (project,)),
            ("SELECT id FROM issues ORDER BY last_seen DESC, id DESC LIMIT 25", ()),
            ("SELECT count(*) FROM issues WHERE project_id = ?", (project,)),
        ):
            explain = "EXPLAIN QUERY PLAN" if store.dialect == "sqlite" else "EXPLAIN"
            plan = "; ".join(str(r[-1]).strip() for r in conn.execute(f"{explain} {sql}", params))
            print(f"  plan: {sql[:70]}... -> {plan[:300]}")
        store.close()


if __name__ == "__main__":
    main()
