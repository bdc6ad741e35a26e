"""Ingest alone, in one or several processes on one port: `prodloop serve-ingest --processes N`.

`serve --http` answers MCP, the dashboard, the webhooks and ingest from one process, which is what one agent or a
small team needs. MCP sessions live in that process's memory, so it cannot be copied behind one port; ingest can:
each event is a request of its own and every process writes the same store (on SQLite the writers' batches take
turns on a file lock beside it, on PostgreSQL on its advisory lock). `serve-ingest` runs uvicorn's own worker
processes (one listening socket; the kernel hands each connection to one worker; a worker that dies is started
again), each with its own store connections, writer and scrubbing, and nothing but `/api/<project>/envelope/`,
`/api/<project>/store/` and `/healthz`. Triage, the merge watch and the rest stay with `serve --http`.

uvicorn starts each worker by importing `create_app` here (and starts one again when one dies); every worker gets
the command's settings as the command resolved them (`worker_settings`), never reading the repository's
configuration again: a worker restarted after the repository changed serves exactly as its siblings.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from prodloop.server.context import AppContext
from prodloop.server.ingest.endpoint import Ingest
from prodloop.server.ingest.writer import LoopWriter
from prodloop.server.settings import Settings

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


@contextlib.contextmanager
def worker_settings(settings: Settings, *, scrubbers: int) -> Iterator[None]:
    """While serving: `settings` and `scrubbers` pickled into a file only this user can read (0600 in a new 0700
    directory: the settings may hold the database URL's password and the MCP token), named by `ENV` in the
    environment the workers inherit; removed when serving ends."""
    with tempfile.TemporaryDirectory(prefix="prodloop-ingest-") as private:
        path = Path(private) / "settings.pickle"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            pickle.dump((settings, scrubbers), out)
        before = os.environ.get(ENV)
        os.environ[ENV] = str(path)
        try:
            yield
        finally:
            if before is None:
                os.environ.pop(ENV, None)
            else:
                os.environ[ENV] = before


def create_app() -> Starlette:
    """uvicorn's factory, called once in each worker process."""
    with open(os.environ[ENV], "rb") as saved:  # written by this server's own command (`worker_settings`)
        settings, scrubbers = pickle.load(saved)  # noqa: S301
    return build_ingest_app(AppContext.open(settings), workers=scrubbers)
