"""The loop without a language model: synthesize, prove, mutate, ship — or say what is missing.

For one issue: map its code path, synthesize a regression test from the production inputs,
take the fix from the working tree (the changes against the deployed commit, which a person
or an agent wrote), run the candidate through every gate, mutation-test it and open the PR.
Where a step cannot be done without someone, the report says exactly what to supply.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, Field

from prodloop.server.clock import Clock
from prodloop.server.errors import BudgetExhausted, LineageHalted, ProdloopError, Quarantined, TriageRefused
from prodloop.server.settings import Settings
from prodloop.server.store import Store
from prodloop.server.store.receipts import Gate
from prodloop.tools import budget
from prodloop.tools.engine.collaborators import Collaborators
from prodloop.tools.engine.git_repo import GitRepo
from prodloop.tools.engine.runner import Runner
from prodloop.tools.judge.candidate import run_candidate_for_issue, working_tree_diff
from prodloop.tools.judge.mutation import mutate_validate
from prodloop.tools.locate.code_path import map_code_path
from prodloop.tools.reproduce.characterize import characterize
from prodloop.tools.reproduce.synthesis import synthesize_regression_test
from prodloop.tools.ship.pull_request import PullRequestResult, open_pr

Outcome = Literal["pr_opened", "needs_agent", "budget_exhausted", "needs_approval", "stopped", "error"]
EXIT_CODES: dict[Outcome, int] = {
    "pr_opened": 0, "error": 2, "needs_agent": 3, "budget_exhausted": 4, "needs_approval": 5, "stopped": 6,
}  # fmt: skip


class LoopStep(BaseModel):
    name: str
    ok: bool
    seconds: float
    detail: str


class LoopReport(BaseModel):
    issue_id: int
    outcome: Outcome
    exit_code: int
    steps: list[LoopStep]
    test_code: str | None
    gates: list[Gate] = Field(default_factory=list)
    receipt_id: str | None = None
    mutation_score: float | None = None
    pull_request: PullRequestResult | None = None
    needed: str | None = Field(default=None, description="what a person or an agent must supply to go on")
    seconds: float


def run_loop(
    store: Store,
    repo: GitRepo,
    runner: Runner,
    settings: Settings,
    clock: Clock,
    *,
    issue_id: int,
    on_step: Callable[[LoopStep], None] | None = None,
    client: str = "prodloop loop",
) -> LoopReport:
    ctx = Collaborators(store, repo, runner, settings, clock)
    started, cpu_started = time.monotonic(), time.process_time()
    report = LoopReport(issue_id=issue_id, outcome="error", exit_code=2, steps=[], test_code=None, seconds=0.0)
    steps = report.steps  # pydantic copies a list given to the constructor: append to the report's own

    def step(name: str, ok: bool, t0: float, detail: str) -> None:
        done = LoopStep(name=name, ok=ok, seconds=round(time.monotonic() - t0, 3), detail=detail)
        steps.append(done)
        if on_step is not None:
            on_step(done)

    def finish(outcome: Outcome, needed: str | None = None) -> LoopReport:
        report.outcome, report.exit_code, report.needed = outcome, EXIT_CODES[outcome], needed
        report.seconds = round(time.monotonic() - started, 3)
        try:  # the headless loop reports its own cost to the lineage, as agents do with report_agent_cost
            budget.report_cost(store, settings.budgets, clock, issue_id, tokens=0, cost_usd=0.0,
                               cpu_seconds=round(time.process_time() - cpu_started, 3), reporter=client,
                               note=f"loop: {outcome}")  # fmt: skip
        except ProdloopError:  # no such issue: nothing to charge
            pass
        return report

    try:
        t0 = time.monotonic()
        code_path = map_code_path(
            store, repo, issue_id=issue_id, path_rewrites=settings.path_rewrites, reliability=settings.reliability
        )
        culprit = code_path.culprit
        where = f"{culprit.location.repo_path}:{culprit.location.lineno} in {culprit.qualname}" if culprit else "none"
        step("map_code_path", culprit is not None, t0, f"culprit {where} at {code_path.release.commit[:12]}")
        if culprit is None:
            return finish(
                "needs_agent", "no frame of the error maps into the repository: " + "; ".join(code_path.notes)
            )

        t0 = time.monotonic()
        synthesized = synthesize_regression_test(*ctx, issue_id=issue_id, code_path=code_path)
        reasons = "; ".join(f"{a.frame}: {a.reason}" for a in synthesized.attempts)
        step("synthesize_regression_test", synthesized.test_code is not None, t0, reasons)
        if synthesized.test_code is None:
            return finish("needs_agent", f"write a regression test by hand: no frame could be rebuilt ({reasons})")
        report.test_code = synthesized.test_code

        t0 = time.monotonic()
        fix = working_tree_diff(repo, code_path.release.commit, synthesized.test_path or "")
        step(
            "find the fix",
            bool(fix.strip()),
            t0,
            f"{fix.count(chr(10))} diff lines in the working tree" if fix else "none",
        )
        if not fix.strip():
            return finish(
                "needs_agent",
                f"the synthesized test reproduces the failure; change the code in the working tree to fix it "
                f"(against {code_path.release.commit[:12]}) and run the loop again",
            )

        test_code = synthesized.test_code
        if synthesized.call is not None:
            t0 = time.monotonic()
            stronger, why = characterize(repo, runner, synthesized.call, fix)
            step("characterize the fix", stronger is not None, t0, why)
            test_code = stronger or test_code
            report.test_code = test_code

        t0 = time.monotonic()
        candidate = run_candidate_for_issue(
            *ctx, issue_id=issue_id, test_code=test_code, fix_diff=fix, code_path=code_path
        )
        report.receipt_id = candidate.receipt_id
        report.gates = list(candidate.gates)
        failed = [g.name for g in candidate.gates if not g.passed]
        step(
            "run_candidate_test", candidate.passed, t0, "all gates passed" if candidate.passed else f"failed: {failed}"
        )
        if not candidate.passed:
            return finish(
                "needs_agent", f"the fix does not pass every gate ({', '.join(failed)}): {candidate.next_step}"
            )

        t0 = time.monotonic()
        mutation = mutate_validate(*ctx, receipt_id=candidate.receipt_id, code_path=code_path)
        report.mutation_score = mutation.score
        step("mutate_validate", mutation.passed, t0, f"score {mutation.score} over {mutation.mutants} mutants")
        if not mutation.passed and not mutation.mutants:
            return finish("needs_agent", f"no mutant could be made of what the test guards: {mutation.note}")
        if not mutation.passed and mutation.score is None and mutation.unexercised:
            return finish(
                "needs_agent",
                f"the test's inputs tell none of the {mutation.unexercised} surviving mutant(s) apart from the fix: "
                "an input that reaches the fix's other branches is needed (another production event, or a case an "
                "agent adds)",
            )
        if not mutation.passed:
            return finish(
                "needs_agent",
                f"strengthen the test: {mutation.survived} mutant(s) its calls saw behave differently survived "
                f"(score {mutation.score} < {mutation.min_score}); assert more of what the fixed code returns",
            )

        t0 = time.monotonic()
        pr = open_pr(*ctx, receipt_id=candidate.receipt_id, client=client, code_path=code_path)
        report.pull_request = pr
        step("open_pr", True, t0, f"{pr.mode}: {pr.url or pr.branch} on {pr.remote}")
        return finish("pr_opened")
    except BudgetExhausted as exc:
        step("budget", False, time.monotonic(), str(exc))
        return finish("budget_exhausted", str(exc))
    except TriageRefused as exc:
        step("triage", False, time.monotonic(), str(exc))
        return finish("needs_approval", str(exc))
    except (Quarantined, LineageHalted) as exc:
        step("stopped", False, time.monotonic(), str(exc))
        return finish("stopped", str(exc))
    except ProdloopError as exc:
        step("error", False, time.monotonic(), str(exc))
        return finish("error", str(exc))
