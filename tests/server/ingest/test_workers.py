"""Scrubbing in worker processes: the same records and refusals as in-process, a dead worker answered with 503,
and no process left behind."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from prodloop.server.clock import SystemClock
from prodloop.server.context import AppContext
from prodloop.server.errors import IngestError
from prodloop.server.ingest.pipeline import EventProcessor, Kept
from prodloop.server.ingest.sampling import keep_policy
from prodloop.server.ingest.workers import INLINE_BYTES, Batch, ScrubWorkers
from prodloop.server.settings import Settings
from prodloop.server.store import EventRecord
from tests.conftest import LiveServer, auth_header, gz, make_event, post


def _workers(n: int) -> ScrubWorkers:
    settings = Settings(repo=Path("."))
    return ScrubWorkers(settings, EventProcessor(settings, SystemClock()), n)


def _batch(*payloads: bytes) -> Batch:
    return Batch(list(payloads), True, 1, "salt", None, 1_700_000_000.0)


def _event(secret: str) -> bytes:
    return json.dumps(make_event(extra={"db_password": secret, "note": "mail ann@example.com"})).encode()


def _stable(payload: str) -> dict[str, object]:
    event: dict[str, object] = json.loads(payload)
    event.pop("received")  # relay's time of normalizing
    return event


def test_worker_processes_store_what_threads_store_and_stop_on_close() -> None:
    before = set(multiprocessing.active_children())
    in_process, workers = _workers(0), _workers(1)
    try:
        payload = _event("pw-in-worker-0001")
        local = anyio.run(in_process.process, _batch(payload))
        remote = anyio.run(workers.process, _batch(payload))
        assert [_stable(r.payload) for r in remote] == [_stable(r.payload) for r in local]
        assert "pw-in-worker-0001" not in remote[0].payload and "ann@example.com" not in remote[0].payload
        assert set(multiprocessing.active_children()) - before
    finally:
        workers.close()
    assert not set(multiprocessing.active_children()) - before


def test_a_refusal_in_a_worker_is_the_same_refusal() -> None:
    in_process, workers = _workers(0), _workers(1)
    try:
        for bad in (b"{not json", json.dumps(make_event(event_id="nope")).encode()):
            with pytest.raises(IngestError) as local:
                anyio.run(in_process.process, _batch(bad))
            with pytest.raises(IngestError) as remote:
                anyio.run(workers.process, _batch(bad))
            assert (remote.value.status, str(remote.value)) == (local.value.status, str(local.value))
    finally:
        workers.close()


def test_a_worker_that_dies_fails_its_request_with_503_and_the_next_one_is_served() -> None:
    before = set(multiprocessing.active_children())
    workers = _workers(1)
    try:
        anyio.run(workers.process, _batch(_event("pw-1")))
        for child in set(multiprocessing.active_children()) - before:
            assert child.pid is not None
            os.kill(child.pid, signal.SIGKILL)
            child.join(10)
        with pytest.raises(IngestError) as refused:
            anyio.run(workers.process, _batch(_event("pw-2")))
        assert refused.value.status == 503
        assert len(anyio.run(workers.process, _batch(_event("pw-3")))) == 1
    finally:
        workers.close()
    assert not set(multiprocessing.active_children()) - before


def test_only_kept_events_reach_a_worker_and_refusals_keep_their_item_numbers(
    make_ctx: Callable[..., AppContext],
) -> None:
    """The serving process judges every item; a counted event is done there (no worker started for it), a kept one is
    scrubbed in the worker and keeps its input digest (what the policy counts kept inputs by); a refusal names the
    item's number in its request whether it is found when judging or when scrubbing."""
    ctx = make_ctx(ingest_kept_per_release=1)
    project = ctx.store.create_project("svc")
    processor = EventProcessor(ctx.settings, ctx.clock, policy=keep_policy(ctx.settings, ctx.store))
    workers = ScrubWorkers(ctx.settings, processor, 1)
    before = set(multiprocessing.active_children())
    batch = lambda *p: Batch(list(p), True, project.id, project.public_key, None, ctx.clock.now())  # noqa: E731
    event = lambda: json.dumps(make_event(extra={"db_password": "pw-0002"})).encode()  # noqa: E731
    try:
        first = anyio.run(workers.process, batch(event()))
        assert first[0].payload is not None and "pw-0002" not in first[0].payload
        assert first[0].input_digest is not None
        assert set(multiprocessing.active_children()) - before  # scrubbed in the worker
        ctx.store.write_events(first)
        workers.close()  # a counted event must not need the worker: none is running now
        counted = anyio.run(workers.process, batch(event(), event()))
        assert [r.payload for r in counted] == [None, None]
        assert not set(multiprocessing.active_children()) - before
        too_big = json.dumps(make_event(extra={"blob": "x" * (ctx.settings.max_event_bytes + 10)})).encode()
        with pytest.raises(IngestError, match="event 2 "):
            anyio.run(workers.process, batch(event(), too_big))  # refused when scrubbed, in the worker
        with pytest.raises(IngestError, match="event item 3 is not valid JSON"):
            anyio.run(workers.process, batch(event(), event(), b"{nope"))  # refused when judged
    finally:
        workers.close()
    assert ctx.store.count_events() == 1  # nothing of the refused requests


