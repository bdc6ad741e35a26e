"""Resources by URI, with their mime types, through a real MCP client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client, MCPError

from prodloop.server.context import AppContext
from prodloop.server.ingest.importer import import_events
from prodloop.server.mcp_app import build_mcp
from prodloop.server.settings import load_settings
from tests.sample_service import SampleService

pytestmark = pytest.mark.anyio


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[AppContext]:
    service = SampleService(tmp_path / "shop")
    ctx = AppContext.open(load_settings(repo=service.root, data_dir=tmp_path / "data"))
    import_events(ctx, ctx.store.create_project("shop"), [("a", service.event("unknown_sku"))], source="test")
    yield ctx
    ctx.close()


async def test_every_resource_is_listed_and_readable_as_json(ctx: AppContext) -> None:
    event_id = ctx.store.latest_event(1).event_id
    async with Client(build_mcp(ctx)) as client:
        listed = {str(r.uri): r for r in (await client.list_resources()).resources}
        templates = {t.uri_template: t for t in (await client.list_resource_templates()).resource_templates}
        contents = {}
        for uri in ["prodloop://issues", "prodloop://issues/1", f"prodloop://events/{event_id}",
                    f"prodloop://code-path/{event_id}", "prodloop://provenance", "prodloop://policy",
                    "prodloop://reliability/shop%2Fpricing.py", "prodloop://results/map_code_path",
                    "prodloop://andon", "prodloop://lineage/1", "prodloop://suite/log", "prodloop://suite/proposals",
                    "prodloop://ci/failures"]:  # fmt: skip
            result = await client.read_resource(uri)
            assert result.contents[0].mime_type == "application/json", uri
            contents[uri] = json.loads(result.contents[0].text)  # type: ignore[union-attr]
    assert set(listed) == {
        "prodloop://issues", "prodloop://provenance", "prodloop://policy", "prodloop://andon", "prodloop://metrics",
        "prodloop://suite/log", "prodloop://suite/proposals", "prodloop://ci/failures",
    }  # fmt: skip
    assert set(templates) == {
        "prodloop://issues/{issue_id}",
        "prodloop://events/{event_id}",
        "prodloop://code-path/{event_id}",
        "prodloop://reliability/{path}",
        "prodloop://results/{tool}",
        "prodloop://lineage/{issue_id}",
        "prodloop://ci/failure/{failure_id}",
    }
    assert all(r.description for r in [*listed.values(), *templates.values()])
    assert contents["prodloop://issues"]["total"] == 1
    assert contents["prodloop://issues/1"]["event_id"] == event_id
    assert contents[f"prodloop://code-path/{event_id}"]["culprit"]["qualname"] == "line_total"
    assert contents["prodloop://policy"]["gates"]["min_mutation_score"] == 0.8
    assert contents["prodloop://provenance"]["total"] == 0
    assert contents["prodloop://reliability/shop%2Fpricing.py"]["issues_total"] == 1
    assert "fault_candidates" in contents["prodloop://results/map_code_path"]["properties"]
    assert contents["prodloop://andon"] == {"active": [], "released": [], "quarantined_paths": []}
    assert contents["prodloop://lineage/1"]["next_step"].startswith("no PR yet")
    assert contents["prodloop://policy"]["andon"]["min_ratio"] == 2.0
    assert contents["prodloop://suite/log"]["total"] == 0 and contents["prodloop://ci/failures"]["failures"] == []
    assert contents["prodloop://suite/proposals"]["quiet_days"] == 180


async def test_a_non_numeric_issue_id_is_an_error(ctx: AppContext) -> None:
    async with Client(build_mcp(ctx)) as client:
        with pytest.raises(MCPError, match="is not an issue id"):
            await client.read_resource("prodloop://issues/abc")
