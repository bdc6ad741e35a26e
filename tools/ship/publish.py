"""Shipping a commit prodloop built: the base it is built on, a free branch name, the push, and the pull request
(with a GitHub token) or its description beside the store (without). Shared by `open_pr` and `propose_revert`.

The commit is always pushed from the user's repository, never from a worktree a test ran in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from prodloop.server.errors import CodePathError, GitError, GitHubError, ProdloopError
from prodloop.server.settings import Settings
from prodloop.tools.engine.git_repo import GitRepo


@dataclass(frozen=True, slots=True)
class Published:
    """Where a pushed branch was offered for review: a PR (`url`, `number`) or a local description file."""

    mode: Literal["github", "local"]
    url: str | None
    number: int | None
    description_path: str | None


def fetch_base(repo: GitRepo, remote: str, base: str) -> str:
    """The commit `base` names on `remote` (fetched afresh), else locally."""
    repo.fetch(remote, base)
    sha = repo.resolve(f"refs/remotes/{remote}/{base}") or repo.resolve(base)
    if sha is None:
        raise CodePathError(str(repo.path), f"base branch {base} is neither on {remote} nor local", "set base_branch")
    return sha


def free_branch(repo: GitRepo, remote: str, wanted: str) -> str:
    """`wanted`, or `wanted-2`, `wanted-3`, ... when an earlier branch holds the name on the remote."""
    try:
        taken = set(repo.remote_heads(remote, f"{wanted}*"))
    except GitError:
        taken = set()  # the push will say what is wrong with the remote
    n = 1
    name = wanted
    while name in taken:
        n += 1
        name = f"{wanted}-{n}"
    return name


def push(repo: GitRepo, remote: str, commit: str, branch: str) -> None:
    """Push the commit made before any test ran, from the user's repository: never from the worktree a test ran
    in, whose `.git` pointer and config the test could have rewritten."""
    try:
        repo.push(remote, commit, branch)
    except GitError as exc:
        raise ProdloopError(f"push of {branch} to {remote} failed or was rejected: {str(exc)[-300:]}") from exc


def check_pushed(repo: GitRepo, remote: str, branch: str, commit: str) -> None:
    """What the remote holds is what was built."""
    if repo.remote_heads(remote, branch).get(branch) != commit:
        raise ProdloopError(f"{branch} on {remote} is not the commit prodloop built ({commit[:12]}); check the remote")


def publish(
    settings: Settings,
    *,
    branch: str,
    base: str,
    commit: str,
    title: str,
    body: str,
    draft: bool,
    labels: list[str],
    again: str,
) -> Published:
    """Offer the pushed `branch` for review: with `github_token` a pull request from it onto `base`; without one,
    its description written to `<data_dir>/pull-requests/<branch>.md`. `again`: what to run once the branch is
    dealt with, when GitHub refuses the pull request."""
    if settings.github_token is not None:
        from prodloop.tools.ship.github import create_pull_request

        try:
            url, number = create_pull_request(
                settings, settings.repo.resolve(), title=title, body=body, head=branch, base=base, draft=draft,
                labels=labels,
            )  # fmt: skip
        except GitHubError as exc:  # the branch is already out there: say so, and what to do with it
            raise ProdloopError(
                f"{exc}; the branch {branch} (commit {commit[:12]}) is already pushed to {settings.git_remote}: open "
                f"the pull request from it by hand, or delete the branch before {again}"
            ) from exc
        return Published("github", url, number, None)
    target = settings.resolved_data_dir / "pull-requests" / f"{branch.replace('/', '-')}.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(f"# {title}\n\n{body}", encoding="utf-8")
    return Published("local", None, None, str(target))
