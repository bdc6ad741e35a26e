"""What an agent reads and pays for: shared parameter definitions, trimmed schemas and compact text results.

`tools/list` is sent to the model on every turn, so schemas carry types, constraints and descriptions but
not pydantic's derived titles, `default: null` or `anyOf [T, null]` where `type: [T, "null"]` says the same.
A tool's text content is its structured result as compact JSON with empty fields left out; the structured
content itself stays whole, so it validates against the published output schema.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from mcp.types import Tool as MCPTool
from pydantic import BaseModel, Field

IssueId = Annotated[int, Field(ge=1, description="from list_issues")]
EventId = Annotated[
    str,
    Field(
        pattern=r"^[0-9a-fA-F]{8}(-?[0-9a-fA-F]{4}){3}-?[0-9a-fA-F]{12}$",
        description="an event id: 32 hex digits (dashes allowed)",
    ),
]
ReceiptId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$", description="from run_candidate_test")]
Cursor = Annotated[str, Field(max_length=64, description="the next_cursor value of the previous page")]

# Every tool says destructiveHint and openWorldHint; a hint left out has MCP's default (readOnlyHint false,
# idempotentHint false, and idempotentHint means nothing for a read-only tool).
READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=False)
# Writes only prodloop's own store and throwaway worktrees; the user's repository and remotes are untouched.
LOCAL_WRITE = ToolAnnotations(destructive_hint=False, open_world_hint=False)
# Stores its result on the receipt: the same call again gives the same answer.
IDEMPOTENT_WRITE = ToolAnnotations(destructive_hint=False, idempotent_hint=True, open_world_hint=False)
# Pushes a branch to the remote and may call GitHub: reaches outside this machine, adds but never overwrites.
PUBLISHES = ToolAnnotations(destructive_hint=False, open_world_hint=True)

_SCHEMA_MAPS = frozenset({"properties", "$defs", "definitions", "patternProperties"})


def compact_schema(node: Any) -> Any:
    """The same schema without derived titles, `default: null`, or `anyOf` spelling a nullable simple type."""
    if isinstance(node, list):
        return [compact_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: compact_schema(sub) for name, sub in value.items()}
        elif key == "title" and isinstance(value, str):
            continue
        elif key == "default" and value is None:
            continue
        elif key == "additionalProperties" and value is True:
            continue  # JSON Schema's default
        else:
            out[key] = compact_schema(value)
    branches = out.get("anyOf")
    if isinstance(branches, list) and len(branches) == 2 and {"type": "null"} in branches:
        other = branches[0] if branches[1] == {"type": "null"} else branches[1]
        if isinstance(other, dict) and isinstance(other.get("enum"), list) and not {"anyOf", "const"} & set(other):
            del out["anyOf"]
            out.update({**other, "enum": [*other["enum"], None]})
        elif (
            isinstance(other, dict)
            and not {"anyOf", "enum", "const"} & set(other)
            and isinstance(other.get("type"), str)
        ):
            del out["anyOf"]
            out.update({**other, "type": [other["type"], "null"]})
    enum = out.get("enum")
    if isinstance(enum, list) and isinstance(out.get("type"), str) and all(_is_json_type(v, out["type"]) for v in enum):
        del out["type"]  # the enumeration says it
    return out


def without_echoes(output: dict[str, Any] | None, inputs: dict[str, Any]) -> dict[str, Any] | None:
    """A result's fields that repeat a required argument (same name, same type) are not listed again: the caller
    sent them. The structured content still carries them (the schema allows fields it does not list)."""
    if output is None:
        return None
    required = set(inputs.get("required", []))
    given = inputs.get("properties", {})
    kept = {
        name: field
        for name, field in output.get("properties", {}).items()
        if not (name in required and field.get("type") == given.get(name, {}).get("type"))
    }
    return {**output, "properties": kept}


def _is_json_type(value: Any, name: str) -> bool:
    return (name == "string" and isinstance(value, str)) or (name == "null" and value is None)


def optional_without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An input schema whose optional parameters (left out means the same as null) are typed without `null`: the
    agent leaves them out rather than sending null. The server still accepts an explicit null."""
    required = set(schema.get("required", []))
    properties = {}
    for name, prop in schema.get("properties", {}).items():
        kind = prop.get("type")
        if name not in required and "default" not in prop and isinstance(kind, list) and "null" in kind:
            rest = [k for k in kind if k != "null"]
            prop = {**prop, "type": rest[0] if len(rest) == 1 else rest}
        properties[name] = prop
    return {**schema, "properties": properties}


