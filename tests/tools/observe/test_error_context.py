"""fetch_error_context: paging from the crash outward, caps, and the size budget."""

from __future__ import annotations

import pytest

from prodloop.server.context import AppContext
from prodloop.server.errors import InvalidArgument
from prodloop.server.ingest.importer import import_events
from prodloop.tools.observe.error_context import fetch_error_context
from tests.conftest import make_event


def _deep_event(frames: int = 30, crumbs: int = 25) -> dict[str, object]:
    event = make_event(
        breadcrumbs={
            "values": [
                {"message": f"step {i}", "category": "app", "timestamp": 1_790_000_000 + i} for i in range(crumbs)
            ]
        },
        tags={"region": "eu-1"},
    )
    stack = [
        {
            "module": "shop.deep",
            "function": f"level_{i}",
            "filename": "shop/deep.py",
            "lineno": 10 + i,
            "context_line": f"    return level_{i + 1}(x)",
            "in_app": True,
            "vars": {"x": "'" + "v" * 3000 + "'", "i": str(i)},
        }
        for i in range(frames)
    ]
    event["exception"]["values"][0]["stacktrace"]["frames"] = stack  # type: ignore[index]
    return event


def _store(ctx: AppContext, event: dict[str, object]) -> int:
    project = ctx.store.create_project("svc")
    assert import_events(ctx, project, [("t", event)], source="test").stored == 1
    return 1


def test_frames_page_from_the_crash_outward_and_cover_every_frame_once(ctx: AppContext) -> None:
    issue_id = _store(ctx, _deep_event(frames=30))
    seen: list[str | None] = []
    cursor = None
    pages = 0
    while True:
        page = fetch_error_context(ctx.store, issue_id=issue_id, frames_limit=8, frame_cursor=cursor)
        assert page.frames_total == 30
        seen = [f.function for f in page.frames] + seen
        pages += 1
        cursor = page.next_frame_cursor
        if cursor is None:
            break
    assert pages == 4
    assert seen == [f"level_{i}" for i in range(30)]


def test_breadcrumbs_page_newest_first(ctx: AppContext) -> None:
    issue_id = _store(ctx, _deep_event(crumbs=25))
    first = fetch_error_context(ctx.store, issue_id=issue_id, breadcrumbs_limit=10)
    assert [b.message for b in first.breadcrumbs][:2] == ["step 24", "step 23"]
    assert first.breadcrumbs_total == 25
    second = fetch_error_context(
        ctx.store, issue_id=issue_id, breadcrumbs_limit=10, breadcrumb_cursor=first.next_breadcrumb_cursor
    )
    assert second.breadcrumbs[0].message == "step 14"
    assert first.tags == {"region": "eu-1"}


def test_strings_are_capped_and_the_whole_result_fits_its_budget(ctx: AppContext) -> None:
    issue_id = _store(ctx, _deep_event(frames=30))
    roomy = fetch_error_context(ctx.store, issue_id=issue_id, max_string_chars=256, max_result_chars=500_000)
    x = roomy.frames[-1].vars["x"]  # type: ignore[index]
    assert x.endswith("more chars]")
    assert len(x) < 300
    tight = fetch_error_context(ctx.store, issue_id=issue_id, max_result_chars=8_000)
    assert len(tight.model_dump_json()) <= 8_000
    assert tight.budget_notes
    for note in tight.budget_notes:  # each cut says how to get the rest: the argument and its value
        assert "max_result_chars above 8000" in note or "frame_cursor=<next_frame_cursor>" in note, note
    assert tight.frames[-1].function == "level_29"  # the crash frame always survives


def test_occurrence_series_has_zero_hours_filled(ctx: AppContext) -> None:
    project = ctx.store.create_project("svc")
    t0 = 1_790_000_000.0
    events = [("a", make_event(timestamp=t0)), ("b", make_event(timestamp=t0 + 3 * 3600))]
    import_events(ctx, project, events, source="test")
    result = fetch_error_context(ctx.store, issue_id=1, series_hours=4)
    assert [h.count for h in result.occurrences.hourly] == [1, 0, 0, 1]
    assert result.occurrences.count == 2


def test_bad_cursor_and_missing_ids_are_invalid_arguments(ctx: AppContext) -> None:
    issue_id = _store(ctx, make_event())
    with pytest.raises(InvalidArgument):
        fetch_error_context(ctx.store, issue_id=issue_id, frame_cursor="issues:1")
    with pytest.raises(InvalidArgument):
        fetch_error_context(ctx.store, issue_id=issue_id, event_id="a" * 32)
