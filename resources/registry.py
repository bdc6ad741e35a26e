"""Registering prodloop's resources on an MCP server."""

from __future__ import annotations

import json

from mcp import MCPError
from mcp.server.mcpserver import MCPServer
from mcp.types import INVALID_PARAMS

from prodloop.resources import views
from prodloop.server.context import AppContext
from prodloop.server.tool_surface import AgentServer


def register_resources(server: MCPServer, ctx: AppContext) -> None:
    @server.resource("prodloop://issues", name="issues", mime_type=views.MIME, description="the issues, newest first")
    def issues() -> str:
        return views.issues(ctx)

    @server.resource(
        "prodloop://issues/{issue_id}", name="issue", mime_type=views.MIME, description="an issue's error context"
    )
    def issue(issue_id: str) -> str:
        return views.issue(ctx, _int(issue_id))

    @server.resource(
        "prodloop://events/{event_id}", name="event", mime_type=views.MIME, description="one event's context"
    )
    def event(event_id: str) -> str:
        return views.event(ctx, event_id)

    @server.resource(
        "prodloop://code-path/{event_id}", name="code-path", mime_type=views.MIME,
        description="an event mapped onto the repository at its deployed commit",
    )  # fmt: skip
    def code_path(event_id: str) -> str:
        return views.code_path(ctx, event_id)

    @server.resource(
        "prodloop://reliability/{path}", name="reliability", mime_type=views.MIME,
        description="30 days of production history of a file, folder or file::function (the path URL-encoded)",
    )  # fmt: skip
    def reliability(path: str) -> str:
        return views.reliability(ctx, path)

    @server.resource(
        "prodloop://provenance", name="provenance", mime_type=views.MIME, description="where prodloop's tests came from"
    )
    def provenance() -> str:
        return views.provenance(ctx)

    @server.resource(
        "prodloop://suite/log", name="suite_log", mime_type=views.MIME,
        description="the test suite's change log: tests added, healed, moved, removed, quarantined, with reasons",
    )  # fmt: skip
    def suite_log() -> str:
        return views.suite_log_view(ctx)

    @server.resource(
        "prodloop://suite/proposals", name="suite_proposals", mime_type=views.MIME,
        description="proposals only (a person applies them): tests of code quiet for 180 days, tests of code gone",
    )  # fmt: skip
    def suite_proposals() -> str:
        return views.suite_proposals_view(ctx)

    @server.resource(
        "prodloop://results/{tool}", name="results", mime_type=views.MIME,
        description="a tool's result documented: every field, nested ones too, with its type and meaning",
    )  # fmt: skip
    async def results(tool: str) -> str:
        schema = await server.result_schema(tool) if isinstance(server, AgentServer) else None
        if schema is None:
            raise MCPError(code=INVALID_PARAMS, message=f"{tool[:40]} is not a tool of this server; see tools/list")
        return json.dumps(schema, separators=(",", ":"))

    @server.resource(
        "prodloop://andon", name="andon", mime_type=views.MIME,
        description="andon cords: deploys that made production worse and the paths they quarantine",
    )  # fmt: skip
    def andon() -> str:
        return views.andon(ctx)

    @server.resource(
        "prodloop://metrics", name="metrics", mime_type=views.MIME,
        description="production-to-test latency, time to restore, regression recurrence, flake rate",
    )  # fmt: skip
    def metrics_resource() -> str:
        return views.metrics_view(ctx)

    @server.resource(
        "prodloop://lineage/{issue_id}", name="lineage", mime_type=views.MIME,
        description="an issue's fix after its PR: merge, deploy, verdict with its numbers, budget, stops",
    )  # fmt: skip
    def lineage(issue_id: str) -> str:
        return views.lineage_view(ctx, _int(issue_id))

    @server.resource(
        "prodloop://ci/failures", name="ci_failures", mime_type=views.MIME,
        description="test failures CI reported, grouped (test, exception, crash location), newest first",
    )  # fmt: skip
    def ci_failures() -> str:
        return views.ci_failures_view(ctx)

    @server.resource(
        "prodloop://ci/failure/{failure_id}", name="ci_failure", mime_type=views.MIME,
        description="why a CI test fails, with evidence: regression, test_rot (heal_test), flaky or unknown",
    )  # fmt: skip
    def ci_failure(failure_id: str) -> str:
        return views.ci_failure_view(ctx, _int(failure_id))

    @server.resource(
        "prodloop://policy", name="policy", mime_type=views.MIME,
        description="gates, budgets and PR settings in force, and open escalations",
    )  # fmt: skip
    def policy_resource() -> str:
        return views.policy_view(ctx)


def _int(text: str) -> int:
    if not text.isdigit():
        raise MCPError(code=INVALID_PARAMS, message=f"{text[:40]} is not an issue id; use a number from list_issues")
    return int(text)
