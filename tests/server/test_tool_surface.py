"""What an agent reads: the size and shape of tools/list, compact text results, and snapshots of the exact text
each tool sends on the sample service (update deliberately: PRODLOOP_UPDATE_SNAPSHOTS=1)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from mcp import Client, MCPError

from prodloop.server.context import AppContext
from prodloop.server.mcp_app import build_mcp
from prodloop.server.tool_surface import (
    compact_schema,
    optional_without_null,
    shallow_output_schema,
    tools_list_bytes,
    without_echoes,
)

pytestmark = pytest.mark.anyio

SNAPSHOTS = Path(__file__).parent / "snapshots"
_VOLATILE = [
    (re.compile(r"\b0x[0-9a-f]+\b"), "<addr>"),
    (re.compile(r"\b[0-9a-f]{40}\b"), "<sha>"),
    (re.compile(r"\b[0-9a-f]{32}\b"), "<hex32>"),
    (re.compile(r"\b[0-9a-f]{12}\b"), "<sha12>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?"), "<time>"),
    (re.compile(r"(?:/private)?/tmp/[^\"',\s]*"), "<tmp>"),
    (re.compile(r'"(seconds|cpu_seconds|wall_seconds)":[0-9.]+'), r'"\1":<n>'),
    (re.compile(r'"count":\d+,"hour":"<time>"'), '"count":<n>,"hour":"<time>"'),
]


def _any_ofs(node: Any) -> list[list[Any]]:
    if isinstance(node, list):
        return [found for item in node for found in _any_ofs(item)]
    if not isinstance(node, dict):
        return []
    own = [node["anyOf"]] if isinstance(node.get("anyOf"), list) else []
    return own + [found for value in node.values() for found in _any_ofs(value)]


def _normalized(text: str) -> str:
    for pattern, replacement in _VOLATILE:
        text = pattern.sub(replacement, text)
    return text


def _check_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / f"{name}.txt"
    got = _normalized(text)
    if os.environ.get("PRODLOOP_UPDATE_SNAPSHOTS") == "1" or not path.exists():
        path.parent.mkdir(exist_ok=True)
        path.write_text(got + "\n")
        if os.environ.get("PRODLOOP_UPDATE_SNAPSHOTS") != "1":
            pytest.fail(f"wrote a new snapshot {path.name}: review it and commit it")
    assert got == path.read_text().rstrip("\n"), f"{path.name} changed; rerun with PRODLOOP_UPDATE_SNAPSHOTS=1"


async def test_tools_list_is_compact_and_every_tool_says_when_to_use_it(ctx: AppContext) -> None:
    async with Client(build_mcp(ctx)) as client:
        tools = (await client.list_tools()).tools
    size = tools_list_bytes(tools)
    print(f"tools/list: {size} bytes for {len(tools)} tools ({size // len(tools)} per tool; goal under 16000)")
    for tool in tools:
        sent = json.dumps(tool.model_dump(mode="json", by_alias=True, exclude_none=True))
        assert '"title": "' not in sent.replace(f'"title": "{tool.title}"', ""), tool.name  # no derived titles
        assert "$defs" not in sent, tool.name
        for branches in _any_ofs(tool.model_dump(mode="json", by_alias=True, exclude_none=True)):
            # `type: [T, "null"]` says it shorter, except where the other branch is an enumeration (null not in it)
            assert {"type": "null"} not in branches or any("enum" in b or "const" in b for b in branches), branches
        text = tool.description or ""
        assert "\n" not in text and "  " not in text, tool.name  # no source indentation
        assert "Use it" in text and ("; not " in text or "Not for" in text), tool.name  # when, and when not
        assert "Next:" in text, tool.name
        example = json.JSONDecoder().raw_decode(text[text.index("Example: ") + len("Example: ") :])[0]
        properties = tool.input_schema["properties"]
        assert set(example) <= set(properties), (tool.name, example)
        assert set(tool.input_schema.get("required", [])) <= set(example), (tool.name, example)
        hints = tool.annotations
        assert hints is not None
        # Said on every tool; the others only where they differ from MCP's defaults.
        assert None not in (hints.destructive_hint, hints.open_world_hint), tool.name
        assert hints.destructive_hint is False, tool.name
    by_name = {t.name: t for t in tools}
    assert by_name["open_pr"].annotations is not None and by_name["open_pr"].annotations.open_world_hint is True
    assert [n for n, t in by_name.items() if t.annotations and t.annotations.open_world_hint] == [
        "open_pr",
        "open_heal_pr",
    ]
    issue_ids = {
        json.dumps(t.input_schema["properties"]["issue_id"])
        for t in tools
        if "issue_id" in t.input_schema["properties"]
    }
    assert len({s.replace('["integer", "null"]', '"integer"') for s in issue_ids}) == 1  # one shared definition


def test_schema_trimming_keeps_what_validates_and_drops_what_is_derived() -> None:
    schema = {
        "$defs": {
            "Frame": {"properties": {"line": {"title": "Line", "type": "integer"}}, "required": ["line"],
                      "title": "Frame", "type": "object"},
            "Kind": {"enum": ["a", "b"], "title": "Kind", "type": "string"},
        },
        "properties": {
            "title": {"title": "Title", "type": "string", "description": "a field named title stays"},
            "frames": {"items": {"$ref": "#/$defs/Frame"}, "title": "Frames", "type": "array"},
            "names": {"items": {"type": "string"}, "type": "array"},
            "kind": {"$ref": "#/$defs/Kind"},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None, "title": "Note"},
            "crash": {"anyOf": [{"$ref": "#/$defs/Frame"}, {"type": "null"}]},
            "status": {"anyOf": [{"enum": ["open", "done"], "type": "string"}, {"type": "null"}]},
            "extra": {"additionalProperties": True, "type": "object"},
            "notice": {"default": "x" * 81, "type": "string", "description": "a long constant"},
        },
        "required": ["title", "frames", "names", "kind", "note", "crash", "status", "extra", "notice"],
        "title": "Result",
        "type": "object",
    }  # fmt: skip
    published = compact_schema(shallow_output_schema(schema))
    assert published == {
        "properties": {
            "title": {"type": "string"},  # the field named title stays; descriptions are in the results resource
            "frames": {"type": "array"},  # a list of nested objects, opaque like a nested object
            "names": {"items": {"type": "string"}, "type": "array"},
            "kind": {"enum": ["a", "b"]},  # the enumeration says the type
            "note": {"type": ["string", "null"]},
            "crash": {"type": ["object", "null"]},
            "status": {"enum": ["open", "done", None]},
            "extra": {"type": "object"},
            # the long constant (production_data_notice) is said once, in the server's instructions
        },
        "type": "object",
    }
    good = {"title": "t", "frames": [{"line": 1}], "names": ["a"], "kind": "a", "note": None, "crash": None,
            "status": None, "extra": {"k": 1}, "notice": "x" * 81}  # fmt: skip
    jsonschema.validate(good, schema)
    jsonschema.validate(good, published)  # what the tool returns validates against what is published
    for wrong in ({"kind": "c"}, {"status": "gone"}, {"note": 3}, {"names": [1]}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**good, **wrong}, published)


def test_optional_parameters_are_published_without_null_and_still_accept_it() -> None:
    schema = {
        "properties": {
            "issue_id": {"type": ["integer", "null"], "minimum": 1},
            "status": {"enum": ["open", None], "default": "open"},
            "limit": {"type": ["integer", "null"], "default": 5},
            "receipt": {"type": "string"},
        },
        "required": ["receipt"],
        "type": "object",
    }
    assert optional_without_null(schema)["properties"] == {
        "issue_id": {"type": "integer", "minimum": 1},  # left out means null: the agent leaves it out
        "status": {"enum": ["open", None], "default": "open"},  # null means something else than left out
        "limit": {"type": ["integer", "null"], "default": 5},
        "receipt": {"type": "string"},
    }


def test_a_result_field_that_repeats_a_required_argument_is_not_listed_again() -> None:
    inputs = {"properties": {"issue_id": {"type": "integer"}, "cursor": {"type": "string"}}, "required": ["issue_id"]}
    output = {"properties": {"issue_id": {"type": "integer"}, "cursor": {"type": "string"}, "n": {"type": "integer"}}}
    assert without_echoes(output, inputs) == {"properties": {"cursor": {"type": "string"}, "n": {"type": "integer"}}}
    jsonschema.validate({"issue_id": 3, "cursor": "c", "n": 1}, {**without_echoes(output, inputs), "type": "object"})


async def test_each_tools_result_is_documented_in_a_resource(ctx: AppContext) -> None:
    async with Client(build_mcp(ctx)) as client:
        tools = (await client.list_tools()).tools
        documented = await client.read_resource("prodloop://results/mutate_validate")
        with pytest.raises(MCPError, match="not a tool of this server"):
            await client.read_resource("prodloop://results/nope")
    schema = json.loads(documented.contents[0].text)  # type: ignore[union-attr]
    mutate = next(t for t in tools if t.name == "mutate_validate")
    assert mutate.output_schema is not None and set(schema["properties"]) >= set(mutate.output_schema["properties"])
    assert "null when none was scored" in schema["properties"]["score"]["description"]
    assert "description" not in json.dumps(mutate.output_schema)
    survivor = schema["$defs"]["SurvivingMutant"]["properties"]
    assert survivor["diff"]["description"] == "the mutant as a unified diff against the fixed code"  # nested, too


async def test_text_content_is_compact_json_without_empty_fields(
    service_ctx: Callable[..., AppContext],
) -> None:
    ctx = service_ctx("unknown_sku")
    async with Client(build_mcp(ctx)) as client:
        result = await client.call_tool("fetch_error_context", {"issue_id": 1})
    text = result.content[0].text  # type: ignore[union-attr]
    assert text == json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)  # no indentation
    shown = json.loads(text)
    structured: dict[str, Any] = result.structured_content or {}
    assert structured["user_id"] is None and "user_id" not in shown  # empty fields are left out of the text
    assert shown["frames"] == [{k: v for k, v in f.items() if v not in (None, "", [], {})} for f in shown["frames"]]
    assert len(text) < len(json.dumps(structured, separators=(",", ":")))


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        ("list_issues", {}),
        ("fetch_error_context", {"issue_id": 1, "frames_limit": 3, "breadcrumbs_limit": 2}),
        ("map_code_path", {"issue_id": 1}),
        ("post_merge_status", {"issue_id": 1}),
        ("synthesize_regression_test", {"issue_id": 1}),
    ],
)
async def test_the_exact_text_each_tool_sends_on_the_sample_service(
    service_ctx: Callable[..., AppContext], tool: str, arguments: dict[str, Any]
) -> None:
    ctx = service_ctx("unknown_sku")
    async with Client(build_mcp(ctx)) as client:
        result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    _check_snapshot(tool, result.content[0].text)  # type: ignore[union-attr]


async def test_the_exact_tool_descriptions(ctx: AppContext) -> None:
    async with Client(build_mcp(ctx)) as client:
        tools = (await client.list_tools()).tools
    _check_snapshot("tools_list", "\n".join(f"{t.name}: {t.description}" for t in tools))
