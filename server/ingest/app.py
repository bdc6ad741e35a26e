"""Ingest alone, in one or several processes on one port: `prodloop serve-ingest --processes N`.

`serve --http` answers MCP, the dashboard, the webhooks and ingest from one process, which is what one agent or a
small team needs. MCP sessions live in that process's memory, so it cannot be copied behind one port; ingest can:
each event is a request of its own and every process writes the same store (SQLite serializes the writers' batches
with its lock, PostgreSQL with its advisory lock). `serve-ingest` runs uvicorn's own worker processes (one listening
socket; the kernel hands each connection to one worker; a worker that dies is started again), each with its own
store connections, writer and scrubbing, and nothing but `/api/<project>/envelope/`, `/api/<project>/store/` and
`/healthz`. Triage, the merge watch and the rest stay with `serve --http`.

uvicorn starts each worker by importing `create_app` here; the settings travel in the environment
(`PRODLOOP_INGEST_SERVE`, set by the command), so every worker reads them as the command did.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from prodloop.server.context import AppContext
from prodloop.server.ingest.endpoint import Ingest
from prodloop.server.ingest.writer import LoopWriter
from prodloop.server.settings import Settings, load_settings

ENV = "PRODLOOP_INGEST_SERVE"


def build_ingest_app(ctx: AppContext, *, workers: int | None = None) -> Starlette:
    """The ingest routes and `/healthz` over `ctx` (closed when the app stops). `workers`: scrubbing processes of
    this process (default the `ingest_workers` setting)."""
    from prodloop.server.http_app import HostCheck, allowed_hosts

    hosts = allowed_hosts(ctx.settings)
    writer = LoopWriter(ctx.store, housekeeping=ctx.apply_retention)
    scrubbers = ctx.settings.ingest_workers if workers is None else workers
    ingest = Ingest(ctx.settings, ctx.store, writer, ctx.clock, workers=scrubbers)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "schema_version": ctx.store.schema_version, "pid": os.getpid()})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            ingest.close()
            writer.close()
            ctx.close()

    return Starlette(
        middleware=[Middleware(HostCheck, hosts=hosts)],
        routes=[Route("/healthz", healthz, methods=["GET"]), *ingest.routes()],
        lifespan=lifespan,
    )


def worker_environment(settings: Settings, *, scrubbers: int) -> str:
    """What `create_app` needs to rebuild `settings` in a worker: where the repository and data are, where to listen,
    how many scrubbing processes. Everything else each worker reads as the command did (environment, files)."""
    return json.dumps(
        {
            "repo": str(settings.repo),
            "data_dir": None if settings.data_dir is None else str(settings.data_dir),
            "host": settings.host,
            "port": settings.port,
            "scrubbers": scrubbers,
        }
    )


def create_app() -> Starlette:
    """uvicorn's factory, called once in each worker process."""
    args = json.loads(os.environ[ENV])
    settings = load_settings(
        repo=Path(args["repo"]),
        data_dir=None if args["data_dir"] is None else Path(args["data_dir"]),
        host=args["host"],
        port=args["port"],
    )
    return build_ingest_app(AppContext.open(settings), workers=args["scrubbers"])
