"""Function extents from the source at a commit, with `ast`.

Every `def` (sync or async) gets its qualified name (`Class.method`, `outer.<locals>.inner`
shortened to `outer.inner`), its span including decorators, signature and decorators.
Lambdas and comprehensions are not functions of their own here: a line inside one belongs
to the innermost enclosing `def`, which is what a person would open.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from pydantic import BaseModel, Field


class FunctionExtent(BaseModel):
    qualname: str
    start: int = Field(description="first line, decorators included")
    def_line: int
    end: int
    signature: str
    decorators: list[str]
    excerpt: str = Field(description="the function's source, bounded")
    excerpt_truncated: bool


@dataclass(frozen=True, slots=True)
class _Def:
    qualname: str
    start: int
    def_line: int
    end: int
    node: ast.FunctionDef | ast.AsyncFunctionDef


class FunctionIndex:
    """All functions of one module's source; `at(line)` finds the innermost one holding a line."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines = source.splitlines()
        self.defs: list[_Def] = []
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            self.parsed = False
            return
        self.parsed = True
        self._walk(tree, [])

    def _walk(self, node: ast.AST, stack: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                qual = [*stack, child.name]
                start = min([d.lineno for d in child.decorator_list] + [child.lineno])
                self.defs.append(_Def(".".join(qual), start, child.lineno, child.end_lineno or child.lineno, child))
                self._walk(child, qual)
            elif isinstance(child, ast.ClassDef):
                self._walk(child, [*stack, child.name])
            else:
                self._walk(child, stack)

    def at(self, line: int) -> _Def | None:
        holding = [d for d in self.defs if d.start <= line <= d.end]
        return max(holding, key=lambda d: d.start) if holding else None

    def named(self, name: str) -> list[_Def]:
        """Defs whose qualified name is `name` or ends with `.name`."""
        return [d for d in self.defs if d.qualname == name or d.qualname.endswith("." + name)]

    def extent(self, d: _Def, *, max_lines: int = 80, max_chars: int = 6000) -> FunctionExtent:
        body = self.lines[d.start - 1 : d.end]
        truncated = len(body) > max_lines
        text = "\n".join(body[:max_lines])
        if len(text) > max_chars:
            text, truncated = text[:max_chars], True
        return FunctionExtent(
            qualname=d.qualname,
            start=d.start,
            def_line=d.def_line,
            end=d.end,
            signature=f"{'async ' if isinstance(d.node, ast.AsyncFunctionDef) else ''}def {d.node.name}"
            f"({ast.unparse(d.node.args)})" + (f" -> {ast.unparse(d.node.returns)}" if d.node.returns else ""),
            decorators=[ast.unparse(x) for x in d.node.decorator_list],
            excerpt=text,
            excerpt_truncated=truncated,
        )


def frame_function_matches(frame_function: str | None, qualname: str) -> bool:
    """Whether a frame's function name (co_name or co_qualname) can be this def's."""
    if not frame_function:
        return False
    if frame_function.startswith("<"):  # <lambda>, <listcomp>, <genexpr>, <module>
        return frame_function != "<module>"
    cleaned = frame_function.replace(".<locals>", "")
    return qualname == cleaned or qualname.endswith("." + cleaned) or cleaned.endswith("." + qualname)
