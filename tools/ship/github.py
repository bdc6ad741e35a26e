"""GitHub (or GitHub Enterprise) through PyGithub: issues, pull requests, their merge state and comments.

The token comes from settings as a `SecretStr` and goes only into PyGithub's auth. `_mapped` is the one boundary:
every PyGithub and transport error becomes a `GitHubError` with the status and GitHub's own words, never the token.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
from github import Auth, Github, GithubException
from github.GithubRetry import GithubRetry

from prodloop.server.errors import ConfigError, GitHubError, InvalidArgument
from prodloop.server.settings import Settings
from prodloop.tools.engine.git_repo import GitRepo

logger = logging.getLogger("prodloop.tools")
_REMOTE = re.compile(r"(?:[:/])([^/:]+)/([^/]+?)(?:\.git)?/?$")
_URL_CREDENTIALS = re.compile(r"(\w+://)[^/@\s]+@")
_RETRIED = re.compile(r"too many (\d{3}) error responses")  # urllib3's words when its retries ran out
_SHA = re.compile(r"^[0-9a-f]{40}$")
_MAX_PULLS = 100  # of one commit: more is not a commit one PR introduced


@dataclass(frozen=True, slots=True)
class PullState:
    """A pull request as GitHub holds it. `merge_commit_sha` only once merged (GitHub's value for an open PR names
    a test merge that never lands); `merged_at` in seconds since the epoch."""

    merged: bool
    merge_commit_sha: str | None
    state: str
    merged_at: float | None


def repository_name(settings: Settings, repo: Path) -> str:
    if settings.github_repo:
        return settings.github_repo
    url = GitRepo(repo).remote_url(settings.git_remote)
    match = _REMOTE.search(url) if url is not None else None
    if match is None:
        raise ConfigError("github_repo", f"cannot be read from remote {settings.git_remote}", "set it as owner/name")
    return f"{match.group(1)}/{match.group(2)}"


def _client(settings: Settings, *, lazy: bool = False) -> Github:
    """`lazy`: objects fetched by number or sha are not read before they are used (one request instead of two)."""
    assert settings.github_token is not None
    return Github(
        base_url=settings.github_base_url.rstrip("/"),
        auth=Auth.Token(settings.github_token.get_secret_value()),
        timeout=30,
        retry=GithubRetry(total=3),
        lazy=lazy,
    )


@contextmanager
def _mapped(action: str) -> Iterator[None]:
    """Every failure of a GitHub call as a `GitHubError`: GitHub's answer (status and message), or why none came
    (refused, timed out, still failing after the retries)."""
    try:
        yield
    except GithubException as exc:
        data = exc.data if isinstance(exc.data, dict) else {}
        raise GitHubError(action, exc.status, str(data.get("message") or "")) from None
    except requests.RequestException as exc:  # no answer, or a 5xx still after GithubRetry's attempts
        said = _URL_CREDENTIALS.sub(r"\1", str(exc))
        status = _RETRIED.search(said)
        if status:
            raise GitHubError(action, int(status.group(1)), "the same answer after every retry") from None
        raise GitHubError(action, None, f"no answer ({type(exc).__name__}: {said[:200]})") from None


def create_issue(settings: Settings, repo: Path, *, title: str, body: str, labels: list[str]) -> tuple[str, int]:
    """File an issue; returns (html_url, number)."""
    name = repository_name(settings, repo)
    client = _client(settings)
    try:
        with _mapped(f"issue for {name}"):
            issue = client.get_repo(name).create_issue(title=title, body=body, labels=labels)
            return str(issue.html_url), int(issue.number)
    finally:
        client.close()


def open_issues(settings: Settings, repo: Path, *, limit: int = 100) -> list[tuple[int, str, str, str]]:
    """(number, title, body, html_url) of the repository's open issues, pull requests left out, newest first."""
    name = repository_name(settings, repo)
    client = _client(settings)
    try:
        with _mapped(f"open issues of {name}"):
            # One page of the listing, read as it came: PyGithub's Issue objects fetch each issue again when a field
            # the listing leaves out (`pull_request` on a plain issue) is read.
            _, page = client.requester.requestJsonAndCheck(
                "GET", f"/repos/{name}/issues", parameters={"state": "open", "per_page": min(100, limit)}
            )
        out = []
        for raw in page if isinstance(page, list) else []:
            if isinstance(raw, dict) and raw.get("pull_request") is None and isinstance(raw.get("number"), int):
                out.append((raw["number"], str(raw.get("title") or ""), str(raw.get("body") or ""),
                            str(raw.get("html_url") or "")))  # fmt: skip
        return out[:limit]
    finally:
        client.close()


def create_pull_request(
    settings: Settings,
    repo: Path,
    *,
    title: str,
    body: str,
    head: str,
    base: str,
    draft: bool,
    labels: list[str],
) -> tuple[str, int]:
    """Create the PR and label it; returns (html_url, number)."""
    name = repository_name(settings, repo)
    client = _client(settings)
    try:
        with _mapped(f"pull request for {name}"):
            pr = client.get_repo(name).create_pull(base=base, head=head, title=title, body=body, draft=draft)
        try:
            if labels:
                pr.add_to_labels(*labels)
        except (GithubException, requests.RequestException):  # the PR exists: a missing label is worth a log line
            logger.warning("PR %s opened, labels not added", pr.number)
        return str(pr.html_url), int(pr.number)
    finally:
        client.close()


def pull_request_state(settings: Settings, repo: Path, number: int) -> PullState:
    """Whether PR `number` is merged, with its merge commit and when."""
    name = repository_name(settings, repo)
    client = _client(settings, lazy=True)
    try:
        with _mapped(f"pull request {number} of {name}"):
            pr = client.get_repo(name).get_pull(number)
            merged, state, said, at = bool(pr.merged), str(pr.state), pr.merge_commit_sha, pr.merged_at
    finally:
        client.close()
    sha = said.lower() if merged and isinstance(said, str) and _SHA.match(said.lower()) else None
    return PullState(merged=merged, merge_commit_sha=sha, state=state, merged_at=at.timestamp() if at else None)


def pulls_for_commit(settings: Settings, repo: Path, sha: str) -> list[int]:
    """The numbers of the pull requests that introduced commit `sha` (GitHub's commit-to-PR association), lowest
    first."""
    sha = sha.lower()
    if not _SHA.match(sha):
        raise InvalidArgument("sha", f"{sha[:50]!r} is not a commit sha", "give the full 40-hex-digit sha")
    name = repository_name(settings, repo)
    client = _client(settings, lazy=True)
    try:
        with _mapped(f"pull requests of commit {sha[:12]} in {name}"):
            numbers = {int(pr.number) for pr, _ in zip(client.get_repo(name).get_commit(sha).get_pulls(),
                                                       range(_MAX_PULLS), strict=False)}  # fmt: skip
    finally:
        client.close()
    return sorted(numbers)


def comment_on_pull(settings: Settings, repo: Path, number: int, body: str) -> str:
    """Comment on PR `number` (an issue comment, the PR's conversation); returns the comment's html_url."""
    name = repository_name(settings, repo)
    client = _client(settings, lazy=True)
    try:
        with _mapped(f"comment on pull request {number} of {name}"):
            return str(client.get_repo(name).get_issue(number).create_comment(body).html_url)
    finally:
        client.close()
