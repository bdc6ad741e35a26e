"""Every tool through a real MCP client: in memory, over a stdio subprocess, and over HTTP."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from prodloop.server.context import AppContext
from prodloop.server.ingest.importer import import_events
from prodloop.server.mcp_app import build_mcp
from tests.conftest import MCP_TOKEN, LiveServer, make_event

pytestmark = pytest.mark.anyio


def _seed(ctx: AppContext, n_issues: int = 3) -> None:
    project = ctx.store.project_by_name("svc") or ctx.store.create_project("svc")
    events = []
    for i in range(n_issues):
        for _ in range(i + 1):
            event = make_event()
            event["exception"]["values"][0]["type"] = f"Error{i}"
            events.append((f"seed {i}", event))
    report = import_events(ctx, project, events, source="test")
    assert report.stored == len(events)


async def test_tools_are_listed_with_descriptions_schemas_and_read_only_annotations(ctx: AppContext) -> None:
    async with Client(build_mcp(ctx)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == {
        "list_issues", "fetch_error_context", "map_code_path", "record_deploy",
        "run_candidate_test", "synthesize_regression_test", "mutate_validate", "open_pr", "heal_test", "open_heal_pr",
        "query_reliability_history", "triage_signals", "post_merge_status", "andon_status", "report_agent_cost",
    }  # fmt: skip
    for tool in tools.values():
        assert tool.description
        assert tool.input_schema["type"] == "object"
        assert tool.output_schema is not None
        assert tool.annotations is not None
        read_only = {"list_issues", "fetch_error_context", "map_code_path", "andon_status",
                     "query_reliability_history"}  # fmt: skip
        assert bool(tool.annotations.read_only_hint) is (tool.name in read_only)  # MCP: absent means false


async def test_list_issues_pages_with_a_cursor_and_orders_by_count(ctx: AppContext) -> None:
    _seed(ctx, 3)
    async with Client(build_mcp(ctx)) as client:
        first = await client.call_tool("list_issues", {"order_by": "event_count", "limit": 2})
        page = first.structured_content
        assert page["total"] == 3
        assert [i["event_count"] for i in page["issues"]] == [3, 2]
        second = await client.call_tool("list_issues", {"order_by": "event_count", "cursor": page["next_cursor"]})
    rest = second.structured_content
    assert [i["event_count"] for i in rest["issues"]] == [1]
    assert rest["next_cursor"] is None


async def test_fetch_error_context_by_issue_and_by_event(ctx: AppContext) -> None:
    _seed(ctx, 1)
    async with Client(build_mcp(ctx)) as client:
        by_issue = (await client.call_tool("fetch_error_context", {"issue_id": 1})).structured_content
        by_event = (
            await client.call_tool("fetch_error_context", {"event_id": by_issue["event_id"]})
        ).structured_content
    assert by_issue == by_event
    assert by_issue["exceptions"][0]["type"] == "Error0"
    assert by_issue["frames"][-1]["function"] == "price_of"
    assert by_issue["occurrences"]["count"] == 1


async def test_unknown_issue_is_a_tool_error_that_says_what_to_do(ctx: AppContext) -> None:
    async with Client(build_mcp(ctx)) as client:
        result = await client.call_tool("fetch_error_context", {"issue_id": 42})
    assert result.is_error
    assert "no issue with id 42" in result.content[0].text
    assert "list_issues" in result.content[0].text


async def test_malformed_arguments_are_invalid_params(ctx: AppContext) -> None:
    async with Client(build_mcp(ctx)) as client:
        with pytest.raises(MCPError) as bad_cursor:
            await client.call_tool("list_issues", {"cursor": "frames:3"})
        assert bad_cursor.value.code == -32602
        with pytest.raises(MCPError) as neither:
            await client.call_tool("fetch_error_context", {})
        assert "exactly one" in neither.value.message
        out_of_range = await client.call_tool("list_issues", {"limit": 1000})
    assert out_of_range.is_error
    assert "less than or equal to 100" in out_of_range.content[0].text


async def test_stdio_subprocess_serves_the_same_tools(ctx: AppContext, tmp_path: Path) -> None:
    _seed(ctx, 2)
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "prodloop.server.cli", "serve", "--repo", str(ctx.settings.repo)],
        env={k: v for k, v in os.environ.items() if not k.startswith("PRODLOOP_")}
        | ({"PRODLOOP_DATABASE_URL": ctx.settings.database_url} if ctx.settings.database_url else {}),
    )
    async with Client(params) as client:
        page = (await client.call_tool("list_issues", {})).structured_content
        context = await client.call_tool("fetch_error_context", {"issue_id": page["issues"][0]["id"]})
    assert page["total"] == 2
    assert not context.is_error


async def test_http_mcp_requires_the_bearer_token(live_server: Callable[..., LiveServer]) -> None:
    server = live_server()
    url = f"{server.base_url}/mcp"
    async with httpx2.AsyncClient() as http:
        bare = await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        wrong = await http.post(
            url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers={"Authorization": "Bearer nope"}
        )
    assert bare.status_code == 401
    assert wrong.status_code == 401
    assert "bearer token" in wrong.json()["detail"]
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {MCP_TOKEN}"}) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            tools = await client.list_tools()
            result = await client.call_tool("list_issues", {})
    assert {t.name for t in tools.tools} >= {"list_issues", "fetch_error_context"}
    assert result.structured_content["total"] == 0


async def test_record_deploy_then_map_code_path_through_the_client(make_ctx: Callable[..., AppContext]) -> None:
    from tests.repos import new_repo

    ctx = make_ctx()
    repo = new_repo(ctx.settings.repo)
    sha = repo.commit(
        {"shop/__init__.py": "", "shop/pricing.py": "def price_of(cart):\n    return PRICES[cart['sku']]\n"}, "c1"
    )
    _seed(ctx, 1)
    async with Client(build_mcp(ctx)) as client:
        deploy = await client.call_tool("record_deploy", {"release": "svc@1.0.0", "commit": sha[:8]})
        assert deploy.structured_content["commit"] == sha
        mapped = (await client.call_tool("map_code_path", {"issue_id": 1})).structured_content
        unknown = await client.call_tool("record_deploy", {"release": "x", "commit": "nonexistent-ref"})
    assert mapped["release"]["source"] == "deploy"
    assert mapped["culprit"]["location"]["repo_path"] == "shop/pricing.py"
    assert mapped["culprit"]["qualname"] == "price_of"
    assert unknown.is_error
    assert "names no commit" in unknown.content[0].text


async def test_map_code_path_outside_a_git_repository_is_a_tool_error(ctx: AppContext) -> None:
    _seed(ctx, 1)
    async with Client(build_mcp(ctx)) as client:
        result = await client.call_tool("map_code_path", {"issue_id": 1})
    assert result.is_error
    assert "is not a git repository" in result.content[0].text


async def test_closing_stage_tools_through_the_client(make_ctx: Callable[..., AppContext]) -> None:
    """report_agent_cost adds to the lineage's budget (named by the client), andon_status reads the cords, and
    malformed costs are invalid params."""
    ctx = make_ctx(budgets={"max_cost_usd": 1.0})
    _seed(ctx, 1)
    async with Client(build_mcp(ctx)) as client:
        first = await client.call_tool("report_agent_cost", {"issue_id": 1, "tokens": 1200, "cost_usd": 0.25})
        spent = await client.call_tool("report_agent_cost", {"issue_id": 1, "tokens": 800, "cost_usd": 0.8})
        cords = await client.call_tool("andon_status", {})
        negative = await client.call_tool("report_agent_cost", {"issue_id": 1, "tokens": -5})
    assert first.structured_content == {"tokens_used": 1200, "tokens_limit": 5_000_000, "cost_usd_used": 0.25,
                                        "cost_usd_limit": 1.0, "exhausted": False}  # fmt: skip
    assert spent.structured_content["exhausted"] is True
    assert negative.is_error  # refused by its schema: nothing subtracted
    assert cords.structured_content == {"active": [], "released": [], "quarantined_paths": []}
    rows = ctx.store.reader().execute("SELECT reporter, tokens FROM agent_costs ORDER BY id").fetchall()
    assert [r[1] for r in rows] == [1200, 800] and rows[0][0] != ""
