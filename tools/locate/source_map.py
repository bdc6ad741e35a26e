"""From a frame's `abs_path` / `filename` / `module` to a file of the repository at a commit.

Candidates, best first: the absolute path after the configured prefix rewrites (or made
relative to the repository), the frame's relative filename, the module as a path; each
taken as is or by the longest suffix of path components over the tree. The match is then
verified against the frame's code context (`context_line`, pre/post context); when the
line moved, the nearest line whose context matches best is taken instead.
"""

from __future__ import annotations

import re
import sysconfig
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from prodloop.tools.engine.git_repo import GitRepo

Confidence = Literal["exact", "drifted", "unverified"]

_LIBRARY_MARKERS = ("/site-packages/", "/dist-packages/", "/lib/python3", "<frozen ", "<string>")
_STDLIB = tuple(filter(None, {sysconfig.get_paths().get("stdlib"), sysconfig.get_paths().get("platstdlib")}))
_FILTERED = "[Filtered]"


class FrameLocation(BaseModel):
    in_repo: bool
    repo_path: str | None = None
    lineno: int | None = Field(default=None, description="the line at the mapped commit")
    event_lineno: int | None = None
    confidence: Confidence | None = None
    reason: str | None = Field(default=None, description="why the frame is not mapped, or how it was")


def module_of(path: str) -> str:
    """The import name of a repository file (`src/` layouts included): `pkg/mod.py` -> `pkg.mod`."""
    return path.removeprefix("src/").removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def locate_frame(
    repo: GitRepo, commit: str, frame: Mapping[str, Any], rewrites: Mapping[str, str] | None = None
) -> FrameLocation:
    abs_path = str(frame.get("abs_path") or "")
    filename = str(frame.get("filename") or "")
    module = str(frame.get("module") or "")
    lineno = frame.get("lineno") if isinstance(frame.get("lineno"), int) else None
    in_app = frame.get("in_app")
    if filename.startswith("<") or abs_path.endswith(">"):
        return FrameLocation(in_repo=False, event_lineno=lineno, reason=f"not a source file ({filename or abs_path})")
    library = _library_kind(abs_path or filename)
    if library and in_app is not True:
        return FrameLocation(in_repo=False, event_lineno=lineno, reason=f"{library} frame ({abs_path or filename})")
    path, by_suffix = _find_path(repo, commit, _candidates(repo, abs_path, filename, module, rewrites or {}))
    if path is None:
        what = abs_path or filename or module or "<unknown>"
        reason = f"no file at commit {commit[:12]} matches {what}"
        if in_app is False:
            reason = f"library frame marked not in-app ({what})"
        return FrameLocation(in_repo=False, event_lineno=lineno, reason=reason)
    text = repo.read(commit, path)
    if text is None:
        return FrameLocation(
            in_repo=True,
            repo_path=path,
            lineno=lineno,
            event_lineno=lineno,
            confidence="unverified",
            reason="the file is not UTF-8 text at this commit",
        )
    line, confidence, how = verify_line(text.splitlines(), frame, lineno)
    if by_suffix and confidence == "unverified":
        # Matched by the end of its path only, and its code is not in that file: another program's file.
        return FrameLocation(
            in_repo=False,
            event_lineno=lineno,
            reason=f"{abs_path or filename} only shares its name with {path}, whose code differs ({how})",
        )
    return FrameLocation(
        in_repo=True, repo_path=path, lineno=line, event_lineno=lineno, confidence=confidence, reason=how
    )


def _library_kind(path: str) -> str | None:
    if not path:
        return None
    if any(path.startswith(p) for p in _STDLIB):
        return "standard library"
    for marker in _LIBRARY_MARKERS:
        if marker in path:
            return (
                "standard library" if marker in ("/lib/python3", "<frozen ") and "-packages/" not in path else "library"
            )
    return None


