"""What a unified diff changes: the new file's line numbers of its added lines, per file.

Used to hold a candidate test to what the fix claims to change (`covers_path`), and to scope
mutation testing to the fix's lines and the crash statement (`mutate_validate`).
"""

from __future__ import annotations

import ast
import re

_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@")


def added_lines(diff: str) -> dict[str, list[int]]:
    """`{path: [line, ...]}` of the lines a diff adds, numbered in the new file; deletions mark the line after.

    A hunk that only deletes lines marks the new file's line where the deletion happened, so a fix
    that removes a bad statement still names a place a test must reach.
    """
    out: dict[str, set[int]] = {}
    path: str | None = None
    line = 0
    for raw in diff.splitlines():
        if raw.startswith("+++ "):
            target = raw[4:].split("\t", 1)[0].strip()
            path = None if target == "/dev/null" else target.removeprefix("b/")
            continue
        if raw.startswith("--- ") or raw.startswith("diff --git"):
            continue
        match = _HUNK.match(raw)
        if match:
            line = int(match.group(1))
            continue
        if path is None or not raw:
            if path is not None:
                line += 1
            continue
        marker = raw[0]
        if marker == "+":
            out.setdefault(path, set()).add(line)
            line += 1
        elif marker == "-":
            out.setdefault(path, set()).add(line)
        elif marker == " ":
            line += 1
    return {p: sorted(lines) for p, lines in out.items()}


def code_lines(source: str, lines: list[int]) -> list[int]:
    """The given lines that hold code (not blank, not only a comment), within the file."""
    text = source.splitlines()
    return [n for n in lines if 0 < n <= len(text) and text[n - 1].strip() and not text[n - 1].strip().startswith("#")]


def statement_spans(source: str, lines: list[int]) -> list[tuple[int, list[int]]]:
    """For each statement holding one of `lines`: its first line and the lines it spans.

    A compound statement (`if`, `for`, `with`, `def`, ...) spans only its header, up to its body;
    a line that holds no statement (blank, or a file that does not parse) is its own span.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return [(n, [n]) for n in lines]
    headers: list[tuple[int, int]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.stmt):
            continue
        end = node.end_lineno or node.lineno
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
            first_child = min([body[0].lineno, *(d.lineno for d in getattr(body[0], "decorator_list", []))])
            end = max(node.lineno, first_child - 1)
        headers.append((node.lineno, end))
    spans: dict[int, list[int]] = {}
    for n in lines:
        holding = [(a, b) for a, b in headers if a <= n <= b]
        if not holding:
            continue
        a, b = min(holding, key=lambda span: span[1] - span[0])
        spans[a] = list(range(a, b + 1))
    return sorted(spans.items())


def statement_lines(source: str, lines: list[int]) -> list[int]:
    """`lines` widened to the whole statements (or compound headers) that hold them."""
    return sorted({n for _, span in statement_spans(source, lines) for n in span})
