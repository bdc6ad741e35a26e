"""`post_merge_status`: where an issue's lineage stands after its PRs (merged? deployed? did the fix work?), what it
has spent against its budgets, and what stops it, from one watch pass over the issue's PRs."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from prodloop.server.clock import Clock
from prodloop.server.errors import Quarantined
from prodloop.server.settings import Settings
from prodloop.server.store import Store, lineage
from prodloop.tools.budget import BudgetStatus, budget_status
from prodloop.tools.engine.git_repo import GitRepo
from prodloop.tools.observe.andon import require_unquarantined
from prodloop.tools.observe.post_merge import Judgement, LineageStep, Verdict, follow_lineages


class LineageStatus(BaseModel):
    issue_id: int
    issue_status: str = Field(description="resolved by a 'fixed' verdict; unresolved again on a regression")
    verdict: Verdict | None = Field(description="of the newest deployed PR; None before a deploy carries a fix")
    judgement: Judgement | None = Field(description="the numbers behind the newest verdict")
    pull_requests: list[LineageStep] = Field(description="each PR's stage and verdict, oldest first")
    no_effect_streak: int
    halted: str | None = Field(description="why the lineage stopped (a person resets it), else None")
    budget: BudgetStatus
    quarantined: str | None = Field(description="the andon cord holding the issue's code, else None")
    attribution: dict[str, Any] | None = Field(description="the commit and author the issue was attributed to")
    next_step: str


def post_merge_status(store: Store, repo: GitRepo, settings: Settings, clock: Clock, issue_id: int) -> LineageStatus:
    issue = store.get_issue(issue_id)
    steps = follow_lineages(store, repo, settings, clock, issue_id=issue_id)  # this issue's PRs only
    issue = store.get_issue(issue_id)
    state = lineage.lineage(store, issue_id)
    deployed = [s for s in steps if s.stage == "deployed"]
    newest = deployed[-1] if deployed else None
    judgement = newest.judgement if newest else None
    if newest is not None and judgement is None:
        stored = [v for v in lineage.verdicts(store, issue_id=issue_id) if v.numbers.get("metric")]
        judgement = Judgement.model_validate(stored[-1].numbers) if stored else None
    quarantined = None
    try:
        require_unquarantined(store, action="work", paths=lineage.issue_files(store, issue_id))
    except Quarantined as exc:  # its message names the cord and who releases it
        quarantined = str(exc)
    return LineageStatus(
        issue_id=issue_id, issue_status=issue.status,
        verdict=newest.verdict if newest else None, judgement=judgement, pull_requests=steps,
        no_effect_streak=state.no_effect_streak, halted=state.halted_why,
        budget=budget_status(store, settings.budgets, issue_id), quarantined=quarantined,
        attribution=lineage.attribution(store, issue_id),
        next_step=_next(steps, newest, state, quarantined),
    )  # fmt: skip


def _next(steps: list[LineageStep], newest: LineageStep | None, state: lineage.Lineage, quarantined: str | None) -> str:
    if state.halted_why:
        return "stop: the lineage is halted and escalated; a person resets it (prodloop budget reset)"
    if quarantined:
        return "stop: the issue's code is quarantined by an andon cord; a person releases it"
    if not steps:
        return "no PR yet: run the loop (fetch_error_context, run_candidate_test, mutate_validate, open_pr)"
    if newest is None:
        waiting = steps[-1]
        if waiting.stage == "pr_open":
            return "wait for the PR to be merged (a person reviews it)"
        return "merged: wait for a deploy that contains the merge commit (record_deploy by the operator)"
    if newest.verdict == "fixed":
        return "done: the production signal returned to baseline; the issue is resolved"
    if newest.verdict in ("no_effect", "regressed"):
        return "the fix did not hold: start another iteration (fetch_error_context on the newest events)"
    needed = newest.judgement.needed if newest.judgement else None
    return f"watching: {needed or 'wait for more traffic'}; call again later"