def _candidates(repo: GitRepo, abs_path: str, filename: str, module: str, rewrites: Mapping[str, str]) -> list[str]:
    out: list[str] = []
    if abs_path:
        root = str(repo.path.resolve()).rstrip("/") + "/"
        if abs_path.startswith(root):
            out.append(abs_path[len(root) :])
        for prefix, replacement in sorted(rewrites.items(), key=lambda kv: -len(kv[0])):
            if abs_path.startswith(prefix):
                out.append((replacement + abs_path[len(prefix) :]).lstrip("/"))
                break
    if filename and not filename.startswith("<"):
        out.append(filename.lstrip("./"))
    if module and not module.startswith("<") and module != "__main__":
        base = module.replace(".", "/")
        out += [f"{base}.py", f"{base}/__init__.py"]
    if abs_path:
        out.append(abs_path.lstrip("/"))
    return list(dict.fromkeys(c for c in out if c))


def _find_path(repo: GitRepo, commit: str, candidates: list[str]) -> tuple[str | None, bool]:
    """(repository path, whether it was found by a shared path suffix rather than exactly)."""
    for candidate in candidates:
        if repo.exists(commit, candidate):
            return candidate, "/" not in candidate  # a top-level file found by its name alone must prove its code
    index = repo.by_basename(commit)
    best: tuple[int, str] | None = None
    for candidate in candidates:
        parts = candidate.split("/")
        for path in index.get(parts[-1], ()):
            shared = _shared_suffix(parts, path.split("/"))
            # A file name alone (`main.py`, `__main__.py`, `app.py`) never identifies a file of the repository.
            if shared >= 2 and (best is None or shared > best[0] or (shared == best[0] and len(path) < len(best[1]))):
                best = (shared, path)
    return (best[1], True) if best else (None, False)


def _shared_suffix(a: list[str], b: list[str]) -> int:
    n = 0
    while n < len(a) and n < len(b) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def verify_line(lines: list[str], frame: Mapping[str, Any], lineno: int | None) -> tuple[int | None, Confidence, str]:
    """(line at the commit, confidence, how) by comparing the frame's code context with the file."""
    context = frame.get("context_line")
    if not isinstance(context, str) or not context.strip():
        return lineno, "unverified", "the frame carries no code context to compare"
    want = _pattern(context)
    pre = [_pattern(x) for x in frame.get("pre_context") or [] if isinstance(x, str)]
    post = [_pattern(x) for x in frame.get("post_context") or [] if isinstance(x, str)]

    def score(i: int) -> int:  # i is 0-based
        if not want.fullmatch(lines[i].strip()):
            return -1
        s = 3
        for k, p in enumerate(reversed(pre), start=1):
            s += i - k >= 0 and bool(p.fullmatch(lines[i - k].strip()))
        for k, p in enumerate(post, start=1):
            s += i + k < len(lines) and bool(p.fullmatch(lines[i + k].strip()))
        return s

    full = 3 + len(pre) + len(post)
    at = score(lineno - 1) if lineno is not None and 1 <= lineno <= len(lines) else -1
    if at == full:
        return lineno, "exact", "code context matches the file at this line"
    scored = [(score(i), i) for i in range(len(lines))]
    best = max((s for s, _ in scored), default=-1)
    if at >= 3 and at >= best:
        return lineno, "exact", f"the line matches; {at - 3} of {full - 3} context lines match"
    if best < 3:
        return lineno, "unverified", "the frame's line is not in the file at this commit (changed or deleted since)"
    origin = (lineno or 1) - 1
    _, i = min(((s, i) for s, i in scored if s == best), key=lambda si: abs(si[1] - origin))
    moved = (i + 1) - (lineno or i + 1)
    return i + 1, "drifted", f"line moved by {moved:+d} between the event's code and this commit"


def _pattern(line: str) -> re.Pattern[str]:
    """A line as a pattern; a scrubbed `[Filtered]` part matches anything."""
    parts = line.strip().split(_FILTERED)
    return re.compile(".*".join(re.escape(p) for p in parts))
