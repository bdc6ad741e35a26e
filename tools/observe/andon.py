"""The andon cord: a deploy that made things worse stops agent work on what it changed, until a person says so.

`check_deploys` looks at every operator deploy of the last `andon.window_hours` against the deploy before it in the
same environment. The deploy's changed files are the paths at stake; the evidence that it made them worse is any of:

- `new_issue`: an issue first seen after the deploy with an in-app frame in a changed file;
- `issue_rate`: an issue on those files whose events since the deploy exceed its pre-deploy rate;
- `crash_free`: the release's crashed sessions exceed the previous release's share.

Each with at least `andon.min_events`, at least `min_ratio` times the expected count, and an exact one-sided test
(Poisson, quasi-Poisson on the baseline's hourly dispersion; binomial for sessions) at `max_p_value` after a
Bonferroni correction over everything tested for the deploy. That bar is lower and faster than a fix's (minutes, a
few events) on purpose: a bad deploy costs more than a false alarm a person dismisses.

Pulling the cord (once per deploy): the changed paths are quarantined (`require_work_allowed` refuses agent work on
them), a revert of the deploy's commits is proposed as a branch/PR labelled revert with the blast radius, and an
escalation is recorded (and filed on GitHub with a token). Only a person releases it: `prodloop andon release ID`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field
from scipy import special

from prodloop.server.clock import Clock
from prodloop.server.errors import BudgetExhausted, LineageHalted, ProdloopError, Quarantined
from prodloop.server.ingest.scrub import secret_findings
from prodloop.server.settings import Settings
from prodloop.server.store import Store, lineage, policy
from prodloop.server.store.records import Deploy
from prodloop.tools.engine._shape import cap, iso, untrusted_md
from prodloop.tools.engine.git_repo import GitRepo
from prodloop.tools.observe.reliability import importers_of

logger = logging.getLogger("prodloop.tools")
HOUR = 3600.0


class Evidence(BaseModel):
    kind: Literal["new_issue", "issue_rate", "crash_free"]
    issue_id: int | None
    title: str | None
    events_after: int
    expected_after: float
    ratio: float
    p_value: float = Field(description="Bonferroni-corrected over what was tested for the deploy")
    detail: str


class CordView(BaseModel):
    id: int
    active: bool
    deploy: str
    environment: str
    commit: str
    pulled_at: str | None
    quarantined_paths: list[str]
    evidence: list[dict[str, Any]]
    blast_radius: dict[str, Any]
    revert: dict[str, Any] | None
    escalation: dict[str, Any] | None
    released_at: str | None = None
    released_by: str | None = None
    release_why: str | None = None


class AndonStatus(BaseModel):
    active: list[CordView]
    released: list[CordView] = Field(description="the last ten released cords")
    quarantined_paths: list[str]


# -- detection -------------------------------------------------------------------------------


def check_deploys(store: Store, repo: GitRepo, settings: Settings, clock: Clock) -> tuple[list[CordView], list[str]]:
    """One pass: pull the cord on each recent deploy that made things worse. Returns the cords pulled now and the
    deploys that could not be checked (their commits unknown here even after a fetch: escalated, never silent)."""
    now = clock.now()
    cfg = settings.andon
    deploys = sorted((d for d in store.deploys() if d.source == "operator"), key=lambda d: (d.deployed_at, d.id))
    corded = lineage.corded_deploys(store)
    pulled, unchecked = [], []
    for i, d in enumerate(deploys):
        if d.id in corded or not now - cfg.window_hours * HOUR <= d.deployed_at < now:
            continue
        previous = next((e for e in reversed(deploys[:i]) if e.environment == d.environment), None)
        if previous is None or previous.commit_sha == d.commit_sha:
            continue
        try:
            for sha in (previous.commit_sha, d.commit_sha):
                if repo.resolve(sha) is None:  # a shallow or stale clone: ask the remote for it
                    repo.fetch(settings.git_remote, sha)
            changed = sorted(repo.changed_between(previous.commit_sha, d.commit_sha))
        except ProdloopError as exc:
            logger.warning("andon: deploy %s not checked: %s", d.id, str(exc)[:200])
            unchecked.append(f"{cap(d.release, 80)} to {cap(d.environment, 40)}")
            policy.escalate(store, None, "andon-unchecked", f"deploy {cap(d.release, 80)} could not be checked by "
                            f"the andon: its commits are not in the repository ({str(exc)[:200]})", now)  # fmt: skip
            continue
        if not changed:
            continue
        evidence = deploy_evidence(store, settings, d, previous, changed, now)
        if evidence:
            cord = _pull(store, repo, settings, clock, d, previous, changed, evidence, now)
            if cord is not None:
                pulled.append(cord)
    return pulled, unchecked


def deploy_evidence(
    store: Store, settings: Settings, deploy: Deploy, previous: Deploy, changed: list[str], now: float
) -> list[Evidence]:
    """What shows the deploy made its changed paths worse (empty: nothing significant yet)."""
    cfg = settings.andon
    start = deploy.deployed_at
    base_start = max(start - cfg.baseline_hours * HOUR, 0.0)
    base_hours = (start - base_start) / HOUR
    elapsed = (now - start) / HOUR
    issues = lineage.issues_on_files(store, changed, seen_since=start)
    ids = sorted(issues)
    env = deploy.environment  # a staging deploy is judged on staging's events
    after = lineage.events_between(store, ids, start, now + 1, environment=env)
    before = lineage.events_between(store, ids, base_start, start, environment=env)
    sessions_after = lineage.release_sessions(store, deploy.release, deploy.environment, int(start // HOUR),
                                              int(now // HOUR))  # fmt: skip
    tests = len(ids) + (1 if sessions_after[0] else 0)
    found = []
    for issue_id in ids:
        k = after[issue_id]
        if k < cfg.min_events or lineage.users_between(store, [issue_id], start, now + 1, environment=env) < (
            cfg.min_users
        ):
            continue  # a few events of one user (or one sender) are not a bad deploy
        title, first_seen = issues[issue_id]
        dispersion = _dispersion(store, issue_id, int(base_start // HOUR), int(start // HOUR) - 1)
        expected = max(before[issue_id], 0.5) / base_hours * elapsed
        p = min(1.0, float(special.gammainc(k / dispersion, expected / dispersion)) * tests)
        ratio = k / expected
        if ratio >= cfg.min_ratio and p <= cfg.max_p_value:
            new = first_seen >= start
            found.append(Evidence(
                kind="new_issue" if new else "issue_rate", issue_id=issue_id, title=cap(title, 200), events_after=k,
                expected_after=round(expected, 3), ratio=round(ratio, 2), p_value=float(f"{p:.3g}"),
                detail=(f"first seen {max(0.0, (first_seen - start) / 60):.0f} min after the deploy" if new else
                        f"{k} events in {elapsed * 60:.0f} min where {before[issue_id]} in the {base_hours:.0f} h "
                        f"before give {expected:.1f}"),
            ))  # fmt: skip
    crash = _crash_free(store, settings, deploy, previous, sessions_after, base_start, tests)
    if crash is not None:
        found.append(crash)
    return found


def _dispersion(store: Store, issue_id: int, first_hour: int, last_hour: int) -> float:
    """Variance over mean of the issue's hourly counts in the baseline (at least 1)."""
    counts = dict(store.hourly_counts(issue_id, first_hour))
    series = np.array([counts.get(h, 0) for h in range(first_hour, last_hour + 1)], dtype=np.float64)
    if len(series) < 3 or series.mean() <= 0:
        return 1.0
    return max(1.0, float(series.var(ddof=1) / series.mean()))


