"""Budgets per issue lineage: candidate runs and the CPU seconds they used.

Counted in the store, so they survive restarts. An exhausted budget refuses further runs
and opens an escalation for a person; `prodloop budget reset ISSUE` starts it again.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from prodloop.server.clock import Clock
from prodloop.server.errors import BudgetExhausted
from prodloop.server.settings import BudgetSettings
from prodloop.server.store import Store, policy
from prodloop.tools._shape import iso


class BudgetStatus(BaseModel):
    issue_id: int
    runs_used: int
    runs_limit: int
    cpu_seconds_used: float
    cpu_seconds_limit: float
    exhausted: bool
    exhausted_at: str | None
    escalations_open: int = Field(description="escalations waiting for a person")


def budget_status(store: Store, limits: BudgetSettings, issue_id: int) -> BudgetStatus:
    store.get_issue(issue_id)
    row = policy.budget(store, issue_id)
    return BudgetStatus(
        issue_id=issue_id,
        runs_used=row.runs,
        runs_limit=limits.max_runs,
        cpu_seconds_used=round(row.cpu_seconds, 3),
        cpu_seconds_limit=limits.max_cpu_seconds,
        exhausted=_spent(row, limits) is not None or row.exhausted_at is not None,
        exhausted_at=iso(row.exhausted_at),
        escalations_open=len(policy.escalations(store, issue_id=issue_id, open_only=True)),
    )


def reserve_run(store: Store, limits: BudgetSettings, clock: Clock, issue_id: int, *, count_run: bool = True) -> None:
    """Take one run of the issue's budget (atomically), or refuse and escalate when none is left."""
    row, allowed = policy.reserve_run(
        store, issue_id, max_runs=limits.max_runs, max_cpu_seconds=limits.max_cpu_seconds, count_run=count_run
    )
    if allowed:
        return
    reason = _spent(row, limits) or "marked exhausted"
    policy.mark_exhausted(store, issue_id, clock.now(), f"candidate-test budget exhausted: {reason}")
    raise BudgetExhausted(issue_id, reason)


def charge_cpu(store: Store, issue_id: int, *, cpu_seconds: float) -> None:
    policy.charge_budget(store, issue_id, runs=0, cpu_seconds=cpu_seconds)


def reset(store: Store, clock: Clock, issue_id: int) -> None:
    policy.reset_budget(store, issue_id, clock.now())


def _spent(row: policy.BudgetRow, limits: BudgetSettings) -> str | None:
    if row.runs >= limits.max_runs:
        return f"{row.runs} of {limits.max_runs} candidate runs used"
    if row.cpu_seconds >= limits.max_cpu_seconds:
        return f"{row.cpu_seconds:.1f} of {limits.max_cpu_seconds:.0f} CPU seconds used"
    return None
