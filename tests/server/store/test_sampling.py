"""Keep or count (`ingest/sampling.py`) on both engines: an issue's first events per release and its new culprit-frame
inputs keep their payload, the rest are counted without one (and never scrubbed); readers of payloads see kept events
only; a counted event asked for by id names the kept one; nothing a sender wrote unscrubbed is stored."""

from __future__ import annotations

import copy
import json
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from prodloop.server.context import AppContext
from prodloop.server.errors import NotFoundError
from prodloop.server.ingest.pipeline import EventProcessor
from prodloop.server.ingest.sampling import keep_policy
from prodloop.server.store import EventRecord, Store, signals
from prodloop.server.store.db import migration_statements
from prodloop.server.store.migrations import MIGRATIONS
from tests.conftest import make_event
from tests.pg import create_database, drop_database, stored_bytes

SECRET = "hunter2-very-secret"


def _ingest(ctx: AppContext) -> Callable[..., EventRecord]:
    project = ctx.store.project_by_name("svc") or ctx.store.create_project("svc")
    processor = EventProcessor(ctx.settings, ctx.clock, policy=keep_policy(ctx.settings, ctx.store))

    def send(event: dict[str, Any]) -> EventRecord:
        record = processor.process(
            {**copy.deepcopy(event), "event_id": uuid.uuid4().hex},
            project_id=project.id, user_salt=project.public_key, source="ingest",
        )  # fmt: skip
        assert ctx.store.write_events([record]) == [True]
        return record

    return send


def _event(value: str = "'sku'", *, release: str = "svc@1.0.0", cart: str = "2", **overrides: Any) -> dict[str, Any]:
    event = make_event(release=release, **overrides)
    event["exception"]["values"][0]["value"] = value
    event["exception"]["values"][0]["stacktrace"]["frames"][-1]["vars"] = {"cart": {"qty": cart}, "password": SECRET}
    event.setdefault("tags", {"tenant": "acme"})
    event.setdefault("user", {"email": "ann@example.com"})
    return event


def test_first_events_per_release_and_new_inputs_are_kept_the_rest_counted(
    make_ctx: Callable[..., AppContext], engine: str
) -> None:
    ctx = make_ctx(ingest_kept_per_release=3, ingest_kept_inputs=5)
    send = _ingest(ctx)
    first = [send(_event()) for _ in range(5)]
    assert [r.kept for r in first] == [True, True, True, False, False]
    # A counted event's exception value (here a secret) is never read: the issue's title stays the kept events'.
    counted = send(_event(f"token {SECRET}"))
    assert not counted.kept
    other_release = [send(_event(release="svc@1.1.0")) for _ in range(4)]
    assert [r.kept for r in other_release] == [True, True, True, False]
    new_input = send(_event(cart="7"))
    assert new_input.kept and new_input.input_digest not in (None, first[0].input_digest)
    assert not send(_event(cart="7")).kept  # known once its first event committed

    issue = ctx.store.get_issue(ctx.store.get_event(first[0].event_id).issue_id)
    assert issue.event_count == 12 and issue.user_count == 1
    assert issue.title == "KeyError: 'sku'"
    assert sum(c for _, c in ctx.store.hourly_counts(issue.id, 0)) == 12
    assert ctx.store.latest_event(issue.id).event_id == new_input.event_id
    assert {e.event_id for e in ctx.store.recent_events(issue.id, 50)} == {
        r.event_id for r in [*first[:3], *other_release[:3], new_input]
    }
    # Triage still reads every event's tenant; kept payloads come first.
    rows = signals.recent_payloads(ctx.store, issue.id, since=0)
    assert len(rows) == 12
    assert [json.loads(p).get("exception") is not None for *_, p in rows] == [True] * 7 + [False] * 5
    assert all(json.loads(p)["tags"] in ([["tenant", "acme"]], {"tenant": "acme"}) for *_, p in rows[7:])
    assert signals.tenants_in_releases(ctx.store, ["svc@1.0.0"], "tenant", since=0) == {"acme"}
    # A counted event by id: refused, naming the kept event with the same input.
    with pytest.raises(NotFoundError) as refused:
        ctx.store.get_event(counted.event_id)
    assert "was not kept" in str(refused.value) and first[-1].event_id not in str(refused.value)
    assert any(r.event_id in str(refused.value) for r in [*first[:3], *other_release[:3]])
    assert SECRET.encode() not in stored_bytes(ctx.store)
    assert b"ann@example.com" not in stored_bytes(ctx.store)


