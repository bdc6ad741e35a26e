"""`propose_revert`: when the andon cord is pulled for a deploy, a revert of what the deploy added, offered for review
through the same machinery as `open_pr` (a pushed branch, and a PR labelled `revert` with a GitHub token, else its
description beside the store).

The revert is built on the base branch as it is now (it may have moved past the deploy) with git plumbing alone: no
working tree, no hooks, nothing any test ran in. Commits not on the base, or already undone there, are skipped and
said so; a revert that conflicts with what came after is refused for a person, and nothing is pushed.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field

from prodloop.server.clock import Clock
from prodloop.server.errors import InvalidArgument, RevertRefused
from prodloop.server.ingest.scrub import secret_findings
from prodloop.server.settings import Settings
from prodloop.tools.engine._shape import cap
from prodloop.tools.engine.git_repo import GitRepo, RevertBuilt
from prodloop.tools.ship.publish import check_pushed, fetch_base, free_branch, publish, push

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+|\.{2,}")  # what git refuses in a branch name, or reads as an option
_MAX_COMMITS = 200


class SkippedCommit(BaseModel):
    commit: str
    why: str


class RevertProposal(BaseModel):
    mode: Literal["github", "local"]
    branch: str
    base: str = Field(description="the branch the revert is built on and proposed to")
    commit: str = Field(description="the branch's tip: the last revert commit")
    remote: str
    reverted: list[str] = Field(description="the commits reverted, in the order they were (newest first)")
    skipped: list[SkippedCommit] = Field(description="commits not reverted, and why (not on the base, already undone)")
    labels: list[str]
    url: str | None
    number: int | None
    description_path: str | None = Field(description="local mode: where the PR description was written")
    proposed_at: float


def propose_revert(
    repo: GitRepo,
    settings: Settings,
    clock: Clock,
    *,
    key: str,
    commits: list[str],
    title: str,
    body: str,
) -> RevertProposal:
    """Revert `commits` (a deploy's, oldest first) on the base branch and push `prodloop/revert-{key}`; with a GitHub
    token open a PR from it (labels: `pr_labels` without `regression-test`, plus `revert`), else write its
    description to `<data_dir>/pull-requests/`. `title` and `body` are the caller's (the blast radius); the commits
    reverted and skipped are appended to the body. `key` names the branch: anything git would refuse in it (a
    release's `@`, spaces, `..`) becomes `-`."""
    slug = _slug(key)
    if not 1 <= len(commits) <= _MAX_COMMITS:
        raise InvalidArgument("commits", f"{len(commits)} commits", f"give the deploy's 1 to {_MAX_COMMITS} commits")
    remote = settings.git_remote
    base = settings.base_branch or repo.default_branch(remote)
    now = clock.now()
    built = repo.build_revert(fetch_base(repo, remote, base), commits, at=now)
    if built.conflict is not None:
        sha, paths = built.conflict
        shown = ", ".join(paths[:10]) + (f" and {len(paths) - 10} more" if len(paths) > 10 else "")
        raise RevertRefused(
            key,
            f"reverting commit {sha} conflicts with {base} as it is now (in {shown or 'the tree'})",
            f"the revert needs a person: git revert {sha[:12]} on {base} and resolve the conflict",
        )
    if built.commit is None:
        why = "; ".join(f"{sha[:12]}: {reason}" for sha, reason in built.skipped[:10])
        raise RevertRefused(key, f"none of the commits can be reverted on {base} ({why})", "check the deploy's commits")
    full_body = body.rstrip("\n") + "\n\n" + _commit_list(repo, built)
    _refuse_secrets(key, {**{f"the revert of {sha[:12]}": message for sha, message in built.messages},
                          "the PR title": title, "the PR description": full_body})  # fmt: skip
    branch = free_branch(repo, remote, f"prodloop/revert-{slug}")
    labels = list(dict.fromkeys([*(label for label in settings.pr_labels if label != "regression-test"), "revert"]))
    push(repo, remote, built.commit, branch)
    check_pushed(repo, remote, branch, built.commit)
    out = publish(
        settings, branch=branch, base=base, commit=built.commit, title=title, body=full_body, draft=False,
        labels=labels, again="proposing the revert again",
    )  # fmt: skip
    return RevertProposal(
        mode=out.mode, branch=branch, base=base, commit=built.commit, remote=remote, reverted=list(built.reverted),
        skipped=[SkippedCommit(commit=sha, why=why) for sha, why in built.skipped], labels=labels, url=out.url,
        number=out.number, description_path=out.description_path, proposed_at=now,
    )  # fmt: skip


def _slug(key: str) -> str:
    slug = _UNSAFE.sub("-", key)[:80].strip("-.")
    slug = slug.removesuffix(".lock").strip("-.")
    if not slug:
        raise InvalidArgument("key", f"{key[:80]!r} cannot name a branch", "use letters, digits, '.', '_' and '-'")
    return slug


def _commit_list(repo: GitRepo, built: RevertBuilt) -> str:
    lines = ["## Commits reverted (newest first)"]
    lines += [f"- `{sha[:12]}` {cap(repo.commit_info(sha).summary, 120)}" for sha in built.reverted]
    if built.skipped:
        lines += ["", "## Not reverted"]
        lines += [f"- `{sha[:12]}`: {why}" for sha, why in built.skipped]
    return "\n".join(lines) + "\n"


def _refuse_secrets(key: str, texts: dict[str, str]) -> None:
    """Nothing prodloop pushes or posts may carry a secret (names of the formats found, never the values)."""
    for what, text in texts.items():
        found = secret_findings(text)
        if found:
            raise RevertRefused(
                key, f"{what} carries {', '.join(found)}", "remove it from the title, the body or the commits' subjects"
            )
