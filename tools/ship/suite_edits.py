"""Edits of test files and pytest configuration for suite changes, as text: every line not changed stays byte for byte.

- `add_pytestmark`: a module-level `pytestmark = pytest.mark.<marker>` after the docstring and imports (an existing
  `pytestmark` becomes a list that includes the marker), with `import pytest` when the module lacks it;
- `add_decorator` / `remove_decorator`: a decorator line directly above a test function's (or method's) `def`, and
  that exact line removed again;
- `register_marker`: the marker declared where the repository declares its markers (pyproject.toml
  `[tool.pytest.ini_options] markers`, pytest.ini, tox.ini, setup.cfg), each edit checked by parsing the result.

Each returns the new text, or None when the edit cannot be made safely (the caller says so; nothing is guessed).
"""

from __future__ import annotations

import ast
import configparser
import re
import tomllib
from dataclasses import dataclass

_CONFIGS = (
    ("pytest.ini", "pytest"),
    ("pyproject.toml", "tool.pytest.ini_options"),
    ("tox.ini", "pytest"),
    ("setup.cfg", "tool:pytest"),
)  # fmt: skip  pytest's own order of precedence
_STRICT = re.compile(r"--strict-markers|--strict\b|^\s*strict(_markers)?\s*=\s*true", re.MULTILINE | re.IGNORECASE)


def _parse(text: str) -> ast.Module | None:
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError):
        return None


def _lines(text: str) -> list[str]:
    """Lines as Python counts them (`\n`, `\r\n`, `\r`), ends kept (str.splitlines also splits at form feeds)."""
    return [part for part in re.split(r"(?<=\n)|(?<=\r)(?!\n)", text) if part]


def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def _imports_pytest(tree: ast.Module) -> bool:
    return any(
        isinstance(node, ast.Import) and any(a.name == "pytest" and a.asname in (None, "pytest") for a in node.names)
        for node in tree.body
    )


def _after_header(tree: ast.Module) -> int:
    """The line (0-based index) after the module docstring and the imports that open the module."""
    end = 0
    for i, node in enumerate(tree.body):
        docstring = i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        if docstring or isinstance(node, (ast.Import, ast.ImportFrom)):
            end = node.end_lineno or node.lineno
            continue
        break
    return end


def add_pytestmark(text: str, marker: str) -> str | None:
    """`text` with the module marked `pytest.mark.<marker>`; unchanged when it already is; None when unparsable."""
    tree = _parse(text)
    if tree is None:
        return None
    mark = f"pytest.mark.{marker}"
    lines = _lines(text)
    nl = _newline(text)
    existing = [n for n in tree.body if isinstance(n, ast.Assign) and any(
        isinstance(t, ast.Name) and t.id == "pytestmark" for t in n.targets)]  # fmt: skip
    if existing:
        value = existing[-1].value
        segment = ast.get_source_segment(text, value)
        if segment is None or value.end_lineno is None or value.end_col_offset is None:
            return None
        if re.search(rf"\bmark\.{re.escape(marker)}\b", segment):
            return text
        if isinstance(value, ast.List):
            inner = segment[:-1].rstrip()
            comma = "" if inner.endswith((",", "[")) else ","
            closing = segment[len(inner) : -1]
            if "\n" in closing:  # one item a line: the marker on a line of its own
                last = inner.rsplit("\n", 1)[-1]
                new = f"{inner}{comma}{nl}{last[: len(last) - len(last.lstrip())]}{mark},{closing}]"
            else:
                new = f"{inner}{comma} {mark}]".replace("[ ", "[")
        elif isinstance(value, ast.Tuple) and segment.startswith("("):
            new = "[" + segment[1:-1].rstrip().rstrip(",") + f", {mark}]"
        else:
            new = f"[{segment}, {mark}]"
        start = sum(len(line.encode()) for line in lines[: value.lineno - 1])
        end = sum(len(line.encode()) for line in lines[: value.end_lineno - 1])
        raw = text.encode()
        head, tail = raw[: start + value.col_offset], raw[end + value.end_col_offset :]
        out = (head + new.encode() + tail).decode()
    else:
        at = _after_header(tree)
        importing = [] if _imports_pytest(tree) else [f"import pytest{nl}"]
        if at:
            added = [*importing, nl, f"pytestmark = {mark}{nl}"]
        else:  # nothing opens the module: the mark opens it, set apart from what follows
            added = [*importing, *([nl] if importing else []), f"pytestmark = {mark}{nl}", nl]
        if at and not lines[at - 1].endswith(("\n", "\r")):
            lines[at - 1] += nl
        out = "".join([*lines[:at], *added, *lines[at:]])
    return out if _parse(out) is not None else None