def _crash_free(
    store: Store, settings: Settings, deploy: Deploy, previous: Deploy, after: tuple[int, int, int],
    base_start: float, tests: int,
) -> Evidence | None:  # fmt: skip
    cfg = settings.andon
    started1, _, crashed1 = after
    first, last = int(base_start // HOUR), int(deploy.deployed_at // HOUR)
    started0, _, crashed0 = lineage.release_sessions(store, previous.release, deploy.environment, first, last)
    if not started1 or not started0 or crashed1 < cfg.min_events:
        return None
    share = started1 / (started0 + started1)
    n = crashed0 + crashed1
    p = min(1.0, float(special.betainc(crashed1, n - crashed1 + 1, share)) * max(tests, 1))
    expected = max(crashed0, 0.5) / started0 * started1
    ratio = crashed1 / expected
    if ratio < cfg.min_ratio or p > cfg.max_p_value:
        return None
    return Evidence(
        kind="crash_free", issue_id=None, title=None, events_after=crashed1, expected_after=round(expected, 3),
        ratio=round(ratio, 2), p_value=float(f"{p:.3g}"),
        detail=(f"crash-free sessions {100 * (1 - crashed1 / started1):.2f}% in {cap(deploy.release, 80)} against "
                f"{100 * (1 - crashed0 / started0):.2f}% in {cap(previous.release, 80)}"),
    )  # fmt: skip


# -- pulling the cord ----------------------------------------------------------------------------


def _pull(
    store: Store, repo: GitRepo, settings: Settings, clock: Clock, deploy: Deploy, previous: Deploy,
    changed: list[str], evidence: list[Evidence], now: float,
) -> CordView | None:  # fmt: skip
    radius = _blast_radius(store, repo, deploy, changed, evidence, now)
    cord = lineage.pull_cord(
        store, deploy_id=deploy.id, release=deploy.release, environment=deploy.environment,
        commit_sha=deploy.commit_sha, previous_commit=previous.commit_sha, paths=changed,
        evidence=[e.model_dump() for e in evidence], blast_radius=radius, at=now,
    )  # fmt: skip
    if cord is None:
        return None  # another pass pulled it first
    logger.warning("andon cord %s pulled on deploy %s: %d path(s) quarantined", cord.id, cord.release, len(changed))
    body = _body(cord.id, deploy, previous, evidence, radius)
    if settings.andon.propose_revert:
        try:
            from prodloop.tools.ship.revert import propose_revert

            commits = list(repo.first_parent_since(deploy.commit_sha, previous.commit_sha))
            proposal = propose_revert(
                repo, settings, clock, key=f"{cord.id}-{deploy.release}", commits=commits,
                title=f"Revert deploy {cap(deploy.release, 60)} (prodloop andon cord {cord.id})", body=body,
            )  # fmt: skip
            lineage.set_cord_outcome(store, cord.id, revert=proposal.model_dump())
        except ProdloopError as exc:  # the cord stays pulled; a person reverts by hand
            lineage.set_cord_outcome(store, cord.id, revert={"error": str(exc)[:500]})
    if settings.github_token is not None and secret_findings(body):
        lineage.set_cord_outcome(store, cord.id, escalation={"error": "not filed: the body would carry a secret"})
    elif settings.github_token is not None:
        from prodloop.tools.ship import github

        try:
            url, number = github.create_issue(
                settings, settings.repo, title=f"prodloop andon cord {cord.id}: deploy {cap(deploy.release, 60)}",
                body=body, labels=["prodloop", "andon"],
            )  # fmt: skip
            lineage.set_cord_outcome(store, cord.id, escalation={"url": url, "number": number})
        except ProdloopError as exc:
            lineage.set_cord_outcome(store, cord.id, escalation={"error": str(exc)[:500]})
    return view(lineage.cord(store, cord.id))


def _blast_radius(
    store: Store, repo: GitRepo, deploy: Deploy, changed: list[str], evidence: list[Evidence], now: float
) -> dict[str, Any]:
    ids = [e.issue_id for e in evidence if e.issue_id is not None]
    started, errored, crashed = lineage.release_sessions(store, deploy.release, deploy.environment,
                                                         int(deploy.deployed_at // HOUR), int(now // HOUR))  # fmt: skip
    dependents: set[str] = set()
    for path in [p for p in changed if p.endswith(".py")][:20]:
        try:
            dependents.update(importers_of(repo, deploy.commit_sha, path))
        except ProdloopError:
            continue
    return {
        "issues": ids,
        "events": sum(e.events_after for e in evidence if e.issue_id is not None),
        "users": lineage.users_between(store, ids, deploy.deployed_at, now + 1, environment=deploy.environment),
        "sessions_affected": errored + crashed,
        "sessions_started": started,
        "files": changed[:100],
        "dependents": sorted(dependents)[:100],
    }


def _body(cord_id: int, deploy: Deploy, previous: Deploy, evidence: list[Evidence], radius: dict[str, Any]) -> str:
    lines = [
        f"prodloop pulled andon cord {cord_id}: deploy `{cap(deploy.release, 80)}` to `{cap(deploy.environment, 40)}` "
        f"(commit {deploy.commit_sha[:12]}, after {previous.commit_sha[:12]}) made production worse.",
        "",
        "## Evidence",
    ]
    for e in evidence:
        what = f"issue {e.issue_id}" if e.issue_id is not None else "crash-free sessions"
        lines.append(f"- {e.kind} ({what}): {e.events_after} after the deploy vs {e.expected_after} expected, "
                     f"{e.ratio}x, p={e.p_value}")  # fmt: skip
        if e.title:
            lines.append(untrusted_md(e.title, 200))
    lines += [
        "",
        "## Blast radius",
        f"- issues: {', '.join(str(i) for i in radius['issues']) or 'none'}; events: {radius['events']}; "
        f"users: {radius['users']}; sessions affected: {radius['sessions_affected']} of {radius['sessions_started']}",
        f"- files: {', '.join(f'`{cap(f, 200)}`' for f in radius['files'][:30])}",
        f"- dependents: {', '.join(f'`{cap(m, 200)}`' for m in radius['dependents'][:30]) or 'none found'}",
        "",
        f"Agent work on these files is refused until a person releases the cord: `prodloop andon release {cord_id} "
        f"--by NAME --why TEXT`.",
    ]
    return "\n".join(lines)


# -- what the cord and the stopping conditions refuse --------------------------------------------


def require_work_allowed(
    store: Store, settings: Settings, clock: Clock, issue_id: int, *, action: str, paths: Iterable[str] = ()
) -> None:
    """Refuse agent work on an issue whose lineage is halted or whose reported cost is spent (escalated), or whose
    code (its in-app frames, and `paths` the work changes) an active andon cord quarantined."""
    state = lineage.lineage(store, issue_id)
    if state.halted_at is not None:
        raise LineageHalted(issue_id, action, state.halted_why or "halted")
    limits = settings.budgets
    spent = None
    if state.tokens >= limits.max_agent_tokens:
        spent = f"{state.tokens} of {limits.max_agent_tokens} reported tokens used"
    elif state.cost_usd >= limits.max_cost_usd:
        spent = f"${state.cost_usd:.2f} of ${limits.max_cost_usd:.2f} reported cost used"
    if spent is not None:
        policy.escalate(store, issue_id, "cost", f"cost budget exhausted: {spent}", clock.now())
        raise BudgetExhausted(issue_id, f"cost budget: {spent}")
    require_unquarantined(store, action=action, paths=[*lineage.issue_files(store, issue_id), *paths])


def require_unquarantined(store: Store, *, action: str, paths: Iterable[str]) -> None:
    wanted = {lineage.repo_path(str(p)) for p in paths if p}
    if not wanted:
        return
    for cord in lineage.cords(store, active_only=True):
        hit = sorted(p for p in cord.paths if any(_same(p, w) for w in wanted))
        if hit:
            raise Quarantined(action, hit, cord.id, cord.release)


def _same(path: str, other: str) -> bool:
    path = lineage.repo_path(path)
    return path == other or other.endswith("/" + path) or path.endswith("/" + other)


# -- status and release ------------------------------------------------------------------------------


def andon_status(store: Store) -> AndonStatus:
    every = lineage.cords(store)
    active = [view(c) for c in every if c.active]
    released = [view(c) for c in every if not c.active][-10:]
    paths = sorted({p for c in every if c.active for p in c.paths})
    return AndonStatus(active=active, released=released, quarantined_paths=paths)


def release(store: Store, clock: Clock, cord_id: int, *, who: str, why: str) -> CordView:
    return view(lineage.release_cord(store, cord_id, who=who, why=why, at=clock.now()))


def view(cord: lineage.Cord) -> CordView:
    return CordView(
        id=cord.id, active=cord.active, deploy=cord.release, environment=cord.environment, commit=cord.commit_sha,
        pulled_at=iso(cord.pulled_at), quarantined_paths=cord.paths, evidence=cord.evidence,
        blast_radius=cord.blast_radius, revert=cord.revert, escalation=cord.escalation,
        released_at=iso(cord.released_at), released_by=cord.released_by, release_why=cord.release_why,
    )  # fmt: skip
