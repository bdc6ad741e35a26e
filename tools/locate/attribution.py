"""Who last touched the failing code, and which recent commits most likely broke it.

Blame is taken at the deployed commit. Suspects are the commits between the previous
deploy or release and this one that touched, in falling order of suspicion: the crash
line, the culprit function, another function on the path, or only a file on the path.
`git log -L` follows each line range back through the edits, so a moved function is
still traced.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from prodloop.server.errors import CodePathError
from prodloop.server.store import Store
from prodloop.server.store.records import Deploy
from prodloop.tools.engine._shape import iso
from prodloop.tools.engine.git_repo import BlameRange, GitRepo

Reason = Literal["crash_line", "culprit_function", "path_function", "file"]
_RANK: dict[Reason, int] = {"crash_line": 0, "culprit_function": 1, "path_function": 2, "file": 3}
_FALLBACK_COMMITS = 50
_WORKERS = 4


class BlameLines(BaseModel):
    start: int
    end: int
    commit: str
    author: str
    date: str | None
    summary: str


class SuspectCommit(BaseModel):
    commit: str
    author: str
    date: str | None
    summary: str
    reason: Reason
    detail: str


class Attribution(BaseModel):
    crash_line: BlameLines | None
    culprit_function: list[BlameLines]
    suspects: list[SuspectCommit]
    range_from: str | None
    range_to: str
    range_note: str
    deploy_note: str | None


@dataclass(frozen=True)
class Span:
    path: str
    start: int
    end: int
    label: str


def attribute(
    repo: GitRepo,
    commit: str,
    *,
    since: str | None,
    since_note: str,
    crash: Span | None,
    culprit: Span | None,
    others: list[Span],
    files: list[str],
    max_suspects: int = 10,
) -> Attribution:
    if since is None:
        ancestors = repo.ancestors(commit, _FALLBACK_COMMITS + 1)
        since = ancestors[-1] if len(ancestors) > _FALLBACK_COMMITS else None
    spans: list[tuple[Span, Reason]] = [(crash, "crash_line")] if crash else []
    spans += [(culprit, "culprit_function")] if culprit else []
    spans += [(s, "path_function") for s in others]
    # Each question is its own git process; asked side by side they overlap their history walks.
    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        blamed = pool.submit(lambda: [repo.blame(commit, s.path) for s in (crash, culprit) if s is not None])
        touched = [(pool.submit(_touching, repo, since, commit, span), reason, span) for span, reason in spans]
        by_file = pool.submit(repo.commits_touching_files, since, commit, tuple(files)) if files else None
        blamed.result()
        found: dict[str, tuple[Reason, str]] = {}

        def mark(shas: tuple[str, ...], reason: Reason, detail: str) -> None:
            for sha in shas:
                if sha not in found or _RANK[reason] < _RANK[found[sha][0]]:
                    found[sha] = (reason, detail)

        for future, reason, span in touched:
            mark(future.result(), reason, span.label)
        if by_file is not None:
            mark(by_file.result(), "file", ", ".join(files[:5]))
    crash_blame = _blame(repo, commit, crash)[:1] if crash else []
    ranked = sorted(found.items(), key=lambda kv: (_RANK[kv[1][0]], -repo.commit_info(kv[0]).authored_at))
    suspects = []
    for sha, (reason, detail) in ranked[:max_suspects]:
        info = repo.commit_info(sha)
        suspects.append(
            SuspectCommit(
                commit=sha,
                author=info.author,
                date=iso(info.authored_at),
                summary=info.summary[:300],
                reason=reason,
                detail=detail,
            )
        )
    return Attribution(
        crash_line=crash_blame[0] if crash_blame else None,
        culprit_function=_blame(repo, commit, culprit) if culprit else [],
        suspects=suspects,
        range_from=since,
        range_to=commit,
        range_note=since_note if since else "the whole history up to the release was considered",
        deploy_note=None,
    )


def _touching(repo: GitRepo, since: str | None, until: str, span: Span) -> tuple[str, ...]:
    try:
        return repo.commits_touching_lines(since, until, span.path, span.start, span.end)
    except CodePathError:
        return ()  # a range git cannot trace (file shorter than the span) only loses this evidence


def _blame(repo: GitRepo, commit: str, span: Span | None) -> list[BlameLines]:
    if span is None:
        return []
    out = []
    for r in repo.blame(commit, span.path):
        if r.end < span.start or r.start > span.end:
            continue
        out.append(_lines(r, max(r.start, span.start), min(r.end, span.end)))
    return _merge(out)


def _lines(r: BlameRange, start: int, end: int) -> BlameLines:
    return BlameLines(
        start=start,
        end=end,
        commit=r.commit.sha,
        author=r.commit.author,
        date=iso(r.commit.authored_at),
        summary=r.commit.summary[:300],
    )


def _merge(ranges: list[BlameLines]) -> list[BlameLines]:
    merged: list[BlameLines] = []
    for r in sorted(ranges, key=lambda x: x.start):
        if merged and merged[-1].commit == r.commit and merged[-1].end + 1 >= r.start:
            merged[-1] = merged[-1].model_copy(update={"end": max(merged[-1].end, r.end)})
        else:
            merged.append(r)
    return merged


def deploy_note(store: Store, first_seen: float, environment: str | None, used: Deploy | None) -> str | None:
    """'first seen N minutes after deploy R (commit C)' when a recorded deploy precedes the first event."""
    candidates = [used] if used is not None else []
    candidates += store.deploys(environment=environment) if environment else store.deploys()
    before = [d for d in candidates if d is not None and d.deployed_at <= first_seen]
    if not before:
        return None
    d = max(before, key=lambda x: x.deployed_at)
    minutes = (first_seen - d.deployed_at) / 60
    return f"first seen {minutes:.0f} minutes after deploy {d.release} (commit {d.commit_sha[:12]}) to {d.environment}"