@dataclass(frozen=True, slots=True)
class FunctionAt:
    """A test function found in a module: its qualified name and the line index of its `def`."""

    qualname: str
    def_line: int
    indent: str
    decorators: tuple[tuple[int, int, str], ...]  # (first line index, last line index, source) each


def find_function(text: str, name: str, classes: tuple[str, ...] = ()) -> FunctionAt | None:
    """The function `name` at module level, or inside the class chain `classes`."""
    tree = _parse(text)
    if tree is None:
        return None
    body: list[ast.stmt] = tree.body
    for cls in classes:
        found = next((n for n in body if isinstance(n, ast.ClassDef) and n.name == cls), None)
        if found is None:
            return None
        body = found.body
    node = next((n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name), None)
    if node is None:
        return None
    line = _lines(text)[node.lineno - 1]
    decorators = tuple((d.lineno - 1, (d.end_lineno or d.lineno) - 1, ast.get_source_segment(text, d) or "")
                       for d in node.decorator_list)  # fmt: skip
    qualname = "::".join([*classes, name])
    return FunctionAt(qualname, node.lineno - 1, line[: len(line) - len(line.lstrip())], decorators)


def add_decorator(text: str, name: str, classes: tuple[str, ...], decorator: str) -> str | None:
    """`text` with `@decorator` directly above the function's `def` (and `import pytest` when missing)."""
    found = find_function(text, name, classes)
    tree = _parse(text)
    if found is None or tree is None:
        return None
    lines = _lines(text)
    nl = _newline(text)
    lines.insert(found.def_line, f"{found.indent}@{decorator}{nl}")
    if not _imports_pytest(tree):
        at = _after_header(tree)
        if at and not lines[at - 1].endswith(("\n", "\r")):
            lines[at - 1] += nl
        lines.insert(at, f"import pytest{nl}")
    out = "".join(lines)
    return out if _parse(out) is not None else None


def remove_decorator(text: str, name: str, classes: tuple[str, ...], contains: str) -> str | None:
    """`text` without the function's decorator whose source holds `contains` (lines holding only it), else None."""
    found = find_function(text, name, classes)
    if found is None:
        return None
    lines = _lines(text)
    for first, last, source in found.decorators:
        if contains in source and lines[first].lstrip().startswith("@") and lines[last].rstrip().endswith(")"):
            out = "".join(lines[:first] + lines[last + 1 :])
            return out if _parse(out) is not None else None
    return None


@dataclass(frozen=True, slots=True)
class MarkerRegistration:
    """Where the marker was declared (`path`, `text` the file's new content), or why not (`note`)."""

    path: str | None
    text: str | None
    note: str


def register_marker(configs: dict[str, str], marker: str, description: str) -> MarkerRegistration:
    """Declare `marker` in the pytest configuration among `configs` (file name -> text at the repository's root):
    where a `markers` setting exists, or added to a configuration that runs with strict markers."""
    entry = f"{marker}: {description}"
    deselect = f'`pytest -m "not {marker}"` deselects the moved tests'
    for path, section in _CONFIGS:
        text = configs.get(path)
        if text is None:
            continue
        current = _markers(path, text, section)
        if current is None:  # this file holds no pytest configuration: pytest reads the next one
            continue
        names, body = current
        if marker in names:
            return MarkerRegistration(None, None, f"{marker} is already declared in {path}; {deselect}")
        strict = bool(_STRICT.search(body))
        if not names and not strict and "markers" not in body:
            return MarkerRegistration(
                None, None, f"{path} declares no markers and does not run with --strict-markers: left alone; {deselect}"
            )
        edited = _add_toml(text, entry) if path == "pyproject.toml" else _add_ini(text, section, entry)
        if edited is None or (after := _markers(path, edited, section)) is None or marker not in after[0]:
            return MarkerRegistration(None, None, f"could not declare {marker} in {path} safely: add `{entry}` to its "
                                                  f"markers by hand; {deselect}")  # fmt: skip
        return MarkerRegistration(path, edited, f"{marker} declared in {path}; {deselect}")
    return MarkerRegistration(None, None, f"no pytest configuration declares markers: left alone; {deselect}")


