"""Post-merge validation: did the deployed fix move the production signal?

A lineage is issue -> receipt -> PR -> merge commit -> the first deploy containing it. `follow_lineages` finds the
merges (GitHub's own record when a token is set; else git: the PR's commit on the default branch, or a squash or
rebase of it by its `Prodloop-Receipt` line or its patch id) and the deploys whose commit has the merge commit as an
ancestor, then judges each deployed fix (`judge`):

- the issue's events per unit of exposure (sessions started, else transactions, else hours) before the deploy are fit
  with a Poisson log-linear trend (quasi-Poisson dispersion); a decline that began before the deploy is projected
  forward, so the trend alone is never taken for the fix working;
- the events after the deploy are compared with that projection over the same exposure, with exact Poisson bounds on
  their ratio: `fixed` when the upper bound is under `post_merge.fixed_share`; `no_effect` when the lower bound is at
  least `no_effect_share` (or `max_watch_hours` passed without `fixed`); else `watching`, saying how much more traffic
  a verdict needs at the current rate. Low volume keeps it `watching`: never an early success.
- `regressed`: a fixed issue seen again in a later release (the store reopens it).

`fixed` resolves the issue in the deploy's release and writes the verdict into the provenance record; `no_effect`
reopens it for another iteration, and `budgets.max_no_effect_iterations` in a row halt the lineage and escalate.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field
from scipy import special

from prodloop.server.clock import Clock
from prodloop.server.errors import CodePathError, ProdloopError
from prodloop.server.settings import PostMergeSettings, Settings
from prodloop.server.store import Store, lineage, policy
from prodloop.server.store.records import Deploy, IssueRow
from prodloop.tools.engine._shape import iso
from prodloop.tools.engine.git_repo import GitRepo

logger = logging.getLogger("prodloop.tools")
HOUR = 3600.0
Verdict = Literal["watching", "fixed", "no_effect", "regressed"]
Metric = Literal["per_session", "per_transaction", "per_hour"]
FINAL: frozenset[str] = frozenset({"fixed", "no_effect", "regressed"})


class Judgement(BaseModel):
    verdict: Verdict
    metric: Metric
    deploy: str = Field(description="the release of the first deploy containing the fix")
    deployed_at: str | None
    hours_watched: float
    events_before: int = Field(description="events in the pre-deploy window the trend was fit on")
    exposure_before: float
    events_after: int
    exposure_after: float
    expected_after: float = Field(description="events the pre-deploy trend projects over the exposure after")
    ratio: float | None = Field(description="events after / expected; 1: unchanged, 0: gone")
    ratio_low: float | None
    ratio_high: float | None
    p_value: float = Field(description="chance of this few events after, had the trend gone on")
    trend_per_day: float = Field(description="the pre-deploy trend, x per day (0.5: halving daily); 1: flat")
    trend_significant: bool
    dispersion: float
    reason: str
    needed: str | None = Field(default=None, description="watching: what a verdict needs at the current rate")
    inconclusive: bool = Field(default=False, description="watched past max_watch_hours with too little traffic")


# -- the statistics --------------------------------------------------------------------------


def judge(
    before: np.ndarray[Any, Any],
    exposure_before: np.ndarray[Any, Any],
    events_after: int,
    exposure_after: np.ndarray[Any, Any],
    hours_after: float,
    cfg: PostMergeSettings,
    *,
    metric: Metric = "per_hour",
    deploy: str = "",
    deployed_at: float | None = None,
) -> Judgement:
    """The verdict from the hourly counts and exposures before the deploy (oldest first, the last hour just before
    it) and the events and hourly exposures after it (the first hour the deploy's)."""
    level, slope, significant, dispersion = _trend(before, exposure_before)
    t_after = np.arange(len(exposure_after), dtype=np.float64) + 0.5
    # A decline is projected for a day at most (then held): projected for days it would expect nothing at all.
    projected = level * exposure_after * np.exp(slope * np.minimum(t_after, min(len(before), 24)))
    # The level of the last hours before the deploy too: a step down just before it (which a slope fit over three
    # days misses) is not the fix either. The last 6, 12 and 24 hours each count when they hold enough events to
    # tell a level (10); the lowest of these and the trend's projection is what the fix is judged against.
    expected = float(projected.sum())
    for hours in (6, 12, 24):
        recent_events, recent_exposure = float(before[-hours:].sum()), float(exposure_before[-hours:].sum())
        if recent_events >= 10 and recent_exposure > 0:
            expected = min(expected, recent_events / recent_exposure * float(exposure_after.sum()))
    alpha = 1 - cfg.confidence
    k, m = events_after / dispersion, expected / dispersion
    low = high = ratio = None
    p_value = 1.0
    if m > 0:
        ratio = events_after / expected
        high = float(special.gammainccinv(k + 1, alpha)) / m
        low = float(special.gammaincinv(k, alpha)) / m if k > 0 else 0.0
        p_value = float(special.gammaincc(k + 1, m))
    trend = math.exp(slope * 24)
    numbers: dict[str, Any] = dict(
        metric=metric, deploy=deploy, deployed_at=iso(deployed_at), hours_watched=round(hours_after, 2),
        events_before=int(before.sum()), exposure_before=round(float(exposure_before.sum()), 2),
        events_after=events_after, exposure_after=round(float(exposure_after.sum()), 2),
        expected_after=round(expected, 3), ratio=_r(ratio), ratio_low=_r(low), ratio_high=_r(high),
        p_value=float(f"{p_value:.4g}"), trend_per_day=round(trend, 4), trend_significant=significant,
        dispersion=round(dispersion, 3),
    )  # fmt: skip
    declining = (
        " (the pre-deploy decline is projected: it does not count as the fix working)"
        if significant and (slope < 0)
        else ""
    )
    if high is not None and high <= cfg.fixed_share:
        reason = (f"{events_after} events after the deploy where the pre-deploy trend projects {expected:.1f}: the "
                  f"rate is under {high:.2f}x the trend with {cfg.confidence:.0%} confidence{declining}")  # fmt: skip
        return Judgement(verdict="fixed", reason=reason, **numbers)
    if low is not None and low >= cfg.no_effect_share:
        reason = (f"{events_after} events after the deploy where the trend projects {expected:.1f}: the rate is at "
                  f"least {low:.2f}x the trend with {cfg.confidence:.0%} confidence{declining}")  # fmt: skip
        return Judgement(verdict="no_effect", reason=reason, **numbers)
    # Past the watch, no_effect only where the volume could have shown a fix (no event at all would have been
    # `fixed`); with less, it stays watching and a person is asked (never a no-effect iteration from silence).
    could_show = m > 0 and float(special.gammainccinv(1, alpha)) / m <= cfg.fixed_share
    if hours_after >= cfg.max_watch_hours and could_show:
        reason = (f"after {hours_after:.0f} h the rate ({ratio:.2f}x the trend) is not shown under "
                  f"{cfg.fixed_share:.2f}x: the fix did not bring the issue back to baseline")  # fmt: skip
        return Judgement(verdict="no_effect", reason=reason, **numbers)
    if hours_after >= cfg.max_watch_hours:
        reason = (f"after {hours_after:.0f} h only {expected:.1f} events were to be expected: too little traffic to "
                  "tell whether the fix worked; a person should judge it")  # fmt: skip
        return Judgement(verdict="watching", reason=reason, inconclusive=True, **numbers)
    needed = _needed(events_after, expected, dispersion, hours_after, cfg, metric)
    reason = (f"{events_after} events after the deploy against {expected:.1f} projected: not enough to tell yet"
              f"{declining}")  # fmt: skip
    return Judgement(verdict="watching", reason=reason, needed=needed, **numbers)


def _trend(y: np.ndarray[Any, Any], x: np.ndarray[Any, Any]) -> tuple[float, float, bool, float]:
    """Fit log(mean_h) = log(exposure_h) + a + b t_h by Poisson maximum likelihood (Newton): the level per unit of
    exposure at the deploy, the slope per hour used for the projection (a decline kept when significant; a rise
    not projected: the level at the deploy is held), whether the slope is significant, and the dispersion."""
    keep = x > 0
    y, x = y[keep].astype(np.float64), x[keep].astype(np.float64)
    t = (np.flatnonzero(keep) - len(keep) + 0.5).astype(np.float64)  # hours before the deploy: negative
    total, exposure = float(y.sum()), float(x.sum())
    if exposure <= 0:
        return 0.0, 0.0, False, 1.0
    flat = max(total, 0.5) / exposure  # no events before is "under one", not a rate of zero
    if len(y) < 6 or total < 5:
        return flat, 0.0, False, 1.0
    a, b = math.log(total / exposure), 0.0
    for _ in range(30):
        mu = x * np.exp(a + b * t)
        grad = np.array([(y - mu).sum(), ((y - mu) * t).sum()])
        hess = np.array([[mu.sum(), (mu * t).sum()], [(mu * t).sum(), (mu * t * t).sum()]])
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            return flat, 0.0, False, 1.0
        a, b = a + float(step[0]), float(np.clip(b + float(step[1]), -0.5, 0.5))
        if abs(step[0]) < 1e-8 and abs(step[1]) < 1e-10:
            break
    mu = x * np.exp(a + b * t)
    dispersion = max(1.0, float(((y - mu) ** 2 / np.maximum(mu, 1e-9)).sum()) / max(len(y) - 2, 1))
    try:
        se = math.sqrt(float(np.linalg.inv(hess)[1, 1]) * dispersion)
    except (np.linalg.LinAlgError, ValueError):
        return flat, 0.0, False, dispersion
    significant = se > 0 and abs(b) / se >= 2.58
    if significant and b < 0:
        return math.exp(a), b, True, dispersion  # the decline goes on in the projection
    if significant and b > 0:
        return math.exp(a), 0.0, True, dispersion  # risen: the level at the deploy, held
    return flat, 0.0, False, dispersion


def _needed(
    events: int, expected: float, dispersion: float, hours: float, cfg: PostMergeSettings, metric: Metric
) -> str:
    """How much more projected volume a verdict needs if the post-deploy ratio stays as it is."""
    alpha = 1 - cfg.confidence
    ratio = events / expected if expected > 0 else 0.0
    goal = "fixed" if ratio < (cfg.fixed_share + cfg.no_effect_share) / 2 else "no_effect"

    def decided(total: float) -> bool:
        k, m = ratio * total / dispersion, total / dispersion
        if goal == "fixed":
            return float(special.gammainccinv(k + 1, alpha)) / m <= cfg.fixed_share
        return k > 0 and float(special.gammaincinv(k, alpha)) / m >= cfg.no_effect_share

    lo, hi = max(expected, 1e-6), max(expected, 1.0) * 2
    while not decided(hi) and hi < 1e9:
        lo, hi = hi, hi * 2
    if hi >= 1e9:
        return (
            f"the rate is between {cfg.fixed_share}x and {cfg.no_effect_share}x the trend: after "
            f"{cfg.max_watch_hours:.0f} h without 'fixed' the verdict is no_effect"
        )
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if decided(mid) else (mid, hi)
    more = max(hi - expected, 0.0)
    unit = {"per_session": "sessions' worth", "per_transaction": "transactions' worth", "per_hour": "hours' worth"}
    if expected <= 0 or hours <= 0:
        return f"about {more:.0f} more expected events ({unit[metric]} of traffic) for a '{goal}' verdict"
    more_hours = more / (expected / hours)
    return (f"about {more:.0f} more expected events for a '{goal}' verdict: ~{more_hours:.1f} more hours at the "
            f"current traffic")  # fmt: skip


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


# -- a lineage's data ----------------------------------------------------------------------


def judge_issue(store: Store, settings: Settings, issue: IssueRow, deploy: Deploy, now: float) -> Judgement:
    """Read the issue's counts around `deploy` and judge them: per session (or transaction) where the operator's
    releases report them, and `fixed` only when the events per hour agree (sessions are what any sender with the
    DSN may claim; a flood of them must not make a fix)."""
    cfg = settings.post_merge
    deploy_hour, now_hour = int(deploy.deployed_at // HOUR), int(now // HOUR)
    first = max(deploy_hour - cfg.baseline_hours, int(issue.first_seen // HOUR))
    hours_before = np.arange(first, deploy_hour)
    counts = dict(store.hourly_counts(issue.id, first))
    before = np.array([counts.get(int(h), 0) for h in hours_before], dtype=np.float64)
    after_hours = np.arange(deploy_hour, now_hour + 1)
    # Events after: the deploy's own hour from the raw events (from the deploy on), the hours after from the hourly
    # counts (the same source as the baseline, and kept when raw events are pruned).
    events_after = lineage.events_between(store, [issue.id], deploy.deployed_at, (deploy_hour + 1) * HOUR)[issue.id]
    events_after += sum(n for h, n in counts.items() if h > deploy_hour)
    starts = np.maximum(after_hours * HOUR, deploy.deployed_at)
    overlap = np.clip(np.minimum((after_hours + 1) * HOUR, now) - starts, 0, None) / HOUR
    hours = (now - deploy.deployed_at) / HOUR
    per_hour = judge(before, np.ones(len(hours_before)), events_after, overlap, hours, cfg, deploy=deploy.release,
                     deployed_at=deploy.deployed_at)  # fmt: skip
    env = cfg.environment
    releases = sorted({d.release for d in store.deploys(environment=env) if d.source == "operator"})
    for kind, name in (("sessions", "per_session"), ("transactions", "per_transaction")):
        exposure = lineage.exposure_per_hour(store, kind, first, now_hour, env, releases=releases)
        b = np.array([exposure.get(int(h), 0) for h in hours_before], dtype=np.float64)
        a = np.array([exposure.get(int(h), 0) for h in after_hours], dtype=np.float64)
        # Counted only where every hour with events had some (else the events fell outside what they cover).
        if b.sum() > 0 and a.sum() > 0 and not ((b == 0) & (before > 0)).any():
            a[0] *= min(1.0, float(overlap[0]))
            found = judge(before, b, events_after, a, hours, cfg, metric=name,  # type: ignore[arg-type]
                          deploy=deploy.release, deployed_at=deploy.deployed_at)  # fmt: skip
            if found.verdict == "fixed" and per_hour.verdict != "fixed":
                why = f"{found.reason}; but not yet per hour ({per_hour.reason})"
                return found.model_copy(update={"verdict": "watching", "reason": why, "needed": per_hour.needed})
            return found
    return per_hour


# -- following lineages ------------------------------------------------------------------------


class LineageStep(BaseModel):
    pull_request: str = Field(description="URL, else the branch")
    issue_id: int
    stage: Literal["pr_open", "merged", "deployed"]
    merged_how: str | None = None
    merge_commit: str | None = None
    deploy: str | None = None
    verdict: Verdict | None = None
    judgement: Judgement | None = None


def follow_lineages(
    store: Store, repo: GitRepo, settings: Settings, clock: Clock, *, issue_id: int | None = None
) -> list[LineageStep]:
    """One pass over every PR prodloop opened (or one issue's): detect merges and deploys, judge the newest deployed PR
    of each issue whose verdict is not final, and act on a new verdict. Returns each PR's step."""
    now = clock.now()
    prs = [pr for pr in policy.pull_requests(store, issue_id=issue_id) if pr.mode in ("github", "local")]
    known = lineage.merges(store)
    _detect_merges(store, repo, settings, [pr for pr in prs if pr.id not in known], now)
    known = lineage.merges(store)
    _link_deploys(store, repo, settings, known)
    known = lineage.merges(store)
    deploys = {d.id: d for d in store.deploys()}
    newest: dict[int, int] = {}
    for pr in prs:
        if pr.id in known and known[pr.id].deploy_id is not None:
            newest[pr.issue_id] = pr.id
    steps = []
    for pr in prs:
        merge = known.get(pr.id)
        step = LineageStep(pull_request=pr.url or pr.branch, issue_id=pr.issue_id, stage="pr_open")
        if merge is not None:
            step.stage, step.merged_how, step.merge_commit = "merged", merge.how, merge.merge_commit
        deploy = deploys.get(merge.deploy_id) if merge is not None and merge.deploy_id is not None else None
        if deploy is not None:
            step.stage, step.deploy = "deployed", deploy.release
            last = lineage.latest_verdict(store, pr.id)
            if newest.get(pr.issue_id) == pr.id:
                step.verdict, step.judgement = _verdict_for(store, settings, pr.id, pr.issue_id, deploy, last, now)
            elif last is not None:
                step.verdict = last.verdict  # type: ignore[assignment]
        steps.append(step)
    return steps


def _verdict_for(
    store: Store, settings: Settings, pr_id: int, issue_id: int, deploy: Deploy, last: lineage.VerdictRow | None,
    now: float,
) -> tuple[Verdict, Judgement | None]:  # fmt: skip
    issue = store.get_issue(issue_id)
    if last is not None and last.verdict == "fixed" and issue.regressed_at is not None and issue.regressed_at > last.at:
        numbers = {"regressed_at": iso(issue.regressed_at), "regressions": issue.regressions, "deploy": deploy.release}
        lineage.save_verdict(store, issue_id, pr_id, "regressed", numbers, now,
                             max_no_effect=settings.budgets.max_no_effect_iterations)  # fmt: skip
        return "regressed", None
    if last is not None and last.verdict in FINAL:
        return last.verdict, None  # type: ignore[return-value]
    judgement = judge_issue(store, settings, issue, deploy, now)
    if judgement.inconclusive:
        policy.escalate(store, issue_id, "inconclusive", judgement.reason, now)
    if judgement.verdict != "watching" or last is None:
        changed, _ = lineage.save_verdict(store, issue_id, pr_id, judgement.verdict, judgement.model_dump(), now,
                                          max_no_effect=settings.budgets.max_no_effect_iterations)  # fmt: skip
        if changed and judgement.verdict == "fixed":
            store.set_status(issue_id, "resolved", in_release=deploy.release)
        elif changed and judgement.verdict == "no_effect" and issue.status == "resolved":
            store.set_status(issue_id, "unresolved")
    return judgement.verdict, judgement


def _detect_merges(store: Store, repo: GitRepo, settings: Settings, open_prs: list[policy.PullRequestRow],
                   now: float) -> None:  # fmt: skip
    if not open_prs:
        return
    remote = settings.git_remote
    base = settings.base_branch or repo.default_branch(remote)
    repo.fetch(remote, base)
    tip = repo.resolve(f"refs/remotes/{remote}/{base}") or repo.resolve(base)
    for pr in open_prs:
        found: tuple[str, str, float] | None = None
        closed_unmerged = False
        if pr.mode == "github" and pr.number is not None and settings.github_token is not None:
            found, closed_unmerged = _github_merge(settings, pr.number)
        if found is None and not closed_unmerged and tip is not None and pr.commit_sha:
            try:
                landed = repo.landed_on(pr.commit_sha, tip, since=pr.created_at,
                                        marker=f"Prodloop-Receipt: {pr.receipt_id}")  # fmt: skip
            except CodePathError as exc:
                logger.warning("merge of PR %s not checked: %s", pr.id, str(exc)[:200])
                landed = None
            if landed is not None:
                found = (landed[0], landed[1], repo.commit_info(landed[0]).authored_at)
        if found is not None:
            lineage.record_merge(store, pr.id, merge_commit=found[0], merged_at=found[2], how=found[1])


def _github_merge(settings: Settings, number: int) -> tuple[tuple[str, str, float] | None, bool]:
    """GitHub's record: (merge commit, how, when) once merged, and whether it was closed without a merge (then no
    commit on the default branch counts as its merge)."""
    from prodloop.tools.ship import github

    try:
        state = github.pull_request_state(settings, settings.repo, number)
    except ProdloopError as exc:
        logger.warning("GitHub state of PR #%s not read: %s", number, str(exc)[:200])
        return None, False
    if state.merged and state.merge_commit_sha:
        return (state.merge_commit_sha, "github", state.merged_at or 0.0), False
    return None, state.state == "closed"


def _link_deploys(store: Store, repo: GitRepo, settings: Settings, known: dict[int, lineage.Merge]) -> None:
    waiting = [m for m in known.values() if m.deploy_id is None]
    if not waiting:
        return
    env = settings.post_merge.environment
    # Only the operator's deploys (CLI, CI) are evidence: an agent may record one, and must not earn its own verdict.
    # One recorded before sources were kept ("unknown") that already carried the merge means the fix shipped then:
    # a later deploy is not its deploy (its baseline would already be the fixed rate).
    deploys = sorted((d for d in store.deploys(environment=env) if d.source in ("operator", "unknown")),
                     key=lambda d: (d.deployed_at, d.id))  # fmt: skip
    for merge in waiting:
        if repo.resolve(merge.merge_commit) is None:
            continue
        for d in deploys:
            if d.deployed_at < merge.merged_at - 86_400 or repo.resolve(d.commit_sha) is None:
                continue
            try:
                contains = repo.is_ancestor(merge.merge_commit, d.commit_sha)
            except Exception:  # an unreadable commit: not this deploy
                contains = False
            if contains:
                if d.source == "operator":
                    lineage.record_deployed(store, merge.pull_request_id, deploy_id=d.id)
                break
