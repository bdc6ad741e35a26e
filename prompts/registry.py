"""Registering prodloop's prompt templates on an MCP server."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from prodloop.prompts import guides
from prodloop.server.context import AppContext

IssueArg = Annotated[int, Field(ge=1, description="a prodloop issue id (see list_issues)")]


def register_prompts(server: MCPServer, ctx: AppContext) -> None:
    @server.prompt(name="fix_production_error", title="Fix a production error")
    def fix_production_error(issue_id: IssueArg) -> str:
        """The error, its mapped code path, and the steps from context to PR with the gates and budget in force."""
        return guides.fix_production_error(ctx, issue_id)

    @server.prompt(name="write_regression_test", title="Write a regression test")
    def write_regression_test(issue_id: IssueArg) -> str:
        """The production inputs of the crash frame, the code path, related tests and what the gates require."""
        return guides.write_regression_test(ctx, issue_id)

    @server.prompt(name="triage_production_signals", title="Triage production signals")
    def triage_production_signals() -> str:
        """The top issues by events with users, 24-hour trend and whether they are actionable in this repository."""
        return guides.triage_production_signals(ctx)

    @server.prompt(name="review_change_with_reliability", title="Review a change with its reliability record")
    def review_change_with_reliability(
        diff: Annotated[str, Field(max_length=1_000_000, description="the change as a unified diff")],
    ) -> str:
        """The production reliability record of every file the diff touches."""
        return guides.review_change_with_reliability(ctx, diff)

    @server.prompt(name="heal_failing_test", title="Heal a failing test")
    def heal_failing_test(
        test_node_id: Annotated[
            str, Field(max_length=500, description="the failing test, e.g. tests/test_x.py::test_y")
        ],
        failure_output: Annotated[str, Field(max_length=1_000_000, description="pytest's output for the failure")],
    ) -> str:
        """A failing CI test mapped to code, blame and recent commits the way a production error is."""
        return guides.heal_failing_test(ctx, test_node_id, failure_output)

    @server.prompt(name="post_merge_followup", title="Follow up after a merge")
    def post_merge_followup(issue_id: IssueArg) -> str:
        """Whether the error stopped after prodloop's PR for the issue, and what to do either way."""
        return guides.post_merge_followup(ctx, issue_id)
