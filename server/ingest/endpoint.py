"""The HTTP face of ingest: `POST /api/<project>/envelope/` and `POST /api/<project>/store/`.

Every refusal is JSON `{"detail": ...}` with the status sentry-sdk and operators expect;
nothing is stored unless the whole request was valid.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Any

import anyio
import anyio.to_thread
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from prodloop.server.clock import Clock
from prodloop.server.errors import AuthError, IngestError, PayloadTooLarge, RateLimited, StoreError
from prodloop.server.ingest.envelope import decompress, key_from_auth_header, key_from_dsn, parse_envelope
from prodloop.server.ingest.pipeline import EventProcessor
from prodloop.server.ingest.ratelimit import RateLimiter
from prodloop.server.ingest.sampling import keep_policy
from prodloop.server.ingest.workers import Batch, ScrubWorkers
from prodloop.server.ingest.writer import EventWriter, LoopWriter
from prodloop.server.settings import Settings
from prodloop.server.store import EventRecord, Project, Store
from prodloop.server.store.records import Health

logger = logging.getLogger("prodloop.server")


class _Gone(Exception):
    def __init__(self, size: int) -> None:
        self.size = size


_CORS = {"Access-Control-Allow-Origin": "*"}
_HEALTH_ITEMS = frozenset({"session", "sessions", "transaction"})
_MAX_HEALTH_ITEMS = 1000
_INLINE_BODY = 16 * 1024  # a body read (inflated, split) on the event loop up to this many bytes; larger on a thread


class Ingest:
    """`workers`: processes that scrub events (0: threads of this process; see `workers.py`). `close()` stops them."""

    def __init__(
        self, settings: Settings, store: Store, writer: EventWriter | LoopWriter, clock: Clock, *, workers: int = 0
    ) -> None:
        self._settings = settings
        self._store = store
        self._writer = writer
        self._clock = clock
        self._processor = EventProcessor(settings, clock, policy=keep_policy(settings, store))
        self._workers = ScrubWorkers(settings, self._processor, workers)
        self._limiter = RateLimiter(settings.ingest_rate_limit, settings.ingest_rate_burst, clock)
        self._projects: dict[int, Project] = {}
        self._cpu = anyio.CapacityLimiter(4)

    def close(self) -> None:
        self._workers.close()

    def routes(self) -> list[Route]:
        return [
            Route("/api/{project_id}/envelope/", self.envelope, methods=["POST"]),
            Route("/api/{project_id}/store/", self.store_endpoint, methods=["POST"]),
        ]

    async def envelope(self, request: Request) -> Response:
        return await self._handle(request, envelope=True)

    async def store_endpoint(self, request: Request) -> Response:
        return await self._handle(request, envelope=False)

    async def _handle(self, request: Request, *, envelope: bool) -> Response:
        try:
            project = self._project(request.path_params["project_id"])
            sent_key = self._request_key(request)
            if sent_key is not None:  # refuse a wrong key before spending anything on the body
                self._authenticate(project, sent_key)
            body = await self._read_body(request)
            coding = request.headers.get("content-encoding")
            if len(body) <= _INLINE_BODY:  # read on the loop; a larger body (or what it inflates to) on a thread
                payloads, envelope_key, header_event_id, health_items = self._items(body, coding, envelope=envelope)
            else:
                payloads, envelope_key, header_event_id, health_items = await anyio.to_thread.run_sync(
                    lambda: self._items(body, coding, envelope=envelope), limiter=self._cpu
                )
            if sent_key is None:
                self._authenticate(project, envelope_key)
            if payloads or health_items:  # a session or transaction item costs like an event
                retry = self._limiter.take(project.id, len(payloads) + len(health_items))
                if retry is not None:
                    raise RateLimited(project.id, retry)
            records = []
            if payloads:  # judged here; the kept ones scrubbed in worker processes when there are any
                batch = Batch(payloads, envelope, project.id, project.public_key, header_event_id, self._clock.now())
                records = await self._workers.process(batch)
            health = Health([], [])
            if health_items:
                health = await anyio.to_thread.run_sync(
                    lambda: self._processor.health(health_items, project_id=project.id, user_salt=project.public_key),
                    limiter=self._cpu,
                )
            if records or health:
                await self._commit(records, health)
            if health.dropped:
                logger.info(
                    "ingest: %d session or transaction item(s) left out: %s", len(health.dropped), health.dropped[0]
                )
        except IngestError as exc:
            headers = dict(_CORS)
            if isinstance(exc, RateLimited):
                headers["Retry-After"] = str(int(exc.retry_after + 0.999))
                headers["X-Sentry-Rate-Limits"] = f"{int(exc.retry_after + 0.999)}::organization"
            logger.info("ingest refused (%d): %s", exc.status, exc.problem)
            return JSONResponse({"detail": str(exc)}, status_code=exc.status, headers=headers)
        except _Gone as gone:  # one line, no traceback: nobody is left to answer
            logger.info("ingest: the client disconnected after %d bytes of the body; nothing was stored", gone.size)
            return Response(status_code=400)
        except StoreError:
            return JSONResponse(
                {"detail": "the store could not commit the event; it was not stored, resend it"},
                status_code=503,
                headers={**_CORS, "Retry-After": "5"},
            )
        event_id = records[0].event_id if records else header_event_id
        answer: dict[str, Any] = {"id": event_id} if event_id else {}
        if health.dropped:  # sentry-sdk ignores the body; a person debugging a sender reads why
            answer["dropped"] = health.dropped[:20]
        return JSONResponse(answer, headers=_CORS)

    def _project(self, raw_id: str) -> Project:
        try:
            project_id = int(raw_id)
        except ValueError:
            raise IngestError(
                f"project id {raw_id[:40]} is not a number", "use the DSN printed by `prodloop init`"
            ) from None
        project = self._projects.get(project_id)
        if project is None:
            project = self._store.get_project(project_id)
            if project is None:  # answered exactly like a wrong key: which projects exist is not for strangers
                raise _refused(project_id)
            self._projects[project_id] = project
        return project

    async def _read_body(self, request: Request) -> bytes:
        limit = self._settings.max_envelope_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge("the request body", int(declared), limit)
        chunks: list[bytes] = []
        size = 0
        timeout = self._settings.body_timeout_seconds
        stream = request.stream().__aiter__()
        try:
            while True:
                with anyio.fail_after(timeout):  # a body that stalls must not hold a worker; a slow one may go on
                    try:
                        chunk = await stream.__anext__()
                    except StopAsyncIteration:
                        break
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge("the request body", size, limit)
                chunks.append(chunk)
        except TimeoutError:
            raise IngestError(
                f"the request body stalled (nothing for {timeout:g} s after {size} bytes)",
                "send the body without pauses",
                status=408,
            ) from None
        except ClientDisconnect:
            raise _Gone(size) from None
        if not size:
            raise IngestError("the request body is empty", "send an envelope or an event")
        return b"".join(chunks)

    def _items(
        self, body: bytes, coding: str | None, *, envelope: bool
    ) -> tuple[list[bytes], str | None, Any, list[tuple[str, bytes]]]:
        """The body inflated and split: the event items (raw bytes, parsed where they are judged), the envelope's
        DSN key and event id, and its session and transaction items."""
        if not envelope:  # one event, held to the limit of an envelope's event item, even while it is inflated
            limit = self._settings.max_event_bytes
            data = decompress(body, coding, limit)
            if len(data) > limit:
                raise PayloadTooLarge("the event", len(data), limit)
            return [data], None, None, []
        data = decompress(body, coding, self._settings.max_envelope_bytes)
        env = parse_envelope(data, max_item_bytes=self._settings.max_event_bytes)
        events = [i.payload for i in env.items if i.type == "event"]
        health = [(i.type, i.payload) for i in env.items if i.type in _HEALTH_ITEMS]
        if len(health) > _MAX_HEALTH_ITEMS:
            raise IngestError(
                f"the envelope holds {len(health)} session and transaction items", f"send at most {_MAX_HEALTH_ITEMS}"
            )
        return events, key_from_dsn(env.headers.get("dsn")), env.headers.get("event_id"), health

    @staticmethod
    def _request_key(request: Request) -> str | None:
        return (
            key_from_auth_header(request.headers.get("x-sentry-auth"))
            or key_from_auth_header(request.headers.get("authorization"))
            or request.query_params.get("sentry_key")
        )

    def _authenticate(self, project: Project, key: str | None) -> None:
        if not key:
            raise AuthError(
                "no DSN key was sent",
                "send X-Sentry-Auth (sentry-sdk does this when given the DSN) or ?sentry_key=",
            )
        if not hmac.compare_digest(key.encode(), project.public_key.encode()):
            raise _refused(project.id)

    async def _commit(self, records: list[EventRecord], health: Health) -> None:
        await asyncio.wrap_future(self._writer.submit(records, health))


def _refused(project_id: int) -> AuthError:
    """One answer for a wrong key and for a project that does not exist."""
    return AuthError(
        f"the DSN key is not a key of project {project_id} here",
        "use the DSN printed by `prodloop init` for this project (its path ends in the project id)",
        status=403,
    )