def _markers(path: str, text: str, section: str) -> tuple[list[str], str] | None:
    """The marker names declared, and the section's text, or None when the file holds no such section."""
    if path == "pyproject.toml":
        try:
            table = tomllib.loads(text).get("tool", {}).get("pytest", {}).get("ini_options")
        except tomllib.TOMLDecodeError:
            return None
        if not isinstance(table, dict):
            return None
        listed = table.get("markers", [])
        names = [str(m).split(":", 1)[0].split("(", 1)[0].strip() for m in listed] if isinstance(listed, list) else []
        return names, _section_text(text, "[tool.pytest.ini_options]")
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error:
        return None
    if not parser.has_section(section):
        return None
    listed = parser.get(section, "markers", fallback="")
    names = [line.split(":", 1)[0].split("(", 1)[0].strip() for line in listed.splitlines() if line.strip()]
    return names, _section_text(text, f"[{section}]")


def _section_text(text: str, header: str) -> str:
    start = text.find(header)
    if start < 0:
        return ""
    following = re.search(r"^\s*\[", text[start + len(header) :], re.MULTILINE)
    return text[start : start + len(header) + following.start()] if following else text[start:]


def _add_toml(text: str, entry: str) -> str | None:
    header = "[tool.pytest.ini_options]"
    start = text.find(header)
    if start < 0:
        return None
    section = _section_text(text, header)
    end = start + len(section)
    nl = _newline(text)
    found = re.search(r"^markers\s*=\s*\[", section, re.MULTILINE)
    quoted = '"' + entry.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if found is None:
        body = section.rstrip() + f"{nl}markers = [{quoted}]{nl}"
        return text[:start] + body + section[len(section.rstrip()) :].lstrip("\r\n") + text[end:]
    opened = start + found.end() - 1
    closed = _closing_bracket(text, opened)
    if closed is None:
        return None
    content = text[opened + 1 : closed]
    kept = content.rstrip()
    comma = "" if not kept.strip() or kept.endswith(",") else ","
    if "\n" in content:
        last = kept.rsplit("\n", 1)[-1]
        indent = last[: len(last) - len(last.lstrip())] or "    "
        new = f"{kept}{comma}{nl}{indent}{quoted},{content[len(kept) :]}"
    else:
        new = f"{kept}{comma}{' ' if kept.strip() else ''}{quoted}{content[len(kept) :]}"
    return text[: opened + 1] + new + text[closed:]


def _closing_bracket(text: str, opened: int) -> int | None:
    """The index of the `]` closing the TOML array opened at `opened` (strings and comments skipped)."""
    depth, i, quote = 0, opened, ""
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\" and quote == '"':
                i += 1
            elif c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c == "#":
            i = text.find("\n", i)
            if i < 0:
                return None
        elif c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def _add_ini(text: str, section: str, entry: str) -> str | None:
    lines = _lines(text)
    nl = _newline(text)
    head = next((i for i, line in enumerate(lines) if line.strip() == f"[{section}]"), None)
    if head is None:
        return None
    end = next((i for i in range(head + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    key = next((i for i in range(head + 1, end) if re.match(r"markers\s*[=:]", lines[i])), None)
    if key is None:
        last = max((i for i in range(head + 1, end) if lines[i].strip()), default=head)
        if not lines[last].endswith(("\n", "\r")):
            lines[last] += nl
        return "".join([*lines[: last + 1], f"markers ={nl}", f"    {entry}{nl}", *lines[last + 1 :]])
    last = key
    for i in range(key + 1, end):
        if lines[i].strip() and lines[i][:1] in (" ", "\t"):
            last = i
        elif lines[i].strip():
            break
    indent = lines[last][: len(lines[last]) - len(lines[last].lstrip())] if last != key else "    "
    if not lines[last].endswith(("\n", "\r")):
        lines[last] += nl
    return "".join([*lines[: last + 1], f"{indent}{entry}{nl}", *lines[last + 1 :]])
