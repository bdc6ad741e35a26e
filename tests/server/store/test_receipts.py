"""Receipts are typed, persisted as written, and a record this version cannot read never counts as a pass."""

from __future__ import annotations

from prodloop.server.context import AppContext
from prodloop.server.ingest.importer import import_events
from prodloop.server.store import receipts
from prodloop.server.store.receipts import Gate, MutationResult, Receipt, SurvivingMutant
from tests.conftest import make_event


def _receipt(**changes: object) -> Receipt:
    gates = (Gate(name="hermetic", passed=True, evidence="ok"), Gate(name="reproduces", passed=None, evidence="no"))
    fields: dict[str, object] = dict(
        id="r" * 32, issue_id=1, event_id="e", commit_sha="c", test_path="t.py", test_name="t", test_code="x",
        test_sha256="1", fix_diff="", fix_sha256="2", passed=False, gates=gates, cpu_seconds=1.5, created_at=3.0,
    )  # fmt: skip
    fields.update(changes)
    return Receipt(**fields)  # type: ignore[arg-type]


def _mutation() -> MutationResult:
    return MutationResult(
        receipt_id="r" * 32, scope="fix", functions=["a.py::f"], not_executed=[], tests=["t.py::t"], mutants=4,
        killed=3, survived=1, unexercised=0, timeout=0, no_tests=0, suspicious=0, score=0.75, min_score=0.8,
        passed=False, survivors=[SurvivingMutant(path="a.py", line=2, diff="-x\n+y\n")], seconds=1.0, note="",
    )  # fmt: skip


def test_a_receipt_and_its_mutation_result_come_back_as_they_were_written(ctx: AppContext) -> None:
    import_events(ctx, ctx.store.create_project("svc"), [("e", make_event())], source="test")
    written = _receipt(support_files={"tests/data/x.json": "{}"})
    receipts.save(ctx.store, written)
    assert receipts.get(ctx.store, written.id) == written
    assert written.failed_gates() == ["reproduces"]
    receipts.set_mutation(ctx.store, written.id, _mutation())
    read = receipts.get(ctx.store, written.id)
    assert read.mutation == _mutation()
    assert read.mutation.survivors[0].line == 2


def test_a_stored_record_this_version_cannot_read_never_passes(ctx: AppContext) -> None:
    import_events(ctx, ctx.store.create_project("svc"), [("e", make_event())], source="test")
    receipts.save(ctx.store, _receipt(passed=True))
    with ctx.store.transaction() as conn:
        conn.execute(
            "UPDATE receipts SET gates = ?, mutation = ?",
            ('[{"name": "hermetic", "passed": "maybe"}, {"name": "made-up", "passed": true, "evidence": ""}]',
             '{"score": 1.0, "passed": true}'),
        )  # fmt: skip
    read = receipts.get(ctx.store, "r" * 32)
    assert [(g.name, g.passed) for g in read.gates] == [("hermetic", False), ("hermetic", False)]
    assert read.failed_gates() == ["hermetic", "hermetic"]
    assert read.mutation is None  # mutation testing must run again; an old record is never a pass
