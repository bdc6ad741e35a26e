"""Shipping one test-suite change (moves and removals, a quarantine, its lift): one commit on the base branch built with
plumbing (files written whole, files deleted, one provenance line per change appended to the ledger), pushed to a
free branch and offered for review through `publish`; the provenance records stored once the push succeeded.

Nothing here runs a test: the commit holds only the edits the caller computed from the base's own files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

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


@dataclass(frozen=True, slots=True)
class Shipped:
    mode: Literal["github", "local"]
    branch: str
    commit: str
    url: str | None
    number: int | None
    description_path: str | None


def base_of(repo: GitRepo, settings: Settings) -> Base:
    """The base branch (`base_branch`, else the remote's default), fetched afresh from `git_remote`."""
    name = settings.base_branch or repo.default_branch(settings.git_remote)
    return Base(name, fetch_base(repo, settings.git_remote, name))


def branch_for(repo: GitRepo, settings: Settings, wanted: str) -> str:
    return free_branch(repo, settings.git_remote, wanted)


def ship(
    store: Store, repo: GitRepo, settings: Settings, *, what: str, base: Base, branch: str, files: dict[str, str],
    deleted: tuple[str, ...], records: list[dict[str, Any]], title: str, body: str, labels: list[str], at: float,
) -> Shipped:  # fmt: skip
    """Build, push and publish the change; store `records` (with the PR's url when there is one) after the push."""
    ledger = "".join(jsonl_line(r) for r in records)
    message = f"{title}\n\n{body}"
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
    return Shipped(out.mode, branch, commit, url, number, out.description_path)


def labels_for(settings: Settings, *extra: str) -> list[str]:
    """The configured PR labels without `regression-test` (this is no regression test), plus `extra`."""
    return list(dict.fromkeys([*(label for label in settings.pr_labels if label != "regression-test"), *extra]))
