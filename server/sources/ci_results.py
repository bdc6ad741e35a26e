"""CI as a signal source over HTTP: `POST /ci/results?commit=SHA[&branch=B&run=URL&job=NAME]` with a JUnit XML body
and the server's bearer token (the one `/mcp` takes). The answer is the ingest report; a refused file stores nothing
and says why (400), a body over the limit is refused while it streams (413)."""

from __future__ import annotations

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from prodloop.server.auth import BearerAuth
from prodloop.server.context import AppContext
from prodloop.server.errors import ProdloopError
from prodloop.server.sources._body import capped_body
from prodloop.tools.observe.ci_signals import MAX_BYTES, ingest_junit


class CIResults:
    def __init__(self, ctx: AppContext, token: str) -> None:
        self._ctx = ctx
        self._token = token

    def app(self) -> BearerAuth:
        return BearerAuth(Starlette(routes=[Route("/results", self.post, methods=["POST"])]), self._token)

    async def post(self, request: Request) -> Response:
        params = request.query_params
        commit = params.get("commit", "")
        if not commit:
            return _error(400, "no commit: post to /ci/results?commit=SHA (the sha the run tested)")
        body = await capped_body(request, MAX_BYTES)
        if body is None:
            return _error(413, f"results over {MAX_BYTES} bytes: send one job's file")
        ctx = self._ctx

        def ingest() -> str:
            try:
                files: set[str] | None = set(ctx.git().files(ctx.git().head()))
            except ProdloopError:
                files = None
            report = ingest_junit(
                ctx.store, ctx.settings, ctx.clock, body, commit=commit, branch=params.get("branch"),
                run_url=params.get("run"), job=params.get("job"), repo_files=files, where="the posted results",
            )  # fmt: skip
            return report.model_dump_json()

        try:
            text = await anyio.to_thread.run_sync(ingest)
        except ProdloopError as exc:
            return _error(400, str(exc))
        return Response(text, status_code=200, media_type="application/json")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)
