"""Budget reservations hold under concurrent calls (MCP runs sync tools on worker threads)."""

from __future__ import annotations

import threading

from prodloop.server.context import AppContext
from prodloop.server.ingest.importer import import_events
from prodloop.server.store import policy, receipts
from tests.conftest import make_event


def test_concurrent_reservations_never_exceed_the_budget(ctx: AppContext) -> None:
    import_events(ctx, ctx.store.create_project("svc"), [("e", make_event())], source="test")
    granted: list[bool] = []
    start = threading.Barrier(8)

    def reserve() -> None:
        start.wait()
        _, allowed = policy.reserve_run(ctx.store, 1, max_runs=3, max_cpu_seconds=100.0, max_synthesis=2)
        granted.append(allowed)

    threads = [threading.Thread(target=reserve) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert granted.count(True) == 3
    assert policy.budget(ctx.store, 1).runs == 3


def test_synthesis_attempts_are_budgeted_apart_from_candidate_runs(ctx: AppContext) -> None:
    import_events(ctx, ctx.store.create_project("svc"), [("e", make_event())], source="test")
    limits = {"max_runs": 1, "max_cpu_seconds": 100.0, "max_synthesis": 2}
    assert [policy.reserve_run(ctx.store, 1, **limits, kind="synthesis")[1] for _ in range(3)] == [True, True, False]
    assert policy.reserve_run(ctx.store, 1, **limits, kind="candidate")[1] is True
    assert policy.reserve_run(ctx.store, 1, **limits, kind="candidate")[1] is False
    row = policy.budget(ctx.store, 1)
    assert (row.runs, row.synthesis_attempts) == (1, 2)


def test_a_slot_left_pending_by_a_dead_process_stops_counting_after_an_hour(ctx: AppContext) -> None:
    import_events(ctx, ctx.store.create_project("svc"), [("e", make_event())], source="test")
    receipts.save(ctx.store, receipts.Receipt("r", 1, "e", "c", "t.py", "t", "", "", "", "", True, (), 0.0, 0.0))
    slot, _ = policy.reserve_pull_request(ctx.store, 1, "r", max_per_issue=1, max_per_day=10, now=1_000_000.0)
    assert slot is not None
    again, why = policy.reserve_pull_request(ctx.store, 1, "r", max_per_issue=1, max_per_day=10, now=1_000_060.0)
    assert again is None and "1 of 1" in (why or "")
    later, _ = policy.reserve_pull_request(ctx.store, 1, "r", max_per_issue=1, max_per_day=10, now=1_004_000.0)
    assert later is not None


def test_provenance_pages_with_a_cursor(ctx: AppContext) -> None:
    from prodloop.tools.ship.provenance import list_provenance

    import_events(ctx, ctx.store.create_project("svc"), [("e", make_event())], source="test")
    receipts.save(ctx.store, receipts.Receipt("r", 1, "e", "c", "t.py", "t", "", "", "", "", True, (), 0.0, 0.0))
    for n in range(3):
        slot, _ = policy.reserve_pull_request(ctx.store, 1, "r", max_per_issue=5, max_per_day=5, now=float(n))
        assert slot is not None
        row = policy.PullRequestRow(slot, 1, "r", f"b{n}", "c", None, None, "local", float(n))
        policy.complete_pull_request(ctx.store, row, {"test_node": f"t{n}.py::t", "test_path": f"t{n}.py", "n": n})
    first = list_provenance(ctx.store, limit=2)
    rest = list_provenance(ctx.store, limit=2, cursor=first.next_cursor)
    assert (first.total, [r["n"] for r in first.records], [r["n"] for r in rest.records]) == (3, [0, 1], [2])
    assert rest.next_cursor is None
    assert list_provenance(ctx.store, test_path="t1.py").records[0]["n"] == 1
