"""Group commit: events are written in batches, and each batch acknowledged once committed.

A sender is answered only after the transaction holding its event has committed
(`synchronous=FULL`), so an acknowledged event is durable; batching amortizes the fsync.
`EventWriter` writes on a thread of its own (`serve --http`, where MCP shares the loop); `LoopWriter` on the event
loop itself (`serve-ingest`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future

from prodloop.server.errors import StoreError
from prodloop.server.store import EventRecord, Store
from prodloop.server.store.records import Health

logger = logging.getLogger("prodloop.server")

_STOP = object()


class _Housekeeping:
    """The retention prune, started on a thread of its own after a batch and then at most once every `seconds`,
    never twice at once; it takes the store's write lock per batch of its own, so senders wait for at most one of
    them, never for the whole prune."""

    def __init__(self, prune: Callable[[], object] | None, seconds: float) -> None:
        self._prune = prune
        self._seconds = seconds
        self._at: float | None = None
        self._thread: threading.Thread | None = None

    def due(self) -> None:
        now = time.monotonic()
        if self._prune is None or (self._at is not None and now - self._at < self._seconds):
            return
        if self._thread is not None and self._thread.is_alive():
            return
        self._at = now
        self._thread = threading.Thread(target=self._run, name="prodloop-housekeeping", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self._prune is not None
        try:
            self._prune()
        except Exception as exc:  # ingest goes on; the next round tries again
            logger.error("event writer: housekeeping failed: %s", type(exc).__name__)

    def wait(self, timeout: float = 30.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


class EventWriter:
    """`housekeeping` (the retention prune) starts on a thread of its own after the first batch and then at most
    once every `housekeeping_seconds`; it takes the store's write lock per batch of its own, so senders wait for
    at most one of them, never for the whole prune."""

    def __init__(
        self,
        store: Store,
        *,
        max_batch: int = 512,
        housekeeping: Callable[[], object] | None = None,
        housekeeping_seconds: float = 3600.0,
    ) -> None:
        self._store = store
        self._max_batch = max_batch
        self._housekeeping = _Housekeeping(housekeeping, housekeeping_seconds)
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="prodloop-event-writer", daemon=True)
        self._thread.start()

    def submit(self, records: Sequence[EventRecord], health: Health | None = None) -> Future[list[bool]]:
        """Queue records (and an envelope's health counts); the future resolves to per-record 'was new' once
        committed."""
        fut: Future[list[bool]] = Future()
        self._queue.put((list(records), health, fut))
        return fut

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=30)
        self.wait_for_housekeeping()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            count = len(first[0]) + 1  # type: ignore[index]
            while count < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
                count += len(item[0]) + 1  # type: ignore[index]
            try:
                self._commit(batch)  # type: ignore[arg-type]
            except Exception:  # the writer must outlive any one batch, or every later sender waits forever
                logger.exception("event writer: a batch could not be acknowledged")
            self._housekeeping.due()

    def wait_for_housekeeping(self, timeout: float = 30.0) -> None:
        self._housekeeping.wait(timeout)

    def _commit(self, batch: list[tuple[list[EventRecord], Health | None, Future[list[bool]]]]) -> None:
        # A sender that hung up cancelled its future: its events are still stored (they were valid and the
        # sender may retry, which is idempotent), but nobody waits for the answer.
        for _, _, fut in batch:
            fut.set_running_or_notify_cancel()  # False for a cancelled one, which stays cancelled
        records = [r for recs, _, _ in batch for r in recs]
        health = [h for _, h, _ in batch if h]
        try:
            results = self._store.write_events(records, health)
        except Exception as exc:  # the edge: every waiting sender must hear of the failure
            logger.error("event batch of %d not stored: %s", len(records), type(exc).__name__)
            for _, _, fut in batch:
                if not fut.cancelled():
                    fut.set_exception(exc)
            return
        i = 0
        for recs, _, fut in batch:
            if not fut.cancelled():
                fut.set_result(results[i : i + len(recs)])
            i += len(recs)


class LoopWriter:
    """Group commit on the event loop's own thread: what the requests submitted is written in one transaction by a
    callback of the loop, which then resolves each request's future. No second thread wants the GIL, so the loop
    never waits for a writer thread to hand it back (with a writer thread, every SQLite step and every zlib call
    handed the GIL over and took up to the switch interval to get it back). The loop is blocked while a batch
    commits: meant for a process that does nothing but ingest (`serve-ingest`), on SQLite or PostgreSQL.
    Housekeeping as `EventWriter`'s.

    Commits are at least `spacing` seconds apart (from the end of one to the start of the next): a quiet writer
    commits at once, a busy one gathers more per commit. Each commit rewrites every index page its rows touch (an
    issue's counts sit in nine indexes), so at 2,000 events/s commits of 2-3 events spent a third of ingest's CPU."""

    def __init__(
        self,
        store: Store,
        *,
        housekeeping: Callable[[], object] | None = None,
        housekeeping_seconds: float = 3600.0,
        spacing: float = 0.003,
        max_batch: int = 512,
    ) -> None:
        self._store = store
        self._spacing = spacing
        self._max_batch = max_batch
        self._pending: list[tuple[list[EventRecord], Health | None, asyncio.Future[list[bool]]]] = []
        self._pending_records = 0
        self._flushed_at = -math.inf
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._soon = False  # the timer is a call_soon: due in this turn of the loop
        self._housekeeping = _Housekeeping(housekeeping, housekeeping_seconds)

    def submit(self, records: Sequence[EventRecord], health: Health | None = None) -> asyncio.Future[list[bool]]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[bool]] = loop.create_future()
        self._pending.append((list(records), health, fut))
        self._pending_records += len(records) + 1
        if self._pending_records >= self._max_batch and not self._soon:  # full: at once, and never pushed back
            if self._timer is not None:
                self._timer.cancel()
            self._timer, self._soon = loop.call_soon(self._flush), True
        elif self._timer is None:
            wait = self._flushed_at + self._spacing - time.monotonic()
            self._soon = wait <= 0
            self._timer = loop.call_soon(self._flush) if self._soon else loop.call_later(wait, self._flush)
        return fut

    def close(self) -> None:
        self._housekeeping.wait()

    def _flush(self) -> None:
        self._timer, self._soon = None, False
        batch, self._pending, self._pending_records = self._pending, [], 0
        records = [r for recs, _, _ in batch for r in recs]
        health = [h for _, h, _ in batch if h]
        try:
            results = self._store.write_events(records, health)
        except BaseException as exc:  # every waiting sender hears of it (a KeyboardInterrupt goes on up)
            logger.error("event batch of %d not stored: %s", len(records), type(exc).__name__)
            told = exc if isinstance(exc, Exception) else StoreError("write", self._store.where, "interrupted")
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(told)
            if told is not exc:
                raise
            return
        finally:
            self._flushed_at = time.monotonic()
        i = 0
        for recs, _, fut in batch:
            if not fut.done():  # a sender that hung up cancelled it; its events are stored all the same
                fut.set_result(results[i : i + len(recs)])
            i += len(recs)
        self._housekeeping.due()
