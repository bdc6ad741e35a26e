"""The SQLite store: migrations, idempotent writes, counts that survive reopening."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from prodloop.server.context import AppContext
from prodloop.server.errors import NotFoundError, StoreError
from prodloop.server.ingest.pipeline import EventProcessor
from prodloop.server.store import EventRecord, Store, history
from prodloop.server.store.history import PathMatch
from prodloop.server.store.migrations import MIGRATIONS
from tests.conftest import make_event


def _record(ctx: AppContext, **event_overrides: object) -> EventRecord:
    project = ctx.store.project_by_name("svc") or ctx.store.create_project("svc")
    return EventProcessor(ctx.settings, ctx.clock).process(
        make_event(**event_overrides), project_id=project.id, user_salt=project.public_key, source="test"
    )


def test_store_is_wal_sqlite_with_migrations_applied_once(ctx: AppContext) -> None:
    path = ctx.store.path
    ctx.close()
    again = Store(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(MIGRATIONS)
    assert again.schema_version == MIGRATIONS[-1][0]
    conn.close()
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
    path = ctx.store.path
    ctx.close()
    store = Store(path)
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


def test_migration_two_indexes_frames_of_events_stored_before_it(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0][1])
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
    conn.execute("INSERT INTO schema_migrations VALUES (1, 0)")
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