def shallow_output_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The result's own fields with their types; a nested object is typed `object` (its fields are in the result
    itself), an enumeration keeps its values. Descriptions, nested fields' too, are read on demand at
    prodloop://results/{tool}. Every field is always present in the structured content, so `required` is left
    out (the text content drops empty ones). Whatever the tool returns validates."""
    defs: dict[str, Any] = schema.get("$defs", {})

    def flat(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            target = defs.get(str(node["$ref"]).rsplit("/", 1)[-1], {})
            kept = {k: v for k, v in target.items() if k in ("enum", "type")}
            return kept or {"type": "object"}
        out = dict(node)
        for key in ("items", "additionalProperties"):
            if isinstance(out.get(key), dict):
                out[key] = flat(out[key])
        if out.get("items") == {"type": "object"}:
            del out["items"]  # a list of nested objects: they are opaque here as a nested object is
        if isinstance(out.get("anyOf"), list):
            out["anyOf"] = [flat(branch) for branch in out["anyOf"]]
        if "properties" in out and node is not schema:
            out = {k: v for k, v in out.items() if k not in ("properties", "required")}
        return out

    top = {k: v for k, v in schema.items() if k not in ("$defs", "required")}
    top["properties"] = {
        name: flat(sub) for name, sub in schema.get("properties", {}).items() if not _is_long_constant(sub)
    }
    for field in top["properties"].values():
        field.pop("default", None)  # a result's field is always there: a default says nothing to its reader
        field.pop("description", None)  # documented, nested fields too, at prodloop://results/{tool}
    return top


def _is_long_constant(field: Any) -> bool:
    """The production-data notice every context result carries: said once, in the server's instructions, and
    left out of each schema (the structured content still has it; the schema allows fields it does not list)."""
    default = field.get("default") if isinstance(field, dict) else None
    return isinstance(default, str) and len(default) > 80


def _without_empty(value: Any) -> Any:
    if isinstance(value, dict):
        kept = {k: _without_empty(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in (None, "", [], {})}
    if isinstance(value, list):
        return [_without_empty(v) for v in value]
    return value


def reply(result: BaseModel) -> CallToolResult:
    """Structured content whole; the text the model reads compact, empty fields left out."""
    structured = result.model_dump(mode="json", by_alias=True)
    text = json.dumps(_without_empty(structured), separators=(",", ":"), ensure_ascii=False)
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured)


class AgentServer(MCPServer):
    """An MCP server whose `tools/list` publishes compact schemas (`compact_schema`, `shallow_output_schema`); a
    result's documented schema, every field and nested field with its description, is `result_schema(tool)`."""

    async def result_schema(self, name: str) -> dict[str, Any] | None:
        for tool in await super().list_tools():
            if tool.name == name:
                return compact_schema(tool.output_schema) if tool.output_schema else None
        return None

    async def list_tools(self) -> list[MCPTool]:
        tools = await super().list_tools()
        out = []
        for tool in tools:
            inputs = optional_without_null(compact_schema(tool.input_schema))
            output = compact_schema(shallow_output_schema(tool.output_schema)) if tool.output_schema else None
            out.append(
                tool.model_copy(update={"input_schema": inputs, "output_schema": without_echoes(output, inputs)})
            )
        return out


def tools_list_bytes(tools: list[MCPTool]) -> int:
    """The size of `tools/list` as sent (compact JSON of every tool definition)."""
    dumped = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools]
    return len(json.dumps(dumped, separators=(",", ":")))
