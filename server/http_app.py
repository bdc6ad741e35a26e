"""The HTTP application: MCP at `/mcp` (bearer token), Sentry ingest under `/api/`, the Sentry and GitHub webhooks
under `/hooks/`, the dashboard under `/dashboard` (a session opened with the same token), `/healthz`."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import AsyncIterator

from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from prodloop.server.auth import BearerAuth
from prodloop.server.background import BackgroundWatch
from prodloop.server.context import AppContext
from prodloop.server.dashboard import dashboard_routes
from prodloop.server.errors import ConfigError
from prodloop.server.ingest.endpoint import Ingest
from prodloop.server.ingest.writer import EventWriter
from prodloop.server.mcp_app import build_mcp
from prodloop.server.settings import Settings
from prodloop.server.sources.ci_results import CIResults
from prodloop.server.sources.github_webhook import GitHubWebhook, MergeCallback
from prodloop.server.sources.sentry_webhook import SentryWebhook

logger = logging.getLogger("prodloop.server")


class HostCheck:
    """421 for a request whose Host header is not one the server answers (ingest and health too, not only MCP)."""

    def __init__(self, app: ASGIApp, hosts: list[str]) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
            if not host_allowed(host, self.hosts):
                response = JSONResponse({"detail": "Host not allowed: set allowed_hosts"}, status_code=421)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def allowed_hosts(settings: Settings) -> list[str]:
    """`Host` values the server answers (`name:*` for any port): loopback names when bound to loopback; otherwise
    the `allowed_hosts` setting, without which a server bound beyond loopback refuses to start (DNS rebinding)."""
    if settings.host in _LOOPBACK:
        return ["127.0.0.1:*", "localhost:*", "[::1]:*"]
    if not settings.allowed_hosts:
        raise ConfigError(
            "allowed_hosts",
            f"serve binds to {settings.host}, beyond loopback, and no Host names are allowed",
            "set PRODLOOP_ALLOWED_HOSTS='[\"prodloop.internal:8765\"]' (the names senders and agents use)",
        )
    return [h if ":" in h.removeprefix("[").split("]")[-1] else f"{h}:*" for h in settings.allowed_hosts]


def host_allowed(host: str, patterns: list[str]) -> bool:
    """`name:*` matches the bare name (port 80/443 behind a proxy) and `name:<digits>`; anything else exactly;
    names compare case-insensitively, brackets (`[::1]`) literally."""
    host = host.lower()
    for pattern in (p.lower() for p in patterns):
        if pattern.endswith(":*"):
            name = pattern[:-2]
            if host == name or (host.startswith(name + ":") and host[len(name) + 1 :].isdigit()):
                return True
        elif host == pattern:
            return True
    return False


class BackgroundTriage:
    """Triage every `triage.interval_seconds` while serving, when events arrived since the last pass (the first pass
    one interval after start). A failed pass is logged and the next one tries again."""

    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx
        self._stop = threading.Event()
        self._seen = -1
        self._thread = threading.Thread(target=self._run, name="prodloop-triage", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from prodloop.tools.observe.triage import triage_signals

        while not self._stop.wait(min(max(self._ctx.settings.triage.interval_seconds, 1.0), 86_400.0)):
            try:
                events = self._ctx.store.count_events()
                if events != self._seen:
                    self._seen = events
                    report = triage_signals(self._ctx.store, self._ctx.git(), self._ctx.settings, self._ctx.clock)
                    logger.info("triage: %d actionable, %d observations", report.actionable, report.observations)
            except Exception as exc:  # serving goes on; the next pass tries again
                logger.error("background triage failed: %s", type(exc).__name__)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def build_http_app(ctx: AppContext, *, mcp_token: str, on_merge: MergeCallback | None = None) -> Starlette:
    """`on_merge(number, merge_commit_sha, merged_at)`: what a verified GitHub merge webhook triggers (default: the
    merge of one of prodloop's PRs is recorded and a watch pass runs at once)."""
    hosts = allowed_hosts(ctx.settings)
    watch = BackgroundWatch(ctx)
    writer = EventWriter(ctx.store, housekeeping=ctx.apply_retention)
    ingest = Ingest(ctx.settings, ctx.store, writer, ctx.clock, workers=ctx.settings.ingest_workers)
    mcp = build_mcp(ctx)
    origins = [f"{scheme}://{h}" for h in hosts for scheme in ("http", "https")]
    bare = [h[:-2] for h in hosts if h.endswith(":*")]  # the SDK's `name:*` needs a port; a proxy may send none
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[*hosts, *bare],
        allowed_origins=[*origins, *(f"{scheme}://{h}" for h in bare for scheme in ("http", "https"))],
    )
    mcp_http = mcp.streamable_http_app(streamable_http_path="/mcp", host=ctx.settings.host, transport_security=security)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "schema_version": ctx.store.schema_version})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        triage = BackgroundTriage(ctx)
        watch.start()
        try:
            async with mcp.session_manager.run():
                yield
        finally:
            watch.stop()
            triage.stop()
            ingest.close()
            writer.close()

    return Starlette(
        middleware=[Middleware(HostCheck, hosts=hosts)],
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            *ingest.routes(),
            *SentryWebhook(ctx).routes(),
            *GitHubWebhook(ctx, on_merge or watch.on_merge).routes(),
            Mount("/ci", app=CIResults(ctx, mcp_token).app()),
            *dashboard_routes(ctx, mcp_token),
            # Last, so only /mcp (and unknown paths) pass the bearer check.
            Mount("/", app=BearerAuth(mcp_http, mcp_token)),
        ],
        lifespan=lifespan,
    )
