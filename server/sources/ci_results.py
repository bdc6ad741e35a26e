"""CI over HTTP, with the server's bearer token (the one `/mcp` takes).

- `POST /ci/results?commit=SHA[&branch=B&run=URL&job=NAME]` with a JUnit XML body: the ingest report; a refused file
  stores nothing and says why (400), a body over the limit is refused while it streams (413).
- `POST /ci/select?base=REF&head=SHA`: the tests that guard the change, chosen where the store is (a CI runner has
  none: prodloop's regression tests and reliability tiers live on the server); commits the server lacks are fetched
  from its remote first. The answer is the selection, with `paths` one per test file; it is recorded, so
  `prodloop metrics` can say what selection saves once CI's full results for that head arrive.
"""

from __future__ import annotations

import json

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from prodloop.server.auth import BearerAuth
from prodloop.server.context import AppContext
from prodloop.server.errors import ProdloopError
from prodloop.server.sources._body import capped_body
from prodloop.server.store import ci
from prodloop.tools.engine._shape import cap
from prodloop.tools.observe.ci_issue import open_regressions
from prodloop.tools.observe.ci_select import select_tests
from prodloop.tools.observe.ci_signals import MAX_BYTES, ingest_junit


class CIResults:
    def __init__(self, ctx: AppContext, token: str) -> None:
        self._ctx = ctx
        self._token = token

    def app(self) -> BearerAuth:
        routes = [Route("/results", self.post, methods=["POST"]), Route("/select", self.select, methods=["POST"])]
        return BearerAuth(Starlette(routes=routes), self._token)

    async def select(self, request: Request) -> Response:
        base, head = request.query_params.get("base", ""), request.query_params.get("head", "")
        if not base or not head:
            return _error(400, "post to /ci/select?base=REF&head=SHA (the target branch and the change's commit)")
        ctx = self._ctx

        def choose() -> str:
            repo, remote = ctx.git(), ctx.settings.git_remote
            repo.fetch(remote, base)  # the target branch as the remote has it now, not a stale local copy
            target = base if repo.resolve(f"refs/remotes/{remote}/{base}") is None else f"refs/remotes/{remote}/{base}"
            if repo.resolve(head) is None:
                repo.fetch(remote, head)
            selection = select_tests(ctx.store, repo, ctx.settings, base=target, head=head)
            chosen = [t.path for t in selection.tests]
            ci.save_selection(ctx.store, base=selection.base, head=selection.head, selected=chosen,
                              test_files=selection.test_files, at=ctx.clock.now())  # fmt: skip
            return json.dumps({**selection.model_dump(mode="json"), "paths": chosen})

        try:
            text = await anyio.to_thread.run_sync(choose)
        except ProdloopError as exc:
            return _error(400, str(exc))
        return Response(text, status_code=200, media_type="application/json")

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
            if files is not None and not report.duplicate:
                failed = [g.id for g in report.failures]
                try:  # the results are stored: a failure here is reported, never a refusal that loses them
                    report.issues = open_regressions(ctx.store, ctx.git(), ctx.settings, ctx.clock, failed,
                                                     branch=params.get("branch"))  # fmt: skip
                except ProdloopError as exc:
                    report.issues_error = cap(str(exc), 500)
            return report.model_dump_json()

        try:
            text = await anyio.to_thread.run_sync(ingest)
        except ProdloopError as exc:
            return _error(400, str(exc))
        return Response(text, status_code=200, media_type="application/json")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)
