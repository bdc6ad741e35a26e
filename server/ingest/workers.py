"""Scrubbing in worker processes: relay and prodloop's pass run beside the event loop, not under its GIL.

Each request's event items are first judged (`EventProcessor.count_items`: parsed, read by the keep policy): the
events the policy counts are done then (no scrub: a tenth of a millisecond each), and only the kept ones, a few per
issue and release, are scrubbed whole. A request's items of up to `INLINE_BYTES` in all are judged on the event
loop itself (no thread hand-off for the common event); larger ones are not judged at all where there are scrubbing
processes (kept whole, parsed only there: parsing 1 MiB of nested brackets is one C call of 150 ms holding the GIL,
which a thread would not hand back to the loop), and on a thread where there are none.
`ScrubWorkers(settings, processor, n)` starts `n` processes for the scrub (spawned, never forked from a process
with threads) on first use; each builds its own `EventProcessor` once and turns the kept items' raw bytes into
`EventRecord`s. With `n == 0` the kept items are scrubbed on a thread of this process (tests, `serve-ingest`
processes that are themselves one per core).

A refusal inside a worker (`IngestError`) comes back as the same refusal; a worker that dies takes its request
with it (503, resend) and the pool is started anew for the next one. `close()` stops the processes; an
instance that is dropped without it stops them when collected.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import weakref
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from typing import Any, cast

import anyio
import anyio.to_thread

from prodloop.server.errors import IngestError
from prodloop.server.ingest.pipeline import EventProcessor, Kept
from prodloop.server.settings import Settings
from prodloop.server.store import EventRecord

INLINE_BYTES = 64 * 1024  # a request's event items judged on the event loop up to this many bytes in all


@dataclass(frozen=True, slots=True)
class _Refusal:
    status: int
    problem: str
    message: str

    def error(self) -> IngestError:
        fix = self.message[len(self.problem) + 2 :] if self.message.startswith(self.problem) else self.message
        return IngestError(self.problem, fix, status=self.status)


@dataclass(frozen=True, slots=True)
class Batch:
    """One request's event items and what processing them needs. `numbers`: the items' numbers in the request
    (default 1, 2, ...); `decided`: kept already (the policy is not asked again)."""

    payloads: list[bytes]
    envelope: bool
    project_id: int
    user_salt: str
    fallback_event_id: Any
    now: float
    numbers: list[int] | None = None
    decided: bool = False


class ScrubWorkers:
    """`processor`: this process's (with the keep policy), which reads every item and scrubs none when there are
    worker processes."""

    def __init__(self, settings: Settings, processor: EventProcessor, workers: int) -> None:
        self._settings = settings
        self._processor = processor
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._judging = anyio.CapacityLimiter(2)
        self._scrubbing = anyio.CapacityLimiter(1)  # relay's normalizer and scrubber are never run by two threads
        self._finalizer: weakref.finalize[Any, ScrubWorkers] | None = None

    async def process(self, batch: Batch) -> list[EventRecord]:
        """Every item judged first (a refusal of any item refuses the request before anything is scrubbed), on the
        loop when the request is small; the kept ones then scrubbed in a worker process (from their raw bytes), or
        on a thread (from what judging read: nothing parsed twice)."""
        small = sum(len(p) for p in batch.payloads) <= INLINE_BYTES
        if not small and self._workers:  # not even parsed here (one json.loads holds the GIL): kept whole there
            return await self._in_worker(replace(batch, decided=True))
        if small:
            first = self._judge(batch)
        else:
            first = await anyio.to_thread.run_sync(self._judge, batch, limiter=self._judging)
        kept = [i for i, record in enumerate(first) if isinstance(record, Kept)]
        if not kept:
            return cast(list[EventRecord], first)
        if self._workers:
            rest = replace(batch, payloads=[batch.payloads[i] for i in kept], numbers=[i + 1 for i in kept],
                           decided=True)  # fmt: skip
            whole = await self._in_worker(rest)
        else:
            todo = [(cast(Kept, first[i]), f"event {i + 1}") for i in kept]
            whole = await anyio.to_thread.run_sync(self._scrub_kept, batch.project_id, todo, limiter=self._scrubbing)
        for i, record in zip(kept, whole, strict=True):
            first[i] = record
        return cast(list[EventRecord], first)

    def _scrub_kept(self, project_id: int, todo: list[tuple[Kept, str]]) -> list[EventRecord]:
        return [self._processor.scrub_kept(kept, project_id=project_id, what=what) for kept, what in todo]

    def _judge(self, batch: Batch) -> list[EventRecord | Kept]:
        return self._processor.count_items(
            batch.payloads, envelope=batch.envelope, project_id=batch.project_id, user_salt=batch.user_salt,
            fallback_event_id=batch.fallback_event_id, now=batch.now,
        )  # fmt: skip

    async def _in_worker(self, batch: Batch) -> list[EventRecord]:
        pool = self._started()
        try:
            result = await asyncio.wrap_future(pool.submit(_run, batch))
        except BrokenProcessPool:
            self._restart(pool)
            raise IngestError(
                "the event could not be scrubbed (a scrubbing process stopped); nothing was stored",
                "resend it",
                status=503,
            ) from None
        if isinstance(result, _Refusal):
            raise result.error()
        return result

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def _started(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self._workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start_worker,
                    initargs=(self._settings,),
                )
                if self._finalizer is not None:
                    self._finalizer.detach()
                self._finalizer = weakref.finalize(self, _shutdown, self._pool)
            return self._pool

    def _restart(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is broken:
                self._pool = None
        broken.shutdown(wait=False, cancel_futures=True)


def _shutdown(pool: ProcessPoolExecutor) -> None:
    pool.shutdown(wait=True, cancel_futures=True)


# -- in the worker process -------------------------------------------------------------------------------------

_worker: dict[str, EventProcessor] = {}  # this process's processor, built once by the pool's initializer


def _start_worker(settings: Settings) -> None:
    from prodloop.server.clock import SystemClock

    _worker["processor"] = EventProcessor(settings, SystemClock())  # no policy: the serving process judged


def _run(batch: Batch) -> list[EventRecord] | _Refusal:
    try:
        return _run_with(_worker["processor"], batch)
    except IngestError as exc:  # the exception's own pickling would lose its fields: sent back as data
        return _Refusal(exc.status, exc.problem, str(exc))


def _run_with(processor: EventProcessor, batch: Batch) -> list[EventRecord]:
    return processor.process_items(
        batch.payloads,
        envelope=batch.envelope,
        project_id=batch.project_id,
        user_salt=batch.user_salt,
        fallback_event_id=batch.fallback_event_id,
        now=batch.now,
        numbers=batch.numbers,
        decided=batch.decided,
    )


# Measured on 2 cores (bench/ingest.py, 16 connections, 2 rounds, every event judged on the loop first): `serve
# --http` stored 1,408 events/s [1,331-1,485] with one scrubbing process and 1,343 [1,255-1,431] with none (kept
# events scrubbed on a thread): alike, since only the kept few are scrubbed at all; one process keeps a burst of new
# issues (every event kept) off the loop MCP shares. Hence the default of the `ingest_workers` setting: 1.
# (Before events were judged first, every event went to the process: 148-173 events/s vs 145-161 with threads.)
