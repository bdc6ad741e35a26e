"""`record_deploy`: which commit a release put into which environment, and when."""

from __future__ import annotations

from pydantic import BaseModel

from prodloop.server.clock import Clock
from prodloop.server.errors import CodePathError
from prodloop.server.store import Store
from prodloop.tools.engine._shape import iso
from prodloop.tools.engine.git_repo import GitRepo


class DeployRecord(BaseModel):
    id: int
    release: str
    commit: str
    environment: str
    deployed_at: str | None


def record_deploy(
    store: Store,
    repo: GitRepo,
    clock: Clock,
    *,
    release: str,
    commit: str,
    environment: str = "production",
    deployed_at: float | None = None,
    source: str = "operator",
) -> DeployRecord:
    sha = repo.resolve(commit)
    if sha is None:
        raise CodePathError(
            str(repo.path), f"{commit[:60]} names no commit", "give a sha, tag or branch of this repository"
        )
    at = clock.now() if deployed_at is None else deployed_at
    deploy_id = store.record_deploy(
        release=release, commit_sha=sha, environment=environment, deployed_at=at, source=source
    )
    return DeployRecord(id=deploy_id, release=release, commit=sha, environment=environment, deployed_at=iso(at))
