"""The MCP server: each tool a thin adapter from typed arguments to a function in `prodloop.tools`.

Domain failures (no such issue) come back as tool errors the agent can act on; malformed
arguments (a cursor this server never issued) as JSON-RPC invalid-params errors.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Annotated, Literal, ParamSpec, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
from mcp import MCPError
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import INVALID_PARAMS, CallToolResult
from pydantic import Field

from prodloop.prompts.registry import register_prompts
from prodloop.resources.registry import register_resources
from prodloop.server.context import AppContext
from prodloop.server.errors import InvalidArgument, ProdloopError
from prodloop.server.store.db import IssueOrder
from prodloop.server.store.receipts import MutationResult
from prodloop.server.tool_descriptions import DESCRIPTIONS, INSTRUCTIONS
from prodloop.server.tool_surface import (
    IDEMPOTENT_WRITE,
    LOCAL_WRITE,
    PUBLISHES,
    READ_ONLY,
    AgentServer,
    Cursor,
    EventId,
    IssueId,
    ReceiptId,
    reply,
)
from prodloop.tools.budget import CostReport, report_cost
from prodloop.tools.judge.candidate import CandidateResult, run_candidate_for_issue, working_tree_diff
from prodloop.tools.judge.heal import HealResult, heal_test
from prodloop.tools.judge.mutation import mutate_validate
from prodloop.tools.locate.code_path import CodePath, map_code_path
from prodloop.tools.observe.andon import AndonStatus, andon_status
from prodloop.tools.observe.deploys import DeployRecord, record_deploy
from prodloop.tools.observe.error_context import ErrorContext, fetch_error_context
from prodloop.tools.observe.issues import IssuePage, IssueStatus, list_issues
from prodloop.tools.observe.lineage_status import LineageStatus, post_merge_status
from prodloop.tools.observe.reliability import ReliabilityHistory, query_reliability_history
from prodloop.tools.observe.triage import TriageReport, triage_signals
from prodloop.tools.reproduce.characterize import characterize
from prodloop.tools.reproduce.synthesis import SynthesisResult, synthesize_regression_test
from prodloop.tools.ship.heal_pr import HealPullRequest, open_heal_pr
from prodloop.tools.ship.pull_request import PullRequestResult, open_pr

P = ParamSpec("P")
R = TypeVar("R")


def _boundary(fn: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ProdloopError as exc:
            raise _map_errors(exc) from exc

    return wrapper


def _map_errors(exc: Exception) -> Exception:
    if isinstance(exc, InvalidArgument):
        return MCPError(code=INVALID_PARAMS, message=str(exc))
    return ToolError(str(exc))


def _client_name(mcp_ctx: Context) -> str:
    """The connected client's self-reported name and version, for provenance."""
    try:
        params = mcp_ctx.session.client_params
    except Exception:  # no session (e.g. an in-process call): provenance says so
        return "unknown"
    info = getattr(params, "client_info", None)
    return f"{info.name} {info.version}".strip()[:100] if info is not None else "unknown"


