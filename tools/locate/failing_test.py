"""A failing CI test mapped to code the way a production error is: frames, functions, blame, recent commits.

The failure output is pytest's (or Python's) traceback text; every `path:line` it names that
is a file of the repository at HEAD becomes a frame with its enclosing function, the commit
that last changed the line, and the recent commits that touched that function.
"""

from __future__ import annotations

import re

from pydantic import BaseModel

from prodloop.tools.engine._shape import iso
from prodloop.tools.engine.functions import FunctionIndex
from prodloop.tools.engine.git_repo import GitRepo

_PYTEST = re.compile(r"^(?P<path>[\w./-]+\.py):(?P<line>\d+):", re.M)
_PYTHON = re.compile(r'File "(?P<path>[^"]+\.py)", line (?P<line>\d+), in (?P<func>[\w<>.]+)')
_RECENT = 50


class FailingFrame(BaseModel):
    path: str
    line: int
    function: str | None
    code: str | None
    last_changed_by: str | None
    last_change: str | None
    recent_commits: list[str]


def map_failing_test(repo: GitRepo, failure_output: str, *, max_frames: int = 10) -> list[FailingFrame]:
    head = repo.head()
    files = set(repo.files(head))
    found: list[tuple[str, int]] = []
    for match in [*_PYTHON.finditer(failure_output), *_PYTEST.finditer(failure_output)]:
        path = _in_repo(match.group("path"), files)
        if path is not None and (path, int(match.group("line"))) not in found:
            found.append((path, int(match.group("line"))))
    ancestors = repo.ancestors(head, _RECENT + 1)
    since = ancestors[-1] if len(ancestors) > _RECENT else None
    frames = []
    for path, line in found[:max_frames]:
        index = FunctionIndex(repo.read(head, path) or "")
        d = index.at(line)
        blame = next((b for b in repo.blame(head, path) if b.start <= line <= b.end), None)
        touching = repo.commits_touching_lines(since, head, path, d.start, d.end) if d else ()
        frames.append(
            FailingFrame(
                path=path,
                line=line,
                function=d.qualname if d else None,
                code=index.lines[line - 1].strip()[:300] if 0 < line <= len(index.lines) else None,
                last_changed_by=blame.commit.author if blame else None,
                last_change=f"{blame.commit.sha[:12]} {iso(blame.commit.authored_at)} {blame.commit.summary[:120]}"
                if blame
                else None,
                recent_commits=[
                    f"{c[:12]} {repo.commit_info(c).author}: {repo.commit_info(c).summary[:100]}" for c in touching[:5]
                ],
            )
        )
    return frames


def _in_repo(path: str, files: set[str]) -> str | None:
    parts = path.lstrip("./").split("/")
    for i in range(len(parts)):
        candidate = "/".join(parts[i:])
        if candidate in files:
            return candidate
    return None
