"""The HTTP application: MCP at `/mcp` (bearer token), Sentry ingest under `/api/`, `/healthz`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from prodloop.server.auth import BearerAuth
from prodloop.server.context import AppContext
from prodloop.server.ingest.endpoint import Ingest
from prodloop.server.ingest.writer import EventWriter
from prodloop.server.mcp_app import build_mcp


def build_http_app(ctx: AppContext, *, mcp_token: str) -> Starlette:
    writer = EventWriter(ctx.store)
    ingest = Ingest(ctx.settings, ctx.store, writer, ctx.clock)
    mcp = build_mcp(ctx)
    mcp_http = mcp.streamable_http_app(streamable_http_path="/mcp", host=ctx.settings.host)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "schema_version": ctx.store.schema_version})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            async with mcp.session_manager.run():
                yield
        finally:
            writer.close()

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            *ingest.routes(),
            # Last, so only /mcp (and unknown paths) pass the bearer check.
            Mount("/", app=BearerAuth(mcp_http, mcp_token)),
        ],
        lifespan=lifespan,
    )