def test_distinct_inputs_are_bounded_per_issue(make_ctx: Callable[..., AppContext], engine: str) -> None:
    ctx = make_ctx(ingest_kept_per_release=1, ingest_kept_inputs=3)
    send = _ingest(ctx)
    kept = [send(_event(cart=str(n))).kept for n in range(6)]
    assert kept == [True, True, True, False, False, False]


def test_keep_every_payload_keeps_and_scrubs_every_event(make_ctx: Callable[..., AppContext], engine: str) -> None:
    ctx = make_ctx(ingest_keep_every_payload=True, ingest_kept_per_release=1)
    send = _ingest(ctx)
    assert all(send(_event()).kept for _ in range(4))


def test_an_event_whose_grouping_text_would_scrub_differently_is_kept(
    make_ctx: Callable[..., AppContext], engine: str
) -> None:
    ctx = make_ctx(ingest_kept_per_release=1, ingest_kept_inputs=0)
    send = _ingest(ctx)
    assert send(_event()).kept and not send(_event()).kept
    risky = [
        _event(release="svc@1.0.0\n"),
        _event(environment="prod/eu"),
        _event(tags={"tenant": "ann@example.com"}),
        _event(transaction="/users/ann@example.com"),
        _event(fingerprint=["{{ default }}"]),
        _event(timestamp="yesterday"),
    ]
    assert [send(e).kept for e in risky] == [True] * len(risky)
    assert b"ann@example.com" not in stored_bytes(ctx.store)


def _old_store(engine: str, tmp_path: Path) -> tuple[str | Path, Callable[[str, tuple[Any, ...]], None], Any]:
    """A store migrated to version 17 (before events could be counted), and a way to write into it."""
    if engine == "sqlite":
        path = tmp_path / "v17.db"
        conn: Any = sqlite3.connect(path, isolation_level=None)
        conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
        run: Callable[[str, tuple[Any, ...]], Any] = conn.execute
        target: str | Path = path
    else:
        target = create_database()
        conn = psycopg.connect(str(target), autocommit=True)
        conn.execute("CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at DOUBLE PRECISION)")
        run = lambda sql, params=(): conn.execute(sql.replace("?", "%s"), params)  # noqa: E731
    for number, script in MIGRATIONS:
        if number <= 17:
            for statement in migration_statements(number, script, "sqlite" if engine == "sqlite" else "postgres"):
                conn.execute(statement)
            run("INSERT INTO schema_migrations VALUES (?, 0)", (number,))
    return target, run, conn


def test_migration_18_keeps_events_stored_before_it(engine: str, tmp_path: Path) -> None:
    target, run, conn = _old_store(engine, tmp_path)
    try:
        run("INSERT INTO projects (id, name, public_key, created_at) VALUES (1, 'svc', 'k', 0)", ())
        run(
            "INSERT INTO issues (id, project_id, fingerprint, title, first_seen, last_seen, event_count)"
            " VALUES (1, 1, 'f', 't', 0, 10, 2)",
            (),
        )
        for n, event_id in enumerate(("e1", "e2")):
            run(
                "INSERT INTO events (project_id, event_id, issue_id, timestamp, received, release, source, payload)"
                " VALUES (1, ?, 1, ?, 0, 'r', 'test', ?)",
                (event_id, float(n), json.dumps(make_event())),
            )
        conn.close()
        store = Store(target)
        assert store.schema_version == MIGRATIONS[-1][0]
        assert store.latest_event(1).event_id == "e2"
        assert json.loads(store.get_event("e1").payload)["exception"]
        # A counted event (no payload) fits the migrated table; readers of payloads pass over it.
        kept = store.get_event("e2")
        with store.transaction() as write:
            write.execute(
                "INSERT INTO events (project_id, event_id, issue_id, timestamp, received, source, payload, summary)"
                " VALUES (1, 'e3', 1, 5, 0, 'ingest', NULL, '{}')"
            )
        assert store.latest_event(1) == kept
        with pytest.raises(NotFoundError, match="e2"):
            store.get_event("e3")
        store.close()
    finally:
        if engine == "postgres":
            drop_database(str(target))
