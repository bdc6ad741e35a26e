"""`prodloop metrics`: how well the loop closes, from what the store holds.

- production-to-test latency: an issue's first event -> its regression test reaching the default branch (the PR's
  merge; while unmerged, the PR) — per issue, the first one;
- time to restore (MTTR): first event -> the `fixed` verdict after the fix's deploy;
- regression recurrence: of the issues a fix was judged `fixed` for, the share that came back (regressed);
- flake rate: of the (test, commit) pairs CI ran, the share where the test both failed and passed;
- no-effect share: of the deployed fixes judged, the share judged `no_effect`;
- CI time saved by selection: over the heads `prodloop ci select` chose tests for and CI then ran in full, the
  seconds of the selected test files against all (what runs first, and what a change-only job would cost);
- auto-merge: of prodloop's PRs, the share labelled eligible, and of those the share merged.
Each with how many it is computed over; a figure over nothing is None, never 0.
"""

from __future__ import annotations

import statistics

from pydantic import BaseModel, Field

from prodloop.server.store import Store, ci, lineage, policy


class Distribution(BaseModel):
    count: int
    p50_hours: float | None
    p90_hours: float | None
    under_one_hour: float | None = Field(description="share under an hour (the loop's bar for latency)")


class Metrics(BaseModel):
    production_to_test: Distribution
    time_to_restore: Distribution
    fixed: int
    regressed: int
    regression_recurrence: float | None
    verdicts: int = Field(description="deployed fixes judged fixed, no_effect or regressed")
    no_effect_share: float | None
    ci_runs: int
    flake_rate: float | None = Field(description="flaky (test, commit) pairs over all pairs CI ran")
    selections: int = Field(description="selections whose head CI ran in full")
    selected_time_share: float | None = Field(description="seconds of the selected tests over all tests' seconds")
    ci_time_saved: float | None = Field(description="1 - selected_time_share")
    pull_requests: int = Field(description="prodloop PRs with an auto-merge eligibility on record")
    auto_merge_eligible: float | None = Field(description="share of those PRs labelled eligible")
    auto_merged: float | None = Field(description="share of the eligible PRs that were merged")


def production_to_test_seconds(store: Store) -> dict[int, float]:
    """Per issue with a regression test: seconds from its first event to its first test reaching the default branch
    (the PR's merge; while unmerged, the PR). The latency distribution `metrics` summarizes."""
    merges = lineage.merges(store)
    first_test: dict[int, float] = {}
    for pr in policy.pull_requests(store):
        if pr.mode not in ("github", "local"):
            continue
        merged = merges.get(pr.id)
        at = merged.merged_at if merged is not None else pr.created_at
        first_test[pr.issue_id] = min(first_test.get(pr.issue_id, at), at)
    return {i: at - store.get_issue(i).first_seen for i, at in first_test.items()}


def metrics(store: Store) -> Metrics:
    latency = list(production_to_test_seconds(store).values())
    verdicts = lineage.verdicts(store)
    fixed_at: dict[int, float] = {}
    regressed: set[int] = set()
    no_effect = 0
    for v in verdicts:
        if v.verdict == "fixed":
            fixed_at.setdefault(v.issue_id, v.at)
        elif v.verdict == "regressed":
            regressed.add(v.issue_id)
        elif v.verdict == "no_effect":
            no_effect += 1
    restore = [at - store.get_issue(i).first_seen for i, at in fixed_at.items()]
    judged = sum(v.verdict in ("fixed", "no_effect", "regressed") for v in verdicts)
    runs, pairs, flaky = ci.flake_counts(store)
    selections, chosen, total = ci.selection_savings(store)
    share = round(chosen / total, 4) if total else None
    prs, eligible, eligible_merged = policy.auto_merge_counts(store)
    return Metrics(
        production_to_test=_distribution(latency), time_to_restore=_distribution(restore), fixed=len(fixed_at),
        regressed=len(regressed & set(fixed_at)),
        regression_recurrence=round(len(regressed & set(fixed_at)) / len(fixed_at), 4) if fixed_at else None,
        verdicts=judged, no_effect_share=round(no_effect / judged, 4) if judged else None, ci_runs=runs,
        flake_rate=round(flaky / pairs, 4) if pairs else None, selections=selections, selected_time_share=share,
        ci_time_saved=round(1 - share, 4) if share is not None else None, pull_requests=prs,
        auto_merge_eligible=round(eligible / prs, 4) if prs else None,
        auto_merged=round(eligible_merged / eligible, 4) if eligible else None,
    )  # fmt: skip


def _distribution(seconds: list[float]) -> Distribution:
    if not seconds:
        return Distribution(count=0, p50_hours=None, p90_hours=None, under_one_hour=None)
    hours = sorted(max(0.0, s) / 3600 for s in seconds)
    p90 = hours[min(len(hours) - 1, int(0.9 * len(hours)))]
    return Distribution(count=len(hours), p50_hours=round(statistics.median(hours), 3), p90_hours=round(p90, 3),
                        under_one_hour=round(sum(h < 1 for h in hours) / len(hours), 4))  # fmt: skip
