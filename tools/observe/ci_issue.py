"""A CI regression handled like a production issue: the failing test is its reproduction.

When CI reports a failure on the default branch that `ci_classify` calls a regression, the failure becomes an event
of the `ci` project (environment `ci`, release = the commit CI tested): its exception, message (scrubbed) and the
traceback's frames in the repository, each with its function at that commit. It goes through the ingest pipeline
like any event (scrubbed, grouped by the failure group's own fingerprint, so one issue per group), so
`map_code_path`, `run_candidate_test` (with the failing test as `test_file`: it reproduces), `mutate_validate` and
`open_pr` (which ships the fix alone when the base already holds the test) work on it. Triage sees it as one more
issue; in `approve` mode a person approves it like any other. Production deploys are judged on their own
environment, so a CI issue never pulls an andon cord or counts in a post-merge verdict.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel

from prodloop.server.clock import Clock
from prodloop.server.ingest.pipeline import EventProcessor
from prodloop.server.settings import Settings
from prodloop.server.store import Store, ci
from prodloop.tools.engine.functions import FunctionIndex
from prodloop.tools.engine.git_repo import GitRepo
from prodloop.tools.observe.ci_classify import Classification, classify_failure

PROJECT = "ci"
MAX_PER_RUN = 20


class CIIssue(BaseModel):
    failure_id: int
    kind: str
    issue_id: int | None
    test: str | None


def open_regressions(
    store: Store, repo: GitRepo, settings: Settings, clock: Clock, failure_ids: list[int], *, branch: str | None
) -> list[CIIssue]:
    """Classify the run's failure groups on the default branch; each regression becomes (or joins) an issue."""
    default = settings.base_branch or repo.default_branch(settings.git_remote)
    if branch is None or branch.removeprefix("refs/heads/") != default:
        return []
    out = []
    for failure_id in failure_ids[:MAX_PER_RUN]:
        found = classify_failure(store, repo, failure_id)
        issue_id = _open(store, repo, settings, clock, found) if found.kind == "regression" else None
        out.append(
            CIIssue(
                failure_id=failure_id,
                kind=found.kind,
                issue_id=issue_id,
                test=f"{found.test_path}::{found.test_id.split('::', 1)[-1]}" if found.test_path else None,
            )
        )
    return out


def _open(store: Store, repo: GitRepo, settings: Settings, clock: Clock, found: Classification) -> int | None:
    row = ci.failure(store, found.failure_id)
    if row is None or found.failing_commit is None:
        return None
    event = _event(repo, found, row)
    project = store.project_by_name(PROJECT) or store.create_project(PROJECT)
    record = EventProcessor(settings, clock).process(event, project_id=project.id, user_salt=project.public_key,
                                                     source="ci", what=f"CI failure {row.id}")  # fmt: skip
    store.write_events([record])
    hit = store.reader().execute("SELECT issue_id FROM events WHERE event_id = ?", (event["event_id"],)).fetchone()
    return int(hit[0]) if hit else None


def _event(repo: GitRepo, found: Classification, row: ci.FailureRow) -> dict[str, Any]:
    commit = found.failing_commit or ""
    files = set(repo.files(commit))
    frames = []
    for text in row.frames:
        name, _, line = text.rpartition(":")
        path = _in_repo(name, files)
        if path is None or not line.isdigit():
            continue
        fn = FunctionIndex(repo.read(commit, path) or "").at(int(line))
        frames.append({"filename": path, "abs_path": path, "lineno": int(line), "in_app": True,
                       "function": fn.qualname.rsplit(".", 1)[-1] if fn else "<module>",
                       "module": path.removesuffix(".py").replace("/", ".")})  # fmt: skip
    return {
        "event_id": uuid.uuid4().hex,
        "platform": "python",
        "level": "error",
        "timestamp": row.last_seen,
        "release": commit,
        "environment": "ci",
        "fingerprint": [f"ci-failure:{row.id}"],
        "exception": {
            "values": [
                {
                    "type": row.exception_type,
                    "value": row.message or row.exception_type,
                    "stacktrace": {"frames": frames},
                }
            ]
        },
        "tags": {"ci.test": row.test_id[:200], "ci.failure": str(row.id)},
    }


def _in_repo(name: str, files: set[str]) -> str | None:
    parts = name.replace("\\", "/").lstrip("/").split("/")
    return next((t for t in ("/".join(parts[i:]) for i in range(len(parts))) if t in files), None)
