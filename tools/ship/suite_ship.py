"""Shipping one test-suite change (moves and removals, a quarantine, its lift): one commit on the base branch built with
plumbing (files written whole, files deleted, one provenance line per change appended to the ledger), pushed to a
free branch and offered for review through `publish`; the provenance records stored once the push succeeded.

Nothing here runs a test: the commit holds only the edits the caller computed from the base's own files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from prodloop.server.errors import GitError, SuiteChangeRefused
from prodloop.server.ingest.scrub import secret_findings
from prodloop.server.settings import Settings
from prodloop.server.store import Store, policy
from prodloop.tools.engine.git_repo import GitRepo
from prodloop.tools.ship.provenance import jsonl_line
from prodloop.tools.ship.publish import check_pushed, fetch_base, free_branch, publish, push


@dataclass(frozen=True, slots=True)
class Base:
    """The base branch as fetched from the remote: its name and the commit it names."""

    name: str
    sha: str


class ShippedChange(BaseModel):
    """A test-suite change pushed and offered for review: a PR (`url`, `number`) or a local description file."""

    mode: Literal["github", "local"]
    branch: str
    base: str
    commit: str
    url: str | None
    number: int | None
    description_path: str | None = Field(description="local mode: where the PR description was written")


def base_of(repo: GitRepo, settings: Settings) -> Base:
    """The base branch (`base_branch`, else the remote's default), fetched afresh from `git_remote`."""
    name = settings.base_branch or repo.default_branch(settings.git_remote)
    return Base(name, fetch_base(repo, settings.git_remote, name))


def branch_for(repo: GitRepo, settings: Settings, wanted: str) -> str:
    return free_branch(repo, settings.git_remote, wanted)


def ship(
    store: Store, repo: GitRepo, settings: Settings, *, what: str, base: Base, branch: str, files: dict[str, str],
    deleted: tuple[str, ...], records: list[dict[str, Any]], title: str, body: str, labels: list[str], at: float,
    message: str | None = None, check: Callable[[str], None] | None = None,
) -> ShippedChange:  # fmt: skip
    """Build, push and publish the change; store `records` (with the PR's url when there is one) after the push.
    `message`: the commit's (default: title and body); `check`: given the built commit before anything is pushed
    (a heal runs its test there), it refuses by raising."""
    ledger = "".join(jsonl_line(r) for r in records)
    message = message or f"{title}\n\n{body}"
    texts = {"the PR title": title, "the PR description": body, "the provenance lines": ledger}
    for where, text in texts.items():
        found = secret_findings(text)
        if found:
            raise SuiteChangeRefused(what, f"{where} carries {', '.join(found)}", "remove it, then run this again")
    try:
        commit = repo.build_commit(base.sha, "", files, {settings.ledger_path: ledger}, message, deleted)
    except GitError as exc:
        raise SuiteChangeRefused(what, f"the commit could not be built on {base.name} ({str(exc)[:300]})",
                                 "check the repository") from exc  # fmt: skip
    extra = repo.changed_between(base.sha, commit) - {*files, *deleted, settings.ledger_path}
    if extra:
        raise SuiteChangeRefused(what, f"the commit would change {sorted(extra)} too", "nothing was pushed")
    if check is not None:
        check(commit)
    remote = settings.git_remote
    push(repo, remote, commit, branch)
    check_pushed(repo, remote, branch, commit)
    url: str | None = None
    number: int | None = None
    try:
        out = publish(settings, branch=branch, base=base.name, commit=commit, title=title, body=body, draft=False,
                      labels=labels, again="running this again")  # fmt: skip
        url, number = out.url, out.number
    finally:  # the branch is out there: its records are kept, with the PR when it was opened
        for record in records:
            record["pull_request"] = {**record.get("pull_request", {}), "url": url, "number": number}
        policy.save_provenance(store, records, at)
    return ShippedChange(
        mode=out.mode,
        branch=branch,
        base=base.name,
        commit=commit,
        url=url,
        number=number,
        description_path=out.description_path,
    )


def labels_for(settings: Settings, *extra: str) -> list[str]:
    """The configured PR labels without `regression-test` (this is no regression test) and without the auto-merge
    eligibility label (only `open_pr` judges that), plus `extra`."""
    left_out = {"regression-test", settings.auto_merge.label}
    return list(dict.fromkeys([*(label for label in settings.pr_labels if label not in left_out), *extra]))
