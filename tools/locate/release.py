"""Which commit ran in production: an event's `release` resolved against deploys and git.

In order: a recorded deploy of that release; the release as a commit sha (full or short);
a tag equal to the release; Sentry's `package@version[+build]` form, tried as tags
(`version`, `vversion`, `package-version`, `package@version`) and its build code as a sha.
When nothing resolves, HEAD is used and the result says so, with low confidence.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field
from sentry_relay.processing import parse_release

from prodloop.server.store import Store
from prodloop.server.store.records import Deploy
from prodloop.tools.engine.git_repo import GitRepo

Source = Literal["deploy", "sha", "tag", "package-version", "head-fallback"]
_HEX = re.compile(r"^[0-9a-f]{7,40}$")


class ResolvedRelease(BaseModel):
    release: str | None
    commit: str
    source: Source
    confidence: Literal["high", "medium", "low"]
    deploy: str | None = Field(default=None, description="the deploy record used, if any")
    note: str


def resolve_release(
    repo: GitRepo, store: Store, release: str | None, environment: str | None = None, *, operator_only: bool = False
) -> tuple[ResolvedRelease, Deploy | None]:
    """`operator_only`: a deploy an agent recorded does not count (triage: the mapping decides the culprit)."""
    if release:
        deploy = _deploy(store, release, environment, operator_only=operator_only)
        if deploy is not None:
            sha = repo.resolve(deploy.commit_sha)
            if sha is not None:
                return (
                    ResolvedRelease(
                        release=release,
                        commit=sha,
                        source="deploy",
                        confidence="high",
                        deploy=f"{deploy.release} to {deploy.environment}",
                        note=f"release {release} was deployed to {deploy.environment} as commit {sha[:12]}",
                    ),
                    deploy,
                )
        if _HEX.match(release.lower()):
            sha = repo.resolve(release.lower())
            if sha is not None:
                return _found(release, sha, "sha", "high", f"release {release} is commit {sha[:12]}"), None
        tags = repo.tags()
        if release in tags:
            sha = tags[release]
            return _found(release, sha, "tag", "high", f"release {release} is tag {release}"), None
        sha, how = _package_version(repo, release, tags)
        if sha is not None:
            return _found(release, sha, "package-version", "medium", how), None
    head = repo.head()
    why = f"release {release} matches no deploy, commit or tag" if release else "the event has no release"
    return (
        ResolvedRelease(
            release=release,
            commit=head,
            source="head-fallback",
            confidence="low",
            note=f"{why}; mapped against HEAD ({head[:12]}), which may differ from what ran. "
            "Record deploys with `prodloop deploy record` or tag releases",
        ),
        None,
    )


def _deploy(store: Store, release: str, environment: str | None, *, operator_only: bool = False) -> Deploy | None:
    for env in (environment, None) if environment else (None,):
        found = [
            d for d in store.deploys(release=release, environment=env) if d.source == "operator" or not operator_only
        ]
        if found:
            return found[0]
    return None


def _found(release: str, sha: str, source: Source, confidence: Literal["high", "medium"], note: str) -> ResolvedRelease:
    return ResolvedRelease(release=release, commit=sha, source=source, confidence=confidence, note=note)


def _package_version(repo: GitRepo, release: str, tags: dict[str, str]) -> tuple[str | None, str]:
    try:
        parsed = parse_release(release)
    except Exception:  # relay rejects malformed release strings with its own error types
        return None, ""
    package = parsed.get("package") or ""
    version = parsed.get("version_raw") or ""
    short = (parsed.get("version_parsed") or {}).get("raw_short") or version.split("+", 1)[0]
    build = (parsed.get("version_parsed") or {}).get("build_code") or parsed.get("build_hash")
    for candidate in dict.fromkeys(
        filter(None, [version, short, f"v{short}", f"{package}-{short}", f"{package}@{short}"])
    ):
        if candidate in tags:
            return tags[candidate], f"release {release} is package {package} version {short}, tag {candidate}"
    if isinstance(build, str) and _HEX.match(build.lower()):
        sha = repo.resolve(build.lower())
        if sha is not None:
            return sha, f"release {release} carries build {build}, commit {sha[:12]}"
    return None, ""


def previous_release_commit(
    repo: GitRepo, store: Store, resolved: ResolvedRelease, deploy: Deploy | None
) -> tuple[str | None, str]:
    """The commit that ran before this release, for the suspect-commit range, and how it was found."""
    if deploy is not None:
        for earlier in store.deploys(environment=deploy.environment):
            if earlier.deployed_at < deploy.deployed_at and earlier.commit_sha != deploy.commit_sha:
                sha = repo.resolve(earlier.commit_sha)
                if sha is not None and repo.is_ancestor(sha, resolved.commit):
                    return sha, f"previous deploy {earlier.release} ({sha[:12]})"
    tag = repo.previous_tag(resolved.commit)
    if tag is not None:
        sha = repo.tags().get(tag) or repo.resolve(f"refs/tags/{tag}")
        if sha is not None and sha != resolved.commit:
            return sha, f"previous tag {tag} ({sha[:12]})"
    return None, "no earlier deploy or tag: the last 50 commits up to the release were considered"
