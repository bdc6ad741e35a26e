"""The store on both engines (SQLite and PostgreSQL, `conftest.py`): migrations, idempotent writes, counts that
survive reopening; and SQLite stores written by earlier versions, migrated."""

from __future__ import annotations

import dataclasses
import json
import random
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from prodloop.server.clock import FixedClock
from prodloop.server.context import AppContext
from prodloop.server.errors import InvalidArgument, NotFoundError, StoreError
from prodloop.server.ingest.pipeline import EventProcessor
from prodloop.server.store import EventRecord, Store, history, signals
from prodloop.server.store import health as health_store
from prodloop.server.store.history import PathMatch
from prodloop.server.store.migrations import MIGRATIONS
from prodloop.server.store.records import IssueRow
from tests.conftest import make_event


def _record(ctx: AppContext, **event_overrides: object) -> EventRecord:
    project = ctx.store.project_by_name("svc") or ctx.store.create_project("svc")
    return EventProcessor(ctx.settings, ctx.clock).process(
        make_event(**event_overrides), project_id=project.id, user_salt=project.public_key, source="test"
    )


def test_store_is_wal_sqlite_or_postgres_with_migrations_applied_once(ctx: AppContext, engine: str) -> None:
    where = ctx.settings.database
    ctx.close()
    again = Store(where)
    assert again.dialect == engine
    if engine == "sqlite":
        assert again.reader().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert again.reader().execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(MIGRATIONS)
    assert again.schema_version == MIGRATIONS[-1][0]
    again.close()


def test_counts_users_and_hourly_series_accumulate_and_survive_reopen(
    make_ctx: Callable[..., AppContext],
) -> None:
    ctx = make_ctx()
    base = _record(ctx, user={"id": "u1"}, timestamp=1_790_000_000.0)
    same_user = dataclasses.replace(_record(ctx, user={"id": "u1"}, timestamp=1_790_000_100.0))
    other_user = _record(ctx, user={"id": "u2"}, timestamp=1_790_004_000.0)
    assert ctx.store.write_events([base, same_user, other_user]) == [True, True, True]
    assert ctx.store.write_events([base]) == [False]
    where = ctx.settings.database
    ctx.close()
    store = Store(where)
    issue = store.get_issue(store.get_event(base.event_id).issue_id)
    assert (issue.event_count, issue.user_count) == (3, 2)
    assert issue.first_seen == 1_790_000_000.0
    assert issue.last_seen == 1_790_004_000.0
    assert store.hourly_counts(issue.id, 0) == [(497222, 2), (497223, 1)]
    store.close()


def test_user_identity_is_stored_only_as_a_keyed_hash(ctx: AppContext) -> None:
    record = _record(ctx, user={"id": "customer-4411"})
    ctx.store.write_events([record])
    assert record.user_hash is not None
    assert "customer-4411" not in record.user_hash
    assert len(record.user_hash) == 32


def test_missing_ids_raise_not_found_with_a_hint(ctx: AppContext) -> None:
    with pytest.raises(NotFoundError, match="no issue with id 5; call list_issues"):
        ctx.store.get_issue(5)
    with pytest.raises(NotFoundError, match="no event with id"):
        ctx.store.get_event("0" * 32)


def test_an_unwritable_location_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="store open failed"):
        Store(blocker / "sub" / "prodloop.db")


def test_a_failed_batch_keeps_what_was_committed_before(ctx: AppContext) -> None:
    kept = _record(ctx)
    ctx.store.write_events([kept])
    bad = dataclasses.replace(_record(ctx), project_id=999)  # violates the foreign key
    with pytest.raises(StoreError):
        ctx.store.write_events([_record(ctx), bad])
    assert ctx.store.count_events() == 1
    assert ctx.store.get_event(kept.event_id)


