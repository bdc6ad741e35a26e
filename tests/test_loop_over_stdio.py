"""The complete loop driven by a real MCP client over stdio, the way Claude Code drives it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from prodloop.server.context import AppContext
from prodloop.server.ingest.importer import import_events
from prodloop.server.settings import load_settings
from tests.sample_service import SampleService

pytestmark = pytest.mark.anyio


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout


async def test_an_agent_takes_a_production_crash_to_a_pull_request_over_stdio(tmp_path: Path) -> None:
    service = SampleService(tmp_path / "shop")
    remote = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    _git(service.root, "remote", "add", "origin", str(remote))
    _git(service.root, "push", "-q", "origin", "main")
    data = tmp_path / "data"
    ctx = AppContext.open(load_settings(repo=service.root, data_dir=data))
    import_events(ctx, ctx.store.create_project("shop"), [("e", service.event("unknown_sku"))], source="sentry-sdk")
    ctx.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRODLOOP_")}
    env["PRODLOOP_DATA_DIR"] = str(data)
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "prodloop.server.cli", "serve", "--repo", str(service.root)], env=env
    )
    async with Client(params) as client:
        issue = (await client.call_tool("list_issues", {})).structured_content["issues"][0]
        # The server runs the default triage mode: agent work waits until a person approves the issue.
        refused = await client.call_tool("synthesize_regression_test", {"issue_id": issue["id"]})
        assert refused.is_error and "prodloop triage approve 1" in refused.content[0].text  # type: ignore[union-attr]
        approved = subprocess.run(
            [sys.executable, "-m", "prodloop.server.cli", "triage", "approve", "1", "--by", "Ada",
             "--repo", str(service.root)], env=env, capture_output=True, text=True,
        )  # fmt: skip
        assert approved.returncode == 0, approved.stderr
        context = (await client.call_tool("fetch_error_context", {"issue_id": issue["id"]})).structured_content
        assert context["frames"][-1]["function"] == "line_total"
        path = (await client.call_tool("map_code_path", {"issue_id": issue["id"]})).structured_content
        assert path["culprit"]["qualname"] == "line_total"
        synthesized = (
            await client.call_tool("synthesize_regression_test", {"issue_id": issue["id"]})
        ).structured_content
        assert synthesized["reproduction"]["passed"] is True
        # The agent's own step: it fixes the code in the working tree.
        pricing = service.root / "shop" / "pricing.py"
        pricing.write_text(pricing.read_text().replace('PRICES[item["sku"]]', 'PRICES.get(item["sku"], 0)'))
        stronger = await client.call_tool(
            "synthesize_regression_test", {"issue_id": issue["id"], "characterize_fix": True}
        )
        test_code = stronger.structured_content["test_code"]
        assert "assert result == 0" in test_code
        run = await client.call_tool(
            "run_candidate_test", {"issue_id": issue["id"], "test_code": test_code, "fix_from_working_tree": True}
        )
        assert run.structured_content["passed"] is True, run.structured_content["gates"]
        receipt = run.structured_content["receipt_id"]
        mutation = await client.call_tool("mutate_validate", {"receipt_id": receipt})
        assert mutation.structured_content["passed"] is True
        pr = (await client.call_tool("open_pr", {"receipt_id": receipt})).structured_content
    assert pr["mode"] == "local"
    assert _git(remote, "rev-parse", pr["branch"]).strip() == pr["commit"]
    assert pr["provenance"]["client"].startswith("mcp")
    assert "tests/test_prodloop_issue_1.py" in _git(remote, "show", "--name-only", "--format=", pr["commit"])
