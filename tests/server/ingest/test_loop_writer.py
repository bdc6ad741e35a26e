"""The loop writer (serve-ingest's group commit on the event loop): what one turn submits is one transaction, commits
are spaced, a failed batch fails every waiting sender and the next batch is written, a sender that hung up does not
stop it, and a full batch is written without waiting."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from prodloop.server.context import AppContext
from prodloop.server.errors import StoreError
from prodloop.server.ingest.pipeline import EventProcessor
from prodloop.server.ingest.writer import LoopWriter
from prodloop.server.store import EventRecord, Store
from prodloop.server.store.records import Health
from tests.conftest import make_event

pytestmark = pytest.mark.anyio


class _Counting(Store):
    """The real store, counting its write transactions (and failing the ones asked to)."""

    def __init__(self, target: object) -> None:
        super().__init__(target)  # type: ignore[arg-type]
        self.batches: list[int] = []
        self.fail_next = False

    def write_events(self, records: Sequence[EventRecord], health: Sequence[Health] = ()) -> list[bool]:
        if self.fail_next:
            self.fail_next = False
            raise OSError("disk full")
        self.batches.append(len(records))
        return super().write_events(records, health)


@pytest.fixture
def store(ctx: AppContext) -> Store:
    store = _Counting(ctx.store.target)
    yield store
    store.close()


def _records(ctx: AppContext, store: Store, n: int) -> list[EventRecord]:
    project = store.get_project(1) or store.create_project("svc")
    processor = EventProcessor(ctx.settings, ctx.clock)
    return [
        processor.process(make_event(), project_id=project.id, user_salt=project.public_key, source="test")
        for _ in range(n)
    ]


async def test_one_turns_submissions_are_one_transaction_and_commits_are_spaced(
    ctx: AppContext, store: _Counting
) -> None:
    records = _records(ctx, store, 7)
    writer = LoopWriter(store, spacing=0.2)
    first = await asyncio.gather(*(writer.submit([r]) for r in records[:3]))
    assert first == [[True]] * 3 and store.batches == [3]
    # Within the spacing: these wait for one commit together, though they arrive in different turns.
    later = [writer.submit([records[3]])]
    await asyncio.sleep(0)
    later += [writer.submit([records[4], records[5]]), writer.submit([records[3]])]  # the last one a duplicate
    assert await asyncio.gather(*later) == [[True], [True, True], [False]]
    assert store.batches == [3, 4]
    writer.close()


async def test_a_failed_batch_fails_its_senders_and_the_next_batch_is_written(
    ctx: AppContext, store: _Counting
) -> None:
    records = _records(ctx, store, 3)
    writer = LoopWriter(store, spacing=0)
    store.fail_next = True
    failed = await asyncio.gather(writer.submit([records[0]]), writer.submit([records[1]]), return_exceptions=True)
    assert [type(f) for f in failed] == [OSError, OSError]
    assert await writer.submit([records[2]]) == [True]
    assert store.count_events() == 1


async def test_a_sender_that_hangs_up_is_still_written_and_stops_nothing(ctx: AppContext, store: _Counting) -> None:
    records = _records(ctx, store, 2)
    writer = LoopWriter(store, spacing=0)
    abandoned = writer.submit([records[0]])
    abandoned.cancel()
    assert await writer.submit([records[1]]) == [True]
    assert store.count_events() == 2  # the abandoned sender's event was valid and is kept


async def test_a_full_batch_is_written_without_waiting_for_the_spacing(ctx: AppContext, store: _Counting) -> None:
    records = _records(ctx, store, 6)
    writer = LoopWriter(store, spacing=3600, max_batch=4)  # spacing an hour: only a full batch can be written
    await writer.submit([records[0]])  # the first commit of a quiet writer is at once
    waiting = writer.submit([records[1]])
    full = writer.submit([records[2], records[3], records[4]])  # 1 + 1 + 3 + 1 >= 4
    assert await asyncio.wait_for(asyncio.gather(waiting, full), timeout=10) == [[True], [True, True, True]]
    assert store.batches == [1, 4]


async def test_a_full_batchs_commit_is_not_pushed_back_by_later_senders(ctx: AppContext, store: _Counting) -> None:
    records = _records(ctx, store, 5)
    writer = LoopWriter(store, spacing=3600, max_batch=4)
    await writer.submit([records[0]])
    full = writer.submit([records[1], records[2], records[3]])  # full: its commit is due in this turn
    seen: list[list[int]] = []
    asyncio.get_running_loop().call_soon(lambda: seen.append(list(store.batches)))
    later = writer.submit([records[4]])  # must not move the due commit behind the callback above
    await asyncio.wait_for(full, timeout=10)
    assert seen == [[1, 4]]  # the commit ran before the callback queued after it, this sender included
    assert await later == [True]


class _Interrupt(BaseException):
    """Not an Exception (as KeyboardInterrupt is not), but one the event loop hands to its handler."""


async def test_an_interrupted_commit_fails_its_senders_before_it_goes_up(ctx: AppContext, store: _Counting) -> None:
    records = _records(ctx, store, 1)

    class _Interrupted(_Counting):
        def write_events(self, records: Sequence[EventRecord], health: Sequence[Health] = ()) -> list[bool]:
            raise _Interrupt

    broken = _Interrupted(store.target)
    loop = asyncio.get_running_loop()
    raised: list[object] = []
    loop.set_exception_handler(lambda _, context: raised.append(context.get("exception")))
    try:
        waiting = LoopWriter(broken, spacing=0).submit(records)
        with pytest.raises(StoreError):
            await asyncio.wait_for(waiting, timeout=10)
    finally:
        loop.set_exception_handler(None)
        broken.close()
    assert [type(e) for e in raised] == [_Interrupt]  # and it went on up, to the loop