def test_a_resolved_issue_seen_again_in_a_new_release_regresses_and_a_straggler_does_not(
    make_ctx: Callable[..., AppContext],
) -> None:
    t0 = 1_780_000_000.0
    clock = FixedClock(at=t0)
    ctx = make_ctx(clock=clock)
    store = ctx.store

    def seen(at: float, release: str | None) -> IssueRow:
        store.write_events([_record(ctx, timestamp=at, release=release)])
        return store.get_issue(1)

    seen(t0, "shop@1.0")
    seen(t0 + 3600, "shop@1.0")
    clock.at = t0 + 2 * 3600
    resolved = store.set_status(1, "resolved", in_release="shop@1.1")
    assert (resolved.status, resolved.resolved_in, resolved.resolved_at) == ("resolved", "shop@1.1", t0 + 7200)
    assert seen(t0 + 1800, "shop@2.0").status == "resolved"  # an event from before the resolution, arriving late
    assert seen(t0 + 3 * 3600, "shop@1.0").status == "resolved"  # an old server still running the old release
    assert seen(t0 + 3.5 * 3600, "shop@1.0").status == "resolved"  # and again: still a straggler
    back = seen(t0 + 4 * 3600, "shop@1.1")  # the release said to carry the fix fails the same way
    assert (back.status, back.regressions) == ("unresolved", 1)
    clock.at = t0 + 5 * 3600
    store.set_status(1, "resolved")
    assert seen(t0 + 6 * 3600, "shop@1.1").status == "resolved"  # it failed in shop@1.1 before this resolution
    assert (seen(t0 + 7 * 3600, "shop@1.2").regressions, store.get_issue(1).status) == (2, "unresolved")
    store.set_status(1, "resolved")
    assert seen(t0 + 8 * 3600, None).regressions == 3  # no release: seen after the resolution is all it says
    assert store.get_issue(1).event_count == 9
    with pytest.raises(NotFoundError, match="call list_issues"):
        store.set_status(99, "resolved")
    with pytest.raises(InvalidArgument, match="is not resolved, unresolved or ignored"):
        store.set_status(1, "fixed")


