"""Budgets per issue lineage: candidate runs, the CPU seconds the server spent, and the tokens and money agents
report (`report_agent_cost`; the headless loop reports its own CPU).

Counted in the store, so they survive restarts. An exhausted budget refuses further work and opens an escalation
for a person; only a person starts it again (`prodloop budget reset ISSUE --by NAME --why TEXT`, recorded).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from prodloop.server.clock import Clock
from prodloop.server.errors import BudgetExhausted
from prodloop.server.settings import BudgetSettings
from prodloop.server.store import Store, lineage, policy
from prodloop.tools.engine._shape import iso


class BudgetStatus(BaseModel):
    issue_id: int
    runs_used: int
    runs_limit: int
    synthesis_attempts_used: int = Field(description="frames synthesis ran (counted apart from runs)")
    synthesis_attempts_limit: int
    cpu_seconds_used: float
    cpu_seconds_limit: float
    tokens_used: int = Field(description="reported by agents")
    tokens_limit: int
    cost_usd_used: float = Field(description="reported by agents")
    cost_usd_limit: float
    exhausted: bool
    exhausted_at: str | None
    escalations_open: int = Field(description="escalations waiting for a person")


def budget_status(store: Store, limits: BudgetSettings, issue_id: int) -> BudgetStatus:
    store.get_issue(issue_id)
    row = policy.budget(store, issue_id)
    spent = lineage.lineage(store, issue_id)
    return BudgetStatus(
        issue_id=issue_id,
        runs_used=row.runs,
        runs_limit=limits.max_runs,
        synthesis_attempts_used=row.synthesis_attempts,
        synthesis_attempts_limit=limits.max_synthesis_attempts,
        cpu_seconds_used=round(row.cpu_seconds, 3),
        cpu_seconds_limit=limits.max_cpu_seconds,
        tokens_used=spent.tokens,
        tokens_limit=limits.max_agent_tokens,
        cost_usd_used=round(spent.cost_usd, 4),
        cost_usd_limit=limits.max_cost_usd,
        exhausted=_spent(row, limits) is not None
        or row.exhausted_at is not None
        or spent.tokens >= limits.max_agent_tokens
        or spent.cost_usd >= limits.max_cost_usd,
        exhausted_at=iso(row.exhausted_at),
        escalations_open=len(policy.escalations(store, issue_id=issue_id, open_only=True)),
    )


def reserve_run(
    store: Store,
    limits: BudgetSettings,
    clock: Clock,
    issue_id: int,
    *,
    kind: Literal["candidate", "synthesis", "cpu"] = "candidate",
) -> None:
    """Take one run of the issue's budget of `kind` (atomically), or refuse and escalate when none is left.

    `candidate` counts a candidate run, `synthesis` a frame synthesis tried on the deployed code, `cpu` (mutation
    testing) only checks the shared CPU budget. The refusal says which budget stopped what.
    """
    row, allowed = policy.reserve_run(
        store,
        issue_id,
        max_runs=limits.max_runs,
        max_cpu_seconds=limits.max_cpu_seconds,
        max_synthesis=limits.max_synthesis_attempts,
        kind=kind,
    )
    if allowed:
        return
    reason = _spent(row, limits, kind) or "marked exhausted"
    what = {"candidate": "candidate-run", "synthesis": "synthesis", "cpu": "CPU"}[kind]
    policy.mark_exhausted(store, issue_id, clock.now(), f"{what} budget exhausted: {reason}")
    raise BudgetExhausted(issue_id, f"{what} budget: {reason}")


def charge_cpu(store: Store, issue_id: int, *, cpu_seconds: float) -> None:
    policy.charge_budget(store, issue_id, runs=0, cpu_seconds=cpu_seconds)


class CostReport(BaseModel):
    tokens_used: int
    tokens_limit: int
    cost_usd_used: float
    cost_usd_limit: float
    exhausted: bool = Field(description="work on the issue is refused until a person resets it")


def report_cost(
    store: Store, limits: BudgetSettings, clock: Clock, issue_id: int, *, tokens: int, cost_usd: float,
    cpu_seconds: float = 0.0, reporter: str, note: str = "",
) -> CostReport:  # fmt: skip
    """Add what an agent (or the headless loop) spent on an issue; past a limit the lineage's work is refused from
    then on and a person is asked (escalated now, not at the next refusal)."""
    state = lineage.add_cost(store, issue_id, tokens=tokens, cost_usd=cost_usd, cpu_seconds=cpu_seconds,
                             reporter=reporter, note=note, at=clock.now())  # fmt: skip
    if state.tokens >= limits.max_agent_tokens or state.cost_usd >= limits.max_cost_usd:
        policy.escalate(store, issue_id, "cost", f"cost budget exhausted: {state.tokens} tokens, "
                        f"${state.cost_usd:.2f} reported", clock.now())  # fmt: skip
    status = budget_status(store, limits, issue_id)
    return CostReport(tokens_used=status.tokens_used, tokens_limit=status.tokens_limit,
                      cost_usd_used=status.cost_usd_used, cost_usd_limit=status.cost_usd_limit,
                      exhausted=status.exhausted)  # fmt: skip


def reset(store: Store, limits: BudgetSettings, clock: Clock, issue_id: int, *, who: str, why: str) -> BudgetStatus:
    """A person's reset of every counter of the lineage, recorded with who and why."""
    lineage.reset(store, issue_id, who=who, why=why, at=clock.now())
    return budget_status(store, limits, issue_id)


def _spent(row: policy.BudgetRow, limits: BudgetSettings, kind: str = "candidate") -> str | None:
    if kind == "candidate" and row.runs >= limits.max_runs:
        return f"{row.runs} of {limits.max_runs} candidate runs used"
    if kind == "synthesis" and row.synthesis_attempts >= limits.max_synthesis_attempts:
        return f"{row.synthesis_attempts} of {limits.max_synthesis_attempts} synthesis attempts used"
    if row.cpu_seconds >= limits.max_cpu_seconds:
        return f"{row.cpu_seconds:.1f} of {limits.max_cpu_seconds:.0f} CPU seconds used"
    return None