def build_mcp(ctx: AppContext) -> MCPServer:
    server = AgentServer(name="prodloop", instructions=INSTRUCTIONS, version="0.1.0")

    @server.tool(name="list_issues", description=DESCRIPTIONS["list_issues"],
                 annotations=READ_ONLY)  # fmt: skip
    @_boundary
    def list_issues_tool(
        project_id: Annotated[int | None, Field(ge=1, description="only this project")] = None,
        status: Annotated[IssueStatus | None, Field(description="null: all")] = "unresolved",
        order_by: Annotated[IssueOrder, Field(description="descending")] = "last_seen",
        limit: Annotated[int, Field(ge=1, le=100, description="per page")] = 25,
        cursor: Cursor | None = None,
    ) -> Annotated[CallToolResult, IssuePage]:
        return reply(
            list_issues(ctx.store, project_id=project_id, status=status, order_by=order_by, limit=limit, cursor=cursor)
        )

    @server.tool(name="fetch_error_context",
                 description=DESCRIPTIONS["fetch_error_context"], annotations=READ_ONLY)  # fmt: skip
    @_boundary
    def fetch_error_context_tool(
        issue_id: IssueId | None = None,
        event_id: EventId | None = None,
        frame_cursor: Annotated[
            str | None, Field(max_length=64, description="next_frame_cursor of a previous call")
        ] = None,
        frames_limit: Annotated[int, Field(ge=1, le=200, description="per page, crash first")] = 20,
        breadcrumb_cursor: Annotated[
            str | None, Field(max_length=64, description="next_breadcrumb_cursor of a previous call")
        ] = None,
        breadcrumbs_limit: Annotated[int, Field(ge=0, le=100, description="per page, newest first")] = 20,
        max_result_chars: Annotated[
            int, Field(ge=4_000, le=500_000, description="result size budget, in characters")
        ] = 60_000,
    ) -> Annotated[CallToolResult, ErrorContext]:
        result = fetch_error_context(
            ctx.store, issue_id=issue_id, event_id=event_id, frame_cursor=frame_cursor, frames_limit=frames_limit,
            breadcrumb_cursor=breadcrumb_cursor, breadcrumbs_limit=breadcrumbs_limit,
            max_string_chars=ctx.settings.max_string_chars, max_result_chars=max_result_chars,
        )  # fmt: skip
        return reply(result)

    @server.tool(name="map_code_path", description=DESCRIPTIONS["map_code_path"],
                 annotations=READ_ONLY)  # fmt: skip
    @_boundary
    def map_code_path_tool(
        issue_id: IssueId | None = None, event_id: EventId | None = None
    ) -> Annotated[CallToolResult, CodePath]:
        return reply(
            map_code_path(
                ctx.store,
                ctx.git(),
                issue_id=issue_id,
                event_id=event_id,
                path_rewrites=ctx.settings.path_rewrites,
                reliability=ctx.settings.reliability,
            )
        )

    @server.tool(name="query_reliability_history",
                 description=DESCRIPTIONS["query_reliability_history"], annotations=READ_ONLY)  # fmt: skip
    @_boundary
    def query_reliability_history_tool(
        path: Annotated[str, Field(min_length=1, max_length=500, description="file, folder/ or file::Qualified.name")],
        days: Annotated[int, Field(ge=1, le=365, description="the window, in days up to now")] = 30,
        environment: Annotated[str | None, Field(max_length=100, description="only this environment")] = None,
    ) -> Annotated[CallToolResult, ReliabilityHistory]:
        return reply(
            query_reliability_history(
                ctx.store, ctx.git(), ctx.settings, ctx.clock, path=path, days=days, environment=environment
            )
        )

    @server.tool(name="triage_signals", description=DESCRIPTIONS["triage_signals"],
                 annotations=IDEMPOTENT_WRITE)  # fmt: skip
    @_boundary
    def triage_signals_tool(
        issue_id: IssueId | None = None,
        limit: Annotated[int, Field(ge=1, le=100, description="highest priority first")] = 20,
    ) -> Annotated[CallToolResult, TriageReport]:
        return reply(triage_signals(ctx.store, ctx.git(), ctx.settings, ctx.clock, issue_id=issue_id, limit=limit))

    @server.tool(name="record_deploy", description=DESCRIPTIONS["record_deploy"],
                 annotations=LOCAL_WRITE)  # fmt: skip
    @_boundary
    def record_deploy_tool(
        release: Annotated[str, Field(min_length=1, max_length=200, description="as events name it")],
        commit: Annotated[str, Field(min_length=4, max_length=200, description="sha, tag or branch deployed")],
        environment: Annotated[str, Field(min_length=1, max_length=100)] = "production",
        deployed_at: Annotated[float | None, Field(ge=0, description="epoch seconds; default now")] = None,
    ) -> Annotated[CallToolResult, DeployRecord]:
        result = record_deploy(
            ctx.store, ctx.git(), ctx.clock, release=release, commit=commit, environment=environment,
            deployed_at=deployed_at, source="agent",
        )  # fmt: skip
        return reply(result)

    @server.tool(name="run_candidate_test",
                 description=DESCRIPTIONS["run_candidate_test"], annotations=LOCAL_WRITE)  # fmt: skip
    @_boundary
    def run_candidate_test_tool(
        issue_id: IssueId,
        test_code: Annotated[str | None, Field(max_length=200_000, description="the test file's content")] = None,
        test_file: Annotated[str | None, Field(max_length=500, description="or: a repository test file")] = None,
        test_path: Annotated[
            str | None, Field(max_length=500, description="its repo path; default beside related tests")
        ] = None,
        test_name: Annotated[str | None, Field(max_length=300, description="the test function, if several")] = None,
        fix_diff: Annotated[
            str | None, Field(max_length=1_000_000, description="unified diff vs the deployed commit")
        ] = None,
        fix_from_working_tree: Annotated[bool, Field(description="the fix is the working tree's changes")] = False,
        support_files: Annotated[
            dict[str, str] | None,
            Field(description="{path: content} test data files, in a test folder (max 20)"),
        ] = None,
    ) -> Annotated[CallToolResult, CandidateResult]:
        result = run_candidate_for_issue(
            *ctx.collaborators(), issue_id=issue_id, test_code=test_code, test_file=test_file, test_path=test_path,
            test_name=test_name, fix_diff=fix_diff, fix_from_working_tree=fix_from_working_tree,
            support_files=support_files,
        )  # fmt: skip
        return reply(result)

    @server.tool(name="synthesize_regression_test",
                 description=DESCRIPTIONS["synthesize_regression_test"], annotations=LOCAL_WRITE)  # fmt: skip
    @_boundary
    def synthesize_tool(
        issue_id: IssueId,
        max_frames: Annotated[int, Field(ge=1, le=20, description="frames to try, from the crash outward")] = 5,
        characterize_fix: Annotated[bool, Field(description="also assert what the working tree's fix returns")] = False,
    ) -> Annotated[CallToolResult, SynthesisResult]:
        result = synthesize_regression_test(*ctx.collaborators(), issue_id=issue_id, max_frames=max_frames)
        if characterize_fix and result.call is not None and result.test_path is not None:
            fix = working_tree_diff(ctx.git(), result.call.commit, result.test_path)
            if fix.strip():
                stronger, _why = characterize(ctx.git(), ctx.runner(), result.call, fix)
                result.test_code = stronger or result.test_code
        return reply(result)

    @server.tool(name="mutate_validate",
                 description=DESCRIPTIONS["mutate_validate"], annotations=IDEMPOTENT_WRITE)  # fmt: skip
    async def mutate_validate_tool(
        receipt_id: ReceiptId,
        mcp_ctx: Context,
        scope: Annotated[
            Literal["fix", "culprit", "path"],
            Field(
                description="fix: fixed statements and the crash line; culprit: its function; path: every mapped "
                "function"
            ),
        ] = "fix",
        include_related_tests: Annotated[bool, Field(description="also run the existing related tests")] = False,
    ) -> Annotated[CallToolResult, MutationResult]:
        cancel = threading.Event()
        loop = anyio.lowlevel.current_token()

        def progress(done: int, total: int) -> None:  # called from the thread that reads the driver's output
            anyio.from_thread.run(mcp_ctx.report_progress, done, total, f"{done}/{total} mutants", token=loop)

        def work() -> MutationResult:
            return mutate_validate(
                *ctx.collaborators(),
                receipt_id=receipt_id,
                scope=scope,
                include_related_tests=include_related_tests,
                on_progress=progress,
                cancel=cancel,
            )

        try:
            return reply(await anyio.to_thread.run_sync(work, abandon_on_cancel=True))
        except anyio.get_cancelled_exc_class():
            cancel.set()
            raise
        except ProdloopError as exc:
            raise _map_errors(exc) from exc

    @server.tool(name="open_pr", description=DESCRIPTIONS["open_pr"],
                 annotations=PUBLISHES)  # fmt: skip
    def open_pr_tool(
        receipt_id: ReceiptId,
        mcp_ctx: Context,
        title: Annotated[str | None, Field(max_length=200, description="replaces the default title")] = None,
        body_extra: Annotated[str | None, Field(max_length=4000, description="appended to the description")] = None,
        draft: bool = False,
        labels: Annotated[list[str] | None, Field(max_length=10, description="default from settings")] = None,
    ) -> Annotated[CallToolResult, PullRequestResult]:
        try:
            return reply(
                open_pr(
                    *ctx.collaborators(),
                    receipt_id=receipt_id,
                    title=title,
                    body_extra=body_extra,
                    draft=draft,
                    labels=labels,
                    client=_client_name(mcp_ctx),
                )
            )
        except ProdloopError as exc:
            raise _map_errors(exc) from exc

    @server.tool(name="post_merge_status", description=DESCRIPTIONS["post_merge_status"],
                 annotations=IDEMPOTENT_WRITE)  # fmt: skip
    @_boundary
    def post_merge_status_tool(issue_id: IssueId) -> Annotated[CallToolResult, LineageStatus]:
        return reply(post_merge_status(ctx.store, ctx.git(), ctx.settings, ctx.clock, issue_id))

    @server.tool(name="andon_status", description=DESCRIPTIONS["andon_status"], annotations=READ_ONLY)
    @_boundary
    def andon_status_tool() -> Annotated[CallToolResult, AndonStatus]:
        return reply(andon_status(ctx.store))

    @server.tool(name="heal_test", description=DESCRIPTIONS["heal_test"], annotations=LOCAL_WRITE)
    @_boundary
    def heal_test_tool(
        failure_id: Annotated[int, Field(ge=1, description="a CI failure group (prodloop://ci/failures)")],
        test_code: Annotated[str, Field(max_length=200_000, description="the whole updated test file")],
    ) -> Annotated[CallToolResult, HealResult]:
        return reply(heal_test(*ctx.collaborators(), failure_id=failure_id, test_code=test_code))

    @server.tool(name="open_heal_pr", description=DESCRIPTIONS["open_heal_pr"], annotations=PUBLISHES)
    @_boundary
    def open_heal_pr_tool(
        heal_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$", description="from heal_test")],
        mcp_ctx: Context,
    ) -> Annotated[CallToolResult, HealPullRequest]:
        return reply(open_heal_pr(*ctx.collaborators(), heal_id=heal_id, client=_client_name(mcp_ctx)))

    @server.tool(name="report_agent_cost", description=DESCRIPTIONS["report_agent_cost"],
                 annotations=LOCAL_WRITE)  # fmt: skip
    @_boundary
    def report_agent_cost_tool(
        issue_id: IssueId,
        tokens: Annotated[int, Field(ge=0, le=100_000_000, description="spent since the last report")],
        mcp_ctx: Context,
        cost_usd: Annotated[float, Field(ge=0, le=100_000)] = 0.0,
        note: Annotated[str, Field(max_length=200)] = "",
    ) -> Annotated[CallToolResult, CostReport]:
        return reply(report_cost(ctx.store, ctx.settings.budgets, ctx.clock, issue_id, tokens=tokens,
                                 cost_usd=cost_usd, reporter=_client_name(mcp_ctx), note=note))  # fmt: skip

    register_prompts(server, ctx)
    register_resources(server, ctx)
    return server