class _Recording(EventProcessor):
    """The real processor, noting on which thread it judged and scrubbed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.judged_on: list[int] = []
        self.scrubbed_on: list[int] = []

    def count_items(self, *args: Any, **kwargs: Any) -> list[EventRecord | Kept]:
        self.judged_on.append(threading.get_ident())
        return super().count_items(*args, **kwargs)

    def scrub_kept(self, *args: Any, **kwargs: Any) -> EventRecord:
        self.scrubbed_on.append(threading.get_ident())
        return super().scrub_kept(*args, **kwargs)


def test_no_request_holds_the_event_loop_for_long(make_ctx: Callable[..., AppContext]) -> None:
    """A small request is judged on the loop (no hand-off for the common event); one over INLINE_BYTES, and every
    scrub without worker processes, on a thread: a hostile request cannot freeze the loop that MCP shares."""
    ctx = make_ctx()
    project = ctx.store.create_project("svc")
    processor = _Recording(ctx.settings, ctx.clock, policy=keep_policy(ctx.settings, ctx.store))
    workers = ScrubWorkers(ctx.settings, processor, 0)
    nested: Any = "leaf"
    for _ in range(60):
        nested = [nested, nested] if len(json.dumps(nested)) < INLINE_BYTES else [nested]

    async def run() -> int:
        small = Batch([_event("pw-small")], True, project.id, project.public_key, None, ctx.clock.now())
        big_event = json.dumps(make_event(extra={"nested": nested})).encode()
        assert len(big_event) > INLINE_BYTES
        big = Batch([big_event], True, project.id, project.public_key, None, ctx.clock.now())
        await workers.process(small)
        await workers.process(big)
        return threading.get_ident()

    loop_thread = anyio.run(run)
    assert processor.judged_on[0] == loop_thread and processor.judged_on[1] != loop_thread
    assert processor.scrubbed_on and loop_thread not in processor.scrubbed_on  # both were kept: new issues
    # With a scrubbing process a large request is not parsed here at all (one json.loads would hold the GIL).
    processor.judged_on.clear()
    with_process = ScrubWorkers(ctx.settings, processor, 1)
    try:
        workers = with_process
        anyio.run(run)
    finally:
        with_process.close()
    assert len(processor.judged_on) == 1  # the small request only


def test_a_store_body_over_the_event_limit_is_refused_before_it_is_read(
    live_server: Callable[..., LiveServer],
) -> None:
    server = live_server()
    limit = server.ctx.settings.max_event_bytes
    body = b'{"event_id": "' + b"a" * 32 + b'", "extra": {"x": "' + b"[" * limit + b'"}}'
    reply = post(f"{server.base_url}/api/{server.project.id}/store/", gz(body), auth_header(server.project.public_key)
                 | {"Content-Encoding": "gzip"})  # fmt: skip
    assert reply.status == 413 and "over the limit of" in reply.body["detail"]
    assert server.ctx.store.count_events() == 0
