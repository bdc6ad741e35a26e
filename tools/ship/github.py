"""Opening the pull request on GitHub (or GitHub Enterprise) with PyGithub.

The token comes from settings as a `SecretStr` and goes only into PyGithub's auth; every
error is mapped here to a message with the status and GitHub's own words, never the token.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from github import Auth, Github, GithubException
from github.GithubRetry import GithubRetry

from prodloop.server.errors import ConfigError, GitHubError
from prodloop.server.settings import Settings
from prodloop.tools.engine.git_repo import GitRepo

logger = logging.getLogger("prodloop.tools")
_REMOTE = re.compile(r"(?:[:/])([^/:]+)/([^/]+?)(?:\.git)?/?$")


def repository_name(settings: Settings, repo: Path) -> str:
    if settings.github_repo:
        return settings.github_repo
    url = GitRepo(repo).remote_url(settings.git_remote)
    match = _REMOTE.search(url) if url is not None else None
    if match is None:
        raise ConfigError("github_repo", f"cannot be read from remote {settings.git_remote}", "set it as owner/name")
    return f"{match.group(1)}/{match.group(2)}"


def _client(settings: Settings) -> Github:
    assert settings.github_token is not None
    return Github(
        base_url=settings.github_base_url.rstrip("/"),
        auth=Auth.Token(settings.github_token.get_secret_value()),
        timeout=30,
        retry=GithubRetry(total=3),
    )


def create_issue(settings: Settings, repo: Path, *, title: str, body: str, labels: list[str]) -> tuple[str, int]:
    """File an issue; returns (html_url, number)."""
    name = repository_name(settings, repo)
    client = _client(settings)
    try:
        issue = client.get_repo(name).create_issue(title=title, body=body, labels=labels)
        return str(issue.html_url), int(issue.number)
    except GithubException as exc:
        data = exc.data if isinstance(exc.data, dict) else {}
        raise GitHubError(f"issue for {name}", exc.status, str(data.get("message") or "")) from None
    finally:
        client.close()


def open_issues(settings: Settings, repo: Path, *, limit: int = 100) -> list[tuple[int, str, str, str]]:
    """(number, title, body, html_url) of the repository's open issues, pull requests left out, newest first."""
    name = repository_name(settings, repo)
    client = _client(settings)
    try:
        # One page of the listing, read as it came: PyGithub's Issue objects fetch each issue again when a field the
        # listing leaves out (`pull_request` on a plain issue) is read.
        _, page = client.requester.requestJsonAndCheck(
            "GET", f"/repos/{name}/issues", parameters={"state": "open", "per_page": min(100, limit)}
        )
        out = []
        for raw in page if isinstance(page, list) else []:
            if isinstance(raw, dict) and raw.get("pull_request") is None and isinstance(raw.get("number"), int):
                out.append((raw["number"], str(raw.get("title") or ""), str(raw.get("body") or ""),
                            str(raw.get("html_url") or "")))  # fmt: skip
        return out[:limit]
    except GithubException as exc:
        data = exc.data if isinstance(exc.data, dict) else {}
        raise GitHubError(f"open issues of {name}", exc.status, str(data.get("message") or "")) from None
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
        try:
            pr = client.get_repo(name).create_pull(base=base, head=head, title=title, body=body, draft=draft)
        except GithubException as exc:
            data = exc.data if isinstance(exc.data, dict) else {}
            raise GitHubError(f"pull request for {name}", exc.status, str(data.get("message") or "")) from None
        try:
            if labels:
                pr.add_to_labels(*labels)
        except GithubException as exc:  # the PR exists: a missing label is worth a log line, not a failure
            logger.warning("PR %s opened, labels not added (HTTP %s)", pr.number, exc.status)
        return str(pr.html_url), int(pr.number)
    finally:
        client.close()
