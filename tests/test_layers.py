"""The layout is the architecture: tools take plain collaborators and never reach up into the server's roof."""

from __future__ import annotations

import ast
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
# The edge: what opens an AppContext and serves (MCP app, HTTP, CLI, demo). Tools, resources' and prompts'
# helpers below it may use the ground floor (errors, settings, clock, store, ingest) only.
_ROOF = {"context", "mcp_app", "http_app", "cli", "demo", "doctor", "tool_surface", "tool_descriptions", "auth"}


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_no_tool_imports_the_servers_roof() -> None:
    reaching = {
        str(path.relative_to(_ROOT)): sorted(
            name for name in _imports(path) if name.split(".")[:3] in ([["prodloop", "server", r] for r in _ROOF])
        )
        for path in sorted((_ROOT / "tools").rglob("*.py"))
    }
    assert {path: names for path, names in reaching.items() if names} == {}
