"""Bounded storage: a prune folds old hours into days and drops what aged out, and every answer of the history
over its window is the same before and after."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prodloop.server.clock import FixedClock
from prodloop.server.context import AppContext
from prodloop.server.ingest.importer import import_events
from prodloop.server.ingest.writer import EventWriter
from prodloop.server.settings import load_settings
from prodloop.server.store.records import Health, SessionCounts, TransactionSample
from prodloop.server.store.retention import Pruned
from prodloop.tools.observe.error_context import fetch_error_context
from prodloop.tools.observe.reliability import query_reliability_history
from tests.sample_service import SampleService

HOUR, DAY = 3600.0, 86400.0
NOW = 1_780_000_000.0 + 13.5 * HOUR  # mid-day: a window's first day is partial


def _open(service: SampleService, data: Path) -> AppContext:
    settings = load_settings(
        repo=service.root, data_dir=data, retention={"hourly_days": 2, "event_days": 3, "aggregate_days": 20}
    )
    return AppContext.open(settings, clock=FixedClock(at=NOW))


def _fill(ctx: AppContext, service: SampleService) -> None:
    project = ctx.store.create_project("shop")
    event = service.event("unknown_sku")
    ages = [30 * DAY, 10 * DAY, 10 * DAY - 3 * HOUR, 5 * DAY + 7 * HOUR, 1 * DAY, 1 * DAY - 2 * HOUR]
    raws: list[tuple[str, dict[str, Any]]] = []
    for n, age in enumerate(ages):
        raw = copy.deepcopy(event)
        raw.update(event_id=f"{n + 1:032x}", timestamp=NOW - age, release=f"shop@1.{n}", transaction="/cart")
        raws.append((f"e{n}", raw))
    import_events(ctx, project, raws, source="test")
    for n, age in enumerate(ages):
        hour = int((NOW - age) // HOUR)
        ctx.store.write_events([], [Health(
            sessions=[SessionCounts(project.id, f"shop@1.{n}", "production", hour, started=10, crashed=n,
                                    user_hash=f"u{n % 2}")],
            transactions=[TransactionSample(project.id, "/cart", f"shop@1.{n}", "production", hour, n % 2 == 0,
                                            40.0 * (n + 1))],
        )])  # fmt: skip


def _answers(ctx: AppContext, days: int) -> dict[str, Any]:
    history = query_reliability_history(
        ctx.store, ctx.git(), ctx.settings, ctx.clock, path="shop/pricing.py", days=days
    )
    kept = history.model_dump(mode="json")
    return {k: kept[k] for k in ("issues", "issues_total", "events", "events_per_day", "releases", "transactions")}


def _count(ctx: AppContext, table: str) -> int:
    return int(ctx.store.reader().execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def test_a_prune_keeps_every_answer_within_retention_and_bounds_what_is_stored(tmp_path: Path) -> None:
    service = SampleService(tmp_path / "shop")
    ctx = _open(service, tmp_path / "data")
    _fill(ctx, service)
    before = {days: _answers(ctx, days) for days in (1, 2, 7, 20)}
    assert before[20]["events"] == 5 and sum(d["events"] for d in before[20]["events_per_day"]) == 5
    assert len(before[20]["releases"]) == 5 and before[20]["transactions"]
    rows = {t: _count(ctx, t) for t in ("events", "issue_hourly", "session_hours", "transaction_hours")}
    assert rows == {"events": 6, "issue_hourly": 6, "session_hours": 6, "transaction_hours": 6}

    pruned = ctx.apply_retention()

    # Hours older than two whole days fold into their day (10 days ago: two hours become one day row); the
    # 30-day-old counts are past aggregate_days (its issue, session, session user and transaction day rows); raw
    # events past three days go, the issue's newest is kept anyway.
    assert pruned == Pruned(issue_hours_folded=4, session_hours=4, transaction_hours=4, day_rows=4, events=4)
    assert {days: _answers(ctx, days) for days in (1, 2, 7, 20)} == before
    assert ctx.apply_retention() == Pruned(0, 0, 0, 0, 0)  # nothing more to do
    old_hours = ctx.store.reader().execute("SELECT hour FROM issue_hourly WHERE hour < ?", (int(NOW // HOUR) - 72,))
    assert all(hour % 24 == 0 for (hour,) in old_hours)
    assert _count(ctx, "events") == 2 and _count(ctx, "session_days") == 5
    assert _count(ctx, "issue_hourly") == 4  # 10 days ago (one row for two hours), 5 days ago, yesterday's two
    issue = ctx.store.get_issue(1)
    assert issue.event_count == 6  # the issue's own counts are whole
    context = fetch_error_context(ctx.store, issue_id=1, max_string_chars=1024)
    assert context.event_id == f"{6:032x}"
    ctx.close()


def test_the_ingest_writer_prunes_between_batches_and_survives_a_failing_prune(tmp_path: Path) -> None:
    calls: list[float] = []

    def housekeeping(fail: bool) -> Callable[[], None]:
        def run() -> None:
            calls.append(NOW)
            if fail:
                raise RuntimeError("disk full")

        return run

    service = SampleService(tmp_path / "shop")
    ctx = _open(service, tmp_path / "data")
    project = ctx.store.create_project("shop")
    hour = int(NOW // HOUR)
    for fail in (False, True):
        calls.clear()
        writer = EventWriter(ctx.store, housekeeping=housekeeping(fail), housekeeping_seconds=3600)
        for _ in range(3):
            health = Health(
                sessions=[SessionCounts(project.id, "shop@1", "production", hour, started=1)], transactions=[]
            )
            assert writer.submit([], health).result(timeout=10) == []  # acknowledged, prune or not
        writer.close()
        assert len(calls) == 1  # after the first batch, then not again within the hour
    started = ctx.store.reader().execute("SELECT SUM(started) FROM session_hours").fetchone()[0]
    assert started == 6
    ctx.close()
