"""`apply_suite_changes`: a person accepts `suggest_suite_changes` proposals by test path, and prodloop ships them.

A person's decision, so only the command line calls it (never an MCP tool). The proposals are computed again at the
base branch's head as fetched now; every accepted path must be proposed there (moved to the slower suite, or
removed), else nothing is built. One commit on the base: a moved file gains a module-level
`pytestmark = pytest.mark.<suite.slow_marker>` (the marker declared where the repository declares its markers), a
removed file is deleted, and one provenance line per change is appended to the ledger. It is pushed to
`prodloop/suite-<date>` and offered for review; the records are stored once the push succeeded.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from prodloop.server.clock import Clock
from prodloop.server.errors import InvalidArgument, SuiteChangeRefused
from prodloop.server.settings import Settings
from prodloop.server.store import Store
from prodloop.tools.engine._shape import cap, iso, md_inline
from prodloop.tools.engine.git_repo import GitRepo
from prodloop.tools.ship.suite import Proposal, suggest_suite_changes
from prodloop.tools.ship.suite_edits import add_pytestmark, register_marker
from prodloop.tools.ship.suite_ship import ShippedChange, base_of, branch_for, labels_for, ship

_ACTIONS = {"move_to_slow_suite": "moved", "remove": "removed"}
_MAX_ACCEPTED = 200
_MARKER_WHY = "moved out of the default run by prodloop (its code is quiet in git and in production)"


class SuiteChange(BaseModel):
    test_path: str
    action: Literal["moved", "removed"]
    reasons: list[str]


class SuiteChangeResult(ShippedChange):
    changes: list[SuiteChange]
    marker: str
    marker_registered_in: str | None = Field(description="the configuration file that now declares the marker")
    note: str = Field(description="how the moved tests are deselected, and what was left alone")
    provenance: list[dict[str, Any]]


def apply_suite_changes(
    store: Store, repo: GitRepo, settings: Settings, clock: Clock, *, accept: list[str], by: str, why: str,
    quiet_days: int = 180,
) -> SuiteChangeResult:  # fmt: skip
    """Move or remove the accepted test files in one pushed commit with provenance (see the module's docstring)."""
    accepted = list(dict.fromkeys(accept))
    if not 1 <= len(accepted) <= _MAX_ACCEPTED:
        raise InvalidArgument("accept", f"{len(accepted)} paths", f"accept 1 to {_MAX_ACCEPTED} proposed test paths")
    if not by.strip() or not why.strip():
        raise InvalidArgument("by/why", "empty", "say who accepts the changes and why (both are recorded)")
    base = base_of(repo, settings)
    proposals = suggest_suite_changes(store, repo, clock, quiet_days=quiet_days, at=base.sha)
    chosen = _chosen(accepted, {p.test_path: p for p in proposals.proposals}, base.name, quiet_days)
    marker = settings.suite.slow_marker
    files: dict[str, str] = {}
    deleted: list[str] = []
    for proposal in chosen:
        if proposal.action == "remove":
            deleted.append(proposal.test_path)
            continue
        edited = add_pytestmark(repo.read(base.sha, proposal.test_path) or "", marker)
        if edited is None:
            raise SuiteChangeRefused("suite change", f"{proposal.test_path} cannot be parsed on {base.name}",
                                     "fix or leave out that file")  # fmt: skip
        files[proposal.test_path] = edited
    registration = register_marker(_configs(repo, base.sha), marker, _MARKER_WHY) if files else None
    if registration is not None and registration.path and registration.text:
        files[registration.path] = registration.text
    now = clock.now()
    day = (iso(now) or "")[:10]
    branch = branch_for(repo, settings, f"prodloop/suite-{day}")
    records = [_record(p, by=by, why=why, base=base.name, branch=branch, at=iso(now) or "") for p in chosen]
    moved = sum(p.action != "remove" for p in chosen)
    title = f"Test suite: move {moved}, remove {len(chosen) - moved} (prodloop)"
    note = registration.note if registration else "no test was moved"
    body = _body(chosen, marker, note, by, why)
    shipped = ship(store, repo, settings, what="suite change", base=base, branch=branch, files=files,
                   deleted=tuple(deleted), records=records, title=title, body=body,
                   labels=labels_for(settings, "test-suite"), at=now)  # fmt: skip
    return SuiteChangeResult(
        **shipped.model_dump(),
        changes=[SuiteChange(test_path=p.test_path, action="removed" if p.action == "remove" else "moved",
                             reasons=p.reasons) for p in chosen],
        marker=marker, marker_registered_in=registration.path if registration else None, note=note,
        provenance=records,
    )  # fmt: skip


def _chosen(accepted: list[str], proposed: dict[str, Proposal], base: str, quiet_days: int) -> list[Proposal]:
    chosen = []
    for path in accepted:
        proposal = proposed.get(path)
        if proposal is None or proposal.action not in _ACTIONS:
            said = f"is proposed as {proposal.action}" if proposal else "has no proposal"
            raise InvalidArgument(
                "accept",
                f"{cap(path, 200)} {said} at the head of {base} (quiet_days {quiet_days}); nothing was built",
                "accept only paths `prodloop suite proposals` lists as move_to_slow_suite or remove",
            )
        chosen.append(proposal)
    return chosen


def _configs(repo: GitRepo, sha: str) -> dict[str, str]:
    names = ("pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")
    return {name: text for name in names if (text := repo.read(sha, name)) is not None}


def _record(proposal: Proposal, *, by: str, why: str, base: str, branch: str, at: str) -> dict[str, Any]:
    record: dict[str, Any] = {
        "test_node": proposal.test_path, "test_path": proposal.test_path, "action": _ACTIONS[proposal.action],
        "reasons": [cap(r, 300) for r in proposal.reasons], "accepted_by": cap(by, 200), "why": cap(why, 1000),
        "pull_request": {"branch": branch, "base": base}, "created_at": at,
    }  # fmt: skip
    added = proposal.provenance
    if added:  # a test prodloop added: which production failure it guarded
        record["added"] = {k: added.get(k) for k in ("issue_id", "fingerprint", "receipt_id", "created_at")}
    return record


def _body(chosen: list[Proposal], marker: str, note: str, by: str, why: str) -> str:
    lines = [f"Accepted by {md_inline(by, 200)}: {md_inline(why, 1000)}", ""]
    for p in chosen:
        verb = f"move to the slower suite (`pytest.mark.{marker}`)" if p.action != "remove" else "remove"
        lines.append(f"- `{cap(p.test_path, 300)}`: {verb}")
        lines += [f"  - {md_inline(reason, 300)}" for reason in p.reasons]
    lines += ["", note, "", "Proposed by prodloop from production and git history; one provenance line per change."]
    return "\n".join(lines) + "\n"