def test_an_event_from_the_future_counts_now_and_cannot_pin_the_issue(make_ctx: Callable[..., AppContext]) -> None:
    clock = FixedClock(at=1_780_000_000.0)
    ctx = make_ctx(clock=clock)
    project = ctx.store.create_project("svc")
    processor = EventProcessor(ctx.settings, clock)
    live = [processor.process(make_event(timestamp=at), project_id=project.id, user_salt="s", source="ingest")
            for at in (82_048_896_000.0, float("nan"), 0.0)]  # fmt: skip
    imported = processor.process(make_event(timestamp=0.0), project_id=project.id, user_salt="s", source="file")
    ctx.store.write_events([*live, imported])
    issue = ctx.store.get_issue(1)
    assert issue.last_seen == 1_780_000_060.0  # a minute's slack for a sender's clock, no more
    stored = ctx.store.reader().execute("SELECT timestamp FROM events ORDER BY id").fetchall()
    # sent live: the future and 1970 count now; an exported event imported from a file keeps its own past
    assert stored == [(1_780_000_060.0,), (1_780_000_000.0,), (1_780_000_000.0,), (0.0,)]
    health = EventProcessor(ctx.settings, clock).health(
        [("session", json.dumps({"init": True, "status": "exited", "timestamp": 82_048_896_000.0,
                                 "attrs": {"release": "svc@1"}}).encode())],
        project_id=1, user_salt="s",
    )  # fmt: skip
    assert [s.bucket for s in health.sessions] == [int(1_780_000_000.0 // 3600)]


def _store_at(path: Path, version: int) -> sqlite3.Connection:
    """A store file as a prodloop whose last migration was `version` left it (to test the migrations after it)."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
    for number, script in MIGRATIONS:
        if number <= version:
            conn.executescript(script)
            conn.execute("INSERT INTO schema_migrations VALUES (?, 0)", (number,))
    return conn


def test_migration_two_indexes_frames_of_events_stored_before_it(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = _store_at(path, 1)
    conn.execute("INSERT INTO projects VALUES (1, 'svc', 'k', 0)")
    conn.execute(
        "INSERT INTO issues (id, project_id, fingerprint, title, first_seen, last_seen, event_count)"
        " VALUES (1, 1, 'f', 't', 0, 0, 3)"
    )
    payload = json.dumps(make_event())
    conn.execute(
        "INSERT INTO events (project_id, event_id, issue_id, timestamp, received, source, payload)"
        " VALUES (1, 'e1', 1, 0, 0, 'test', ?)",
        (payload,),
    )
    conn.commit()
    conn.close()
    store = Store(path)
    assert store.schema_version == MIGRATIONS[-1][0]
    # Frames of events stored before the issue_frames index existed are indexed by the migration.
    conn = store.reader()
    assert [
        i.event_count for i in history.issues_touching(conn, PathMatch(filenames=("shop/pricing.py",)), since=0)
    ] == [3]
    assert [i.id for i in history.issues_touching(conn, PathMatch(modules=("shop.app",)), since=0)] == [1]
    assert history.issues_touching(conn, PathMatch(filenames=("other.py",), modules=("other",)), since=0) == []
    store.close()


def test_migration_nine_keeps_sessions_per_day_and_each_issues_releases(tmp_path: Path) -> None:
    path = tmp_path / "v8.db"
    conn = _store_at(path, 8)
    conn.execute("INSERT INTO projects VALUES (1, 'svc', 'k', 0)")
    conn.execute(
        "INSERT INTO issues (id, project_id, fingerprint, title, first_seen, last_seen, event_count)"
        " VALUES (1, 1, 'f', 't', 0, 0, 2)"
    )
    for n, (release, at) in enumerate([("svc@1", 3600.0), ("svc@2", 7200.0)]):
        conn.execute(
            "INSERT INTO events (project_id, event_id, issue_id, timestamp, received, release, source, payload)"
            " VALUES (1, ?, 1, ?, 0, ?, 'test', ?)",
            (f"e{n}", at, release, json.dumps({**make_event(), "transaction": "/cart"})),
        )
    # Two hours of one day, the same user in both: one user that day.
    for hour in (30, 31):
        conn.execute(
            "INSERT INTO session_hours (project_id, release, environment, hour, started, crashed, users)"
            " VALUES (1, 'svc@2', 'production', ?, 5, 1, 1)",
            (hour,),
        )
        conn.execute("INSERT INTO session_users VALUES (1, 'svc@2', 'production', ?, 'u1')", (hour,))
    conn.commit()
    conn.close()
    store = Store(path)
    assert store.schema_version == MIGRATIONS[-1][0]
    with store.transaction() as conn:
        (kept,) = health_store.release_health(conn, since_hour=24)
        assert (kept.release, kept.started, kept.crashed, kept.users) == ("svc@2", 10, 2, 1)
        assert history.releases_and_transactions(conn, [1], since=0) == (["svc@2", "svc@1"], ["/cart"])
    store.close()


def test_the_store_and_its_journal_are_the_owners_alone(tmp_path: Path) -> None:
    import stat

    data = tmp_path / "data"
    store = Store(data / "prodloop.db")
    with store.transaction() as conn:  # a write, so that SQLite makes its -wal and -shm files
        conn.execute("CREATE TABLE IF NOT EXISTS t (x)")
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in data.iterdir()}
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert modes["prodloop.db"] == 0o600 and modes["prodloop.db-wal"] == 0o600, modes
    store.close()


def test_migration_fourteen_links_provenance_written_before_it_to_its_pull_request(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = _store_at(path, 13)
    conn.execute("INSERT INTO projects VALUES (1, 'svc', 'k', 0)")
    conn.execute(
        "INSERT INTO issues (id, project_id, fingerprint, title, first_seen, last_seen) VALUES (1, 1, 'f', 't', 0, 0)"
    )
    conn.execute("INSERT INTO receipts (id, issue_id, event_id, commit_sha, test_path, test_name, test_code,"
                 " test_sha256, fix_diff, fix_sha256, passed, gates, cpu_seconds, created_at) VALUES"
                 " ('r1', 1, 'e', 'c', 't.py', 't', '', '', '', '', 1, '[]', 0, 0)")  # fmt: skip
    for pr_id, branch in ((1, "prodloop/1-a"), (2, "prodloop/1-b")):
        conn.execute("INSERT INTO pull_requests (id, issue_id, receipt_id, branch, commit_sha, mode, created_at)"
                     " VALUES (?, 1, 'r1', ?, 'c', 'local', 0)", (pr_id, branch))  # fmt: skip
    record = {"receipt_id": "r1", "test_node": "t.py::t", "pull_request": {"branch": "prodloop/1-a"}}
    conn.execute("INSERT INTO provenance (test_node, test_path, record, created_at) VALUES ('t.py::t', 't.py', ?, 0)",
                 (json.dumps(record),))  # fmt: skip
    conn.commit()
    conn.close()
    store = Store(path)
    assert store.schema_version == MIGRATIONS[-1][0]
    assert store.reader().execute("SELECT pull_request_id FROM provenance").fetchall() == [(1,)]
    store.close()


def test_migration_seventeen_counts_issues_written_before_it_and_the_counts_stay_exact(tmp_path: Path) -> None:
    """list_issues' total comes from counts triggers keep per (project, status): backfilled on upgrade, then exact
    through new issues, status changes and deletions."""
    path = tmp_path / "old.db"
    conn = _store_at(path, 16)
    conn.executemany("INSERT INTO projects VALUES (?, ?, ?, 0)", [(1, "a", "k1"), (2, "b", "k2")])
    conn.executemany(
        "INSERT INTO issues (project_id, fingerprint, title, first_seen, last_seen, status)"
        " VALUES (?, ?, 't', 0, ?, ?)",
        [(1 + n % 2, f"f{n}", n, "resolved" if n % 3 == 0 else "unresolved") for n in range(10)],
    )
    conn.commit()
    conn.close()
    store = Store(path)

    def exact(project: int | None, status: str | None) -> tuple[int, int]:
        clause = " AND ".join(c for c, v in (("project_id = ?", project), ("status = ?", status)) if v is not None)
        params = [v for v in (project, status) if v is not None]
        counted = store.reader().execute(f"SELECT count(*) FROM issues {'WHERE ' + clause if clause else ''}", params)
        return store.list_issues(project_id=project, status=status)[1], int(counted.fetchone()[0])

    cases = [(p, s) for p in (None, 1, 2) for s in (None, "resolved", "unresolved", "ignored")]
    assert all(a == b for a, b in (exact(*c) for c in cases)) and exact(None, None) == (10, 10)
    with store.transaction() as conn2:
        conn2.execute(
            "INSERT INTO issues (project_id, fingerprint, title, first_seen, last_seen) VALUES (2, 'n', 't', 0, 0)"
        )
        conn2.execute("DELETE FROM issues WHERE fingerprint = 'f1'")
    store.set_status(1, "ignored")
    store.set_status(3, "unresolved")
    assert [exact(*c)[0] for c in cases] == [exact(*c)[1] for c in cases]
    assert exact(None, "ignored") == (1, 1) and exact(None, None) == (10, 10)
    page, total = store.list_issues(status="unresolved", limit=3)
    assert total == exact(None, "unresolved")[1] and [i.last_seen for i in page] == sorted(
        (i.last_seen for i in page), reverse=True
    )
    store.close()


def test_a_batch_leaves_issues_as_its_events_one_at_a_time_would(make_ctx: Callable[..., AppContext]) -> None:
    """The writer folds a batch into one upsert per issue: counts, first/last seen, the newest event's title and
    culprit (ties to the later event), users once, hours, releases, and regressions judged in order (a straggler
    earlier in the same batch included) all end as writing the events one by one leaves them."""
    rng = random.Random(7)
    t0 = 1_780_000_000.0
    ctx = make_ctx(clock=FixedClock(at=t0 + 30))  # issues are resolved at t0 + 30
    one, batch = ctx.store.create_project("one-by-one"), ctx.store.create_project("batched")
    template = [dataclasses.replace(_record(ctx, timestamp=t0), fingerprint=f"issue-{i}") for i in range(3)]
    plan = []
    for i in range(60):
        base = template[i % 3]
        at = t0 + rng.choice([-7200.0, -60.0, 0.0, 60.0, 3600.0, 7200.0, 9000.0])  # ties on purpose
        plan.append(dataclasses.replace(
            base, title=f"{base.title} #{i}", culprit=f"culprit {i % 7}", timestamp=at, received=at,
            user_hash=None if i % 6 == 0 else f"user-{rng.randrange(5)}", release=rng.choice(["r1", "r2", None]),
            transaction=rng.choice([None, "/checkout"]),
        ))  # fmt: skip
    for project in (one, batch):
        warm = [dataclasses.replace(r, project_id=project.id, event_id=f"{project.id:02d}w{n:029d}")
                for n, r in enumerate(plan[:6])]  # fmt: skip
        ctx.store.write_events(warm)
        for issue in ctx.store.list_issues(project_id=project.id)[0]:  # resolved before the rest arrives
            ctx.store.set_status(issue.id, "resolved", in_release="r2")
    # A late event of a release new to the issue, from before its resolution, then one of the same release after
    # it: the second is a straggler, as the first made the release one the issue failed in before.
    late = [dataclasses.replace(plan[0], timestamp=at, received=at, release="r9") for at in (t0 - 61, t0 + 3601)]
    rest = [*late, *plan[6:]]
    for n, r in enumerate(rest):
        ctx.store.write_events([dataclasses.replace(r, project_id=one.id, event_id=f"{one.id:02d}e{n:029d}")])
    batched = [
        dataclasses.replace(r, project_id=batch.id, event_id=f"{batch.id:02d}e{n:029d}") for n, r in enumerate(rest)
    ]
    assert ctx.store.write_events([*batched[:30], batched[3], *batched[30:]]).count(False) == 1  # a repeat in it

    def state(project_id: int) -> list[tuple[object, ...]]:
        conn = ctx.store.reader()
        out = []
        for issue in sorted(ctx.store.list_issues(project_id=project_id, limit=100)[0], key=lambda i: i.fingerprint):
            hours = conn.execute("SELECT hour, count FROM issue_hourly WHERE issue_id = ? ORDER BY hour", (issue.id,))
            releases = conn.execute(
                "SELECT release, transaction_name, first_seen, last_seen FROM issue_releases WHERE issue_id = ?"
                " ORDER BY release, transaction_name",
                (issue.id,),
            )
            out.append((issue.fingerprint, issue.title, issue.culprit, issue.first_seen, issue.last_seen,
                        issue.event_count, issue.user_count, issue.status, issue.regressions, issue.regressed_at,
                        [tuple(h) for h in hours], [tuple(r) for r in releases]))  # fmt: skip
        return out

    assert state(batch.id) == state(one.id)
    assert any(row[8] for row in state(one.id))  # the plan does regress an issue


def test_migration_nineteen_orders_by_priority_from_the_issue_itself_and_triage_keeps_it(tmp_path: Path) -> None:
    """Triage's priority is kept on the issue (indexed: list_issues by priority stays flat): backfilled from the
    signals of a store written before it, then kept by every signal saved."""
    path = tmp_path / "old.db"
    conn = _store_at(path, 18)
    conn.execute("INSERT INTO projects VALUES (1, 'svc', 'k', 0)")
    conn.executemany(
        "INSERT INTO issues (id, project_id, fingerprint, title, first_seen, last_seen) VALUES (?, 1, ?, 't', 0, ?)",
        [(n, f"f{n}", n) for n in range(1, 5)],
    )
    conn.executemany(
        "INSERT INTO signals (issue_id, classification, priority, confidence, tier, report, created_at, updated_at)"
        " VALUES (?, 'observation', ?, 0.5, 1, '{}', 0, 0)",
        [(1, 20.0), (3, 70.0)],
    )
    conn.commit()
    conn.close()
    store = Store(path)
    assert [i.id for i in store.list_issues(order="priority")[0]] == [3, 1, 4, 2]  # no signal: last, newest first
    row = signals.get(store, 4)
    assert row is None
    saved = signals.get(store, 1)
    assert saved is not None
    signals.save(store, dataclasses.replace(saved, priority=95.0, updated_at=1.0), {})
    assert [i.id for i in store.list_issues(order="priority", status="unresolved")[0]] == [1, 3, 4, 2]
    store.close()
