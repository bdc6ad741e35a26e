"""Signal-driven triage: which production patterns deserve an agent's work, with the evidence.

For each issue seen in the baseline window it finds the onset (`onset_of`: an exact one-sided test of the events
after vs before each candidate hour against the same hours of the day before, on counts divided by their
dispersion between hours and between days, Bonferroni-corrected, then segmented toward the present; never
significant below `triage.min_events`), measures duration, breadth (users, tenants, environments, releases,
runtimes, operating systems), depth (the failing fraction of the releases' sessions, else events per user) and
trend, ranks candidate causes for a significant rise (an operator's deploy, a dependency change between releases
the operator vouches for, one tenant's configuration, an external service) with their evidence, and classifies:
`actionable` only with significance, breadth, duration, a culprit in this repository and a path-touching deploy or
an in-stack dependency change to blame; otherwise an `observation` that lists what is missing. Priority =
breadth^w x depth^w x duration^w x trend^w (0..100), its history kept. `require_clearance` is the gate every agent
action on an issue passes: `triage.mode` and a person's decision.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections import Counter
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field
from scipy import special

from prodloop.server.clock import Clock
from prodloop.server.errors import CodePathError, NotFoundError, ProdloopError, TriageRefused
from prodloop.server.ingest.grouping import exceptions, frames_of
from prodloop.server.settings import Settings, TriageSettings
from prodloop.server.store import Store, health, lineage, policy, signals
from prodloop.server.store.records import Deploy, IssueRow
from prodloop.tools.engine._shape import UNTRUSTED_NOTICE, cap, iso
from prodloop.tools.engine.git_repo import GitRepo
from prodloop.tools.locate.code_path import map_code_path
from prodloop.tools.observe.andon import require_work_allowed
from prodloop.tools.observe.reliability import file_tier
from prodloop.tools.ship import github

logger = logging.getLogger("prodloop.tools")
HOUR = 3600.0
NETWORK_ERRORS = frozenset({
    "ConnectionError", "ConnectionRefusedError", "ConnectionResetError", "ConnectionAbortedError", "TimeoutError",
    "timeout", "ReadTimeout", "ConnectTimeout", "ReadTimeoutError", "ConnectTimeoutError", "NewConnectionError",
    "MaxRetryError", "ProtocolError", "RemoteDisconnected", "ServiceUnavailable", "gaierror", "SSLError",
    "ConnectError", "RemoteProtocolError", "PoolTimeout",
})  # fmt: skip
Classification = Literal["actionable", "observation"]
Cause = Literal["deploy", "dependency", "user_configuration", "external_service"]
# (timestamp, release, environment, user hash, payload) of an issue's events since onset, newest first
Sample = list[tuple[float, str | None, str | None, str | None, str]]


class Onset(BaseModel):
    at: str | None = Field(description="the hour the rate rose from, UTC")
    events_after: int
    events_before: int
    rate_after_per_hour: float
    rate_before_per_hour: float
    dispersion: float = Field(
        description="variance/mean around the daily profile before onset; counts were divided by it"
    )
    p_value: float = Field(description="one-sided exact test, corrected for every hour tried")
    significant: bool


class Breadth(BaseModel):
    users: int
    tenants: list[str]
    environments: list[str]
    releases: list[str]
    runtimes: list[str]
    operating_systems: list[str]


class Attribution(BaseModel):
    cause: Cause
    confidence: float
    evidence: list[str]


class Signal(BaseModel):
    issue_id: int
    title: str
    classification: Classification
    decision: str = Field(description="pending, approved or rejected (by a person)")
    tier: int = Field(description="2: escalated to a person at creation; no autonomous fix")
    priority: float = Field(description="0..100: breadth x depth x duration x trend, weighted")
    priority_components: dict[str, float]
    confidence: float = Field(description="how sure the classification is, from its components")
    confidence_components: dict[str, float]
    onset: Onset
    duration_hours: float
    breadth: Breadth
    depth: str
    attribution: list[Attribution]
    missing: list[str] = Field(description="what an observation lacks to be actionable")
    culprit: str | None
    user_reports: list[str] = Field(description="open GitHub issues that describe it: #number title url")
    notes: list[str]


class TriageReport(BaseModel):
    production_data_notice: str = Field(default=UNTRUSTED_NOTICE)
    mode: str
    signals: list[Signal]
    actionable: int
    observations: int


def triage_signals(
    store: Store, repo: GitRepo, settings: Settings, clock: Clock, *, issue_id: int | None = None, limit: int = 20
) -> TriageReport:
    """Triage every issue seen in the baseline window (or one), record each signal, return them by priority."""
    cfg = settings.triage
    now = clock.now()
    # Hours older than retention.hourly_days are folded into their day's first hour: the series stops there.
    baseline_days = min(cfg.baseline_days, settings.retention.hourly_days)
    first_hour = int(now // HOUR) - baseline_days * 24 + 1
    if issue_id is not None:
        store.get_issue(issue_id)  # a clear error for an unknown id
        ids = [issue_id]
    else:
        ids = signals.active_issues(store, since=first_hour * HOUR)
    series = signals.hourly_series(store, ids, first_hour=first_hour)
    reports: list[tuple[int, str, str, str]] = []
    notes: list[str] = []
    if settings.github_token is not None and ids:
        try:  # user reports corroborate a signal; without them triage still stands
            reports = github.open_issues(settings, repo.path)
        except ProdloopError as exc:
            notes.append(f"open GitHub issues not read: {str(exc)[:200]}")
    out = []
    for issue in (store.get_issue(i) for i in ids):
        try:
            out.append(_triage_one(store, repo, settings, issue, series[issue.id], first_hour, now, reports))
        except ProdloopError as exc:  # one issue that cannot be judged stops no other; work on it stays refused
            logger.error("triage of issue %d failed: %s", issue.id, str(exc)[:300])
            continue
        out[-1].notes += notes
    out.sort(key=lambda s: (-s.priority, s.issue_id))
    return TriageReport(
        mode=cfg.mode, signals=out[:limit], actionable=sum(s.classification == "actionable" for s in out),
        observations=sum(s.classification == "observation" for s in out),
    )  # fmt: skip


def onset_of(
    counts: dict[int, int], first_hour: int, last_hour: int, *, min_events: int, max_p_value: float
) -> tuple[int | None, Onset]:
    """The hour the current rise began: the most significant rise over the window (`_rise`), then, while the stretch
    after it holds another significant rise, that one (binary segmentation toward the present: a few old events
    and then a spike have the spike's onset)."""
    hours = last_hour - first_hour + 1
    series = np.zeros(max(hours, 0), dtype=np.float64)
    for hour, n in counts.items():
        if first_hour <= hour <= last_hour:
            series[hour - first_hour] += n
    total = int(series.sum())
    if 0 < total < min_events:  # too few events to ever be significant: no test; "since onset" is since the first
        start = first_hour + int(np.flatnonzero(series)[0])
        return start, Onset(at=iso(start * HOUR), events_after=total, events_before=0,
                            rate_after_per_hour=round(total / (last_hour - start + 1), 3), rate_before_per_hour=0.0,
                            dispersion=1.0, p_value=1.0, significant=False)  # fmt: skip
    found = _rise(series, first_hour, min_events=min_events, max_p_value=max_p_value)
    if found is None:
        return None, Onset(at=None, events_after=0, events_before=total, rate_after_per_hour=0.0,
                           rate_before_per_hour=0.0, dispersion=1.0, p_value=1.0, significant=False)  # fmt: skip
    start, onset = found
    while onset.significant:
        deeper = _rise(series[start - first_hour :], start, min_events=min_events, max_p_value=max_p_value)
        if deeper is None or not deeper[1].significant:
            break
        start, onset = (
            deeper[0],
            deeper[1].model_copy(update={"events_before": int(series[: deeper[0] - first_hour].sum())}),
        )
    return start, onset


@functools.lru_cache(maxsize=64)
def _layout(offset: int, hours: int) -> tuple[Any, Any, Any, Any, Any]:
    """What every series of `hours` hours starting at hour-of-day `offset` shares: the candidate splits, each
    hour's hour of the day, the 24 x hours mask of them, and how many hours of each kind lie before / after each
    split. The same for every issue of a pass."""
    # Three days before a split in a window of a week or more (a weekend alone is no baseline), else a day.
    splits = np.arange(72 if hours >= 168 else 24 if hours >= 48 else max(1, hours // 2), hours)
    hod = (np.arange(hours) + offset) % 24
    mask = (hod[None, :] == np.arange(24)[:, None]).astype(np.float64)
    seen = np.cumsum(mask, axis=1)[:, splits - 1]
    after_hours = mask.sum(axis=1)[:, None] - seen
    for array in (splits, hod, mask, seen, after_hours):
        array.setflags(write=False)
    return splits, hod, mask, seen, after_hours


def _rise(series: Any, first_hour: int, *, min_events: int, max_p_value: float) -> tuple[int, Onset] | None:
    """The hour after which the rate rose most significantly. For each candidate hour with enough before it, the
    events expected after it come from the same hours of the day before it (a daily profile, shrunk towards the
    mean rate: a busy mid-day is not a rise). The test: the events after vs before, binomial (an event falls after
    the hour with probability expected-after / (expected-after + before), "before" at least half an event), exact
    (regularized incomplete beta) on counts divided by their dispersion around the profile (before the hour, and
    over the stretch but its last day; at least 1: bursts and extra variance are not a rise; quasi-Poisson),
    Bonferroni-corrected for the hours tried (hours with events: a rise starts in one)."""
    hours = len(series)
    total = float(series.sum())
    if hours < 2 or total == 0:
        return None
    splits, hod, mask, seen, after_hours = _layout(first_hour % 24, hours)
    # A rise starts in an hour with events: only those hours are candidates (fewer tests, and far fewer for a
    # sparse issue).
    candidate = series[splits] > 0
    if not candidate.any():
        return None
    splits, seen, after_hours = splits[candidate], seen[:, candidate], after_hours[:, candidate]
    # Per hour of the day k: running sums (up to and including each index) of counts and squares, at each split.
    weighted = mask * series
    sums = np.cumsum(weighted, axis=1)[:, splits - 1]
    squares = np.cumsum(weighted * series, axis=1)[:, splits - 1]
    before = sums.sum(axis=0)
    after = total - before
    prior = np.maximum(before, 0.5)  # nothing before is "under one event", not a rate of zero
    mean = prior / splits
    shrink = 3.0  # pseudo-hours of the mean rate in each hour's profile
    profile = (sums + shrink * mean) / (seen + shrink)
    expected_after = (profile * after_hours).sum(axis=0)
    residual = (squares - 2 * profile * sums + profile**2 * seen).sum(axis=0) / np.maximum(splits - 1, 1)
    dispersion = np.maximum(1.0, np.divide(residual, mean, out=np.ones_like(mean), where=mean > 0))
    # A short stretch before a split may hold none of the bursts the rest shows: the dispersion of the stretch but
    # its last day (where a rise would be) around its own daily profile is a floor.
    base = series[: hours - 24] if hours > 48 else series
    base_mask = mask[:, : len(base)]
    if base.sum() > 0:
        level = (base_mask * base).sum(axis=1) / np.maximum(base_mask.sum(axis=1), 1)
        spread = float(((base - level[hod[: len(base)]]) ** 2).sum() / max(len(base) - 1, 1))
        dispersion = np.maximum(dispersion, max(1.0, spread / (base.sum() / len(base))))
    # Variation shared by whole days (a weekly cycle, a busy day, slow growth) does not show between hours: the
    # dispersion of the daily totals before each split (three days or more) is a floor too.
    days = series[: hours // 24 * 24].reshape(-1, 24).sum(axis=1)
    if len(days) >= 3:
        m = splits // 24  # whole days before each split
        day_sums, day_squares = np.cumsum(days), np.cumsum(days**2)
        usable = m >= 3
        index = np.clip(m - 1, 0, len(days) - 1)
        day_mean = np.where(usable, day_sums[index] / np.maximum(m, 1), 0.0)
        day_var = np.where(usable, (day_squares[index] - m * day_mean**2) / np.maximum(m - 1, 1), 0.0)
        by_day = np.divide(day_var, day_mean, out=np.ones_like(day_mean), where=day_mean > 0)
        dispersion = np.maximum(dispersion, by_day)
        # ... and of the window's daily totals but its last day, estimated robustly (median absolute deviation):
        # a few days of a rise do not inflate it, a few quiet days before a split do not hide day-to-day swings.
        whole_days = days[:-1] if len(days) > 3 else days
        centre = float(np.median(whole_days))
        if centre > 0:
            robust = (1.4826 * float(np.median(np.abs(whole_days - centre)))) ** 2 / centre
            dispersion = np.maximum(dispersion, robust)
    share_after = expected_after / (expected_after + prior)
    k = after / dispersion
    n = total / dispersion
    # log P(X >= k) for X ~ Binomial(n, share) = log I_share(k, n - k + 1), for counts no longer whole (floored at
    # 1e-300: anything that small is significant whatever the correction)
    tail = special.betainc(np.maximum(k, 1e-9), n - k + 1, share_after)
    log_p = np.where(k > 0, np.log(np.maximum(tail, 1e-300)), 0.0)
    # Splits whose p-values all underflow tie: the one whose events after most exceed what was expected wins.
    ties = np.flatnonzero(log_p <= log_p.min() + 1e-9)
    ratio = after[ties] / np.maximum(expected_after[ties], 1e-12)
    best = int(ties[int(np.argmax(ratio))])
    corrected = float(min(1.0, np.exp(log_p[best] + np.log(len(splits)))))
    split = int(splits[best])
    n_after, n_before = round(float(after[best])), round(float(before[best]))
    onset = Onset(
        at=iso((first_hour + split) * HOUR), events_after=n_after, events_before=n_before,
        rate_after_per_hour=round(n_after / (hours - split), 3), rate_before_per_hour=round(n_before / split, 3),
        dispersion=round(float(dispersion[best]), 3), p_value=float(f"{corrected:.4g}"),
        significant=corrected <= max_p_value and n_after >= min_events,
    )  # fmt: skip
    return first_hour + split, onset


def _triage_one(
    store: Store, repo: GitRepo, settings: Settings, issue: IssueRow, counts: dict[int, int], first_hour: int,
    now: float, reports: list[tuple[int, str, str, str]],
) -> Signal:  # fmt: skip
    cfg = settings.triage
    onset_hour, onset = onset_of(
        counts, first_hour, int(now // HOUR), min_events=cfg.min_events, max_p_value=cfg.max_p_value
    )
    existing = signals.get(store, issue.id)
    onset_at = onset_hour * HOUR if onset_hour is not None else issue.first_seen
    # Counts for every issue; the events themselves (tags, contexts, frames) only for a significant rise, the only
    # kind with a cause to find and a code path to map (missing says why the others are not actionable).
    users, releases, environments = signals.breadth_counts(store, issue.id, since=onset_at)
    events: Sample = signals.recent_payloads(store, issue.id, since=onset_at, limit=200) if onset.significant else []
    payloads = [_load(p) for *_, p in events]
    breadth = _breadth(users, releases, environments, payloads, cfg.tenant_tag)
    duration = max(0.0, (min(now, issue.last_seen) - onset_at) / HOUR)
    depth_value, depth = _depth(store, onset_hour, breadth, onset.events_after)
    notes: list[str] = []
    culprit: str | None = None
    attribution: list[Attribution] = []
    user_reports: list[str] = []
    if onset.significant:
        culprit, path_files = _culprit(store, repo, settings, issue, notes)
        attribution = _attribute(store, repo, settings, issue, onset_at, breadth, payloads, path_files, events)
        user_reports = _matching_reports(reports, issue, payloads, culprit)
    before, after = onset.rate_before_per_hour, onset.rate_after_per_hour
    ratio = after / before if before else (10.0 if after else 1.0)
    components = {
        "breadth": round(max(0.05, 1 - math.exp(-breadth.users / 10)), 4),
        "depth": round(max(0.05, depth_value), 4),
        "duration": round(max(0.05, 1 - math.exp(-duration / 24)), 4),
        "trend": round(max(0.05, ratio / (1 + ratio)), 4),
    }
    weights = {"breadth": cfg.weight_breadth, "depth": cfg.weight_depth, "duration": cfg.weight_duration,
               "trend": cfg.weight_trend}  # fmt: skip
    priority = round(100 * math.prod(components[k] ** weights[k] for k in components), 2)
    missing = _missing(cfg, onset, breadth, duration, culprit, attribution)
    top = attribution[0] if attribution else None
    if not missing:
        today = now - now % 86400
        already = existing is not None and existing.classification == "actionable"
        if not already and signals.actionable_since(store, today) >= cfg.max_actionable_per_day:
            missing.append(f"today's cap of {cfg.max_actionable_per_day} new actionable issues was reached")
    classification: Classification = "observation" if missing else "actionable"
    confidence_components = {
        "significance": round(1 - min(1.0, onset.p_value / cfg.max_p_value) if onset.significant else 0.0, 4),
        "breadth": components["breadth"],
        "attribution": top.confidence if top else 0.0,
        "culprit": 1.0 if culprit else 0.0,
        "user_reports": 1.0 if user_reports else 0.0,
    }
    confidence = round(sum(confidence_components.values()) / len(confidence_components), 4)
    tier, tier_reasons = _tier(store, settings, breadth, culprit, issue.id)
    notes += tier_reasons
    row = signals.save(
        store,
        signals.SignalRow(
            issue_id=issue.id, classification=classification, onset=onset_at, priority=priority,
            confidence=confidence, tier=tier,
            report={"missing": missing, "attribution": [a.model_dump() for a in attribution]},
            decision="pending", created_at=existing.created_at if existing else now, updated_at=now,
        ),
        components,
        existing,
    )  # fmt: skip
    if tier == 2:
        policy.escalate(store, issue.id, "triage_tier2", "; ".join(tier_reasons)[:500], now)
    return Signal(
        issue_id=issue.id, title=cap(issue.title, 200) or "", classification=classification, decision=row.decision,
        tier=tier, priority=priority, priority_components=components, confidence=confidence,
        confidence_components=confidence_components, onset=onset, duration_hours=round(duration, 2),
        breadth=breadth, depth=depth, attribution=attribution, missing=missing, culprit=culprit,
        user_reports=user_reports, notes=notes,
    )  # fmt: skip


def _matching_reports(
    reports: list[tuple[int, str, str, str]], issue: IssueRow, payloads: list[dict[str, Any]], culprit: str | None
) -> list[str]:
    """Open issues that name the exception type and the message, the culprit function or its file."""
    kind = (issue.exception_type or "").rsplit(".", 1)[-1].lower()
    if len(kind) < 4:
        return []
    raised = _raised(payloads)
    chain = exceptions(payloads[0]) if payloads else []
    crash = chain[-1] if chain else {}
    message = str(crash.get("value") or "").strip().lower()[:40]
    clues = [message] if len(message) >= 6 else []
    if culprit:
        where, _, function = culprit.partition(" in ")
        clues += [function.rsplit(".", 1)[-1].lower(), where.split(":")[0].rsplit("/", 1)[-1].lower()]
    if raised is not None and raised[2]:
        clues.append(raised[2].lower())
    found = []
    for number, title, body, url in reports:
        text = f"{title}\n{body}".lower()
        if kind in text and any(c and len(c) >= 4 and c in text for c in clues):
            found.append(f"#{number} {cap(title, 100)} {cap(url, 200)}")
    return found[:5]


def _load(payload: str) -> dict[str, Any]:
    try:
        loaded = json.loads(payload)
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _breadth(
    users: int, releases: list[str], environments: list[str], payloads: list[dict[str, Any]], tag: str
) -> Breadth:
    tenants: Counter[str] = Counter()
    runtimes: set[str] = set()
    systems: set[str] = set()
    for p in payloads:
        value = _tag(p, tag)
        if value is not None:
            tenants[value[:100]] += 1
        contexts = p.get("contexts") if isinstance(p.get("contexts"), dict) else {}
        for key, bucket in (("runtime", runtimes), ("os", systems)):
            ctx = contexts.get(key) if isinstance(contexts, dict) else None
            if isinstance(ctx, dict) and ctx.get("name"):
                bucket.add(f"{ctx.get('name')} {ctx.get('version') or ''}".strip()[:60])
    return Breadth(
        users=users, tenants=[t for t, _ in tenants.most_common(20)], environments=environments[:20],
        releases=releases[:20],
        runtimes=sorted(runtimes)[:20], operating_systems=sorted(systems)[:20],
    )  # fmt: skip


def _depth(store: Store, onset_hour: int | None, breadth: Breadth, events_after: int) -> tuple[float, str]:
    """The failing fraction of the releases' sessions since onset where sessions are reported, else events/user."""
    if onset_hour is not None and breadth.releases:
        releases = health.release_health(store.reader(), since_hour=onset_hour)
        started = sum(r.started for r in releases if r.release in breadth.releases)
        if started:
            share = events_after / started
            return min(1.0, share * 20), f"{share:.2%} of {started} sessions since onset failed with it"
    per_user = events_after / breadth.users if breadth.users else float(events_after)
    return min(1.0, per_user / 5), f"{per_user:.1f} events per user since onset (no sessions reported)"


def _culprit(
    store: Store, repo: GitRepo, settings: Settings, issue: IssueRow, notes: list[str]
) -> tuple[str | None, tuple[str, ...]]:
    try:
        path = map_code_path(store, repo, issue_id=issue.id, path_rewrites=settings.path_rewrites,
                             reliability=settings.reliability, operator_deploys_only=True)  # fmt: skip
    except (CodePathError, NotFoundError) as exc:
        notes.append(f"no code path: {str(exc)[:200]}")
        return None, ()
    files = tuple(
        dict.fromkeys(f.location.repo_path for ep in path.exceptions for f in ep.path if f.location.repo_path)
    )
    if path.culprit is None or not path.culprit.location.repo_path:
        return None, files
    c = path.culprit
    return f"{c.location.repo_path}:{c.location.lineno} in {c.qualname or c.function}", files


def _attribute(
    store: Store, repo: GitRepo, settings: Settings, issue: IssueRow, onset_at: float, breadth: Breadth,
    payloads: list[dict[str, Any]], path_files: tuple[str, ...], events: Sample,
) -> list[Attribution]:  # fmt: skip
    cfg = settings.triage
    found: list[Attribution] = []
    deploys = sorted(store.deploys(), key=lambda d: d.deployed_at)
    for i, d in enumerate(deploys):
        if d.source != "operator":  # an agent may record a deploy; only the operator's (CLI, CI) is evidence
            continue
        lag = onset_at - d.deployed_at
        if not -HOUR <= lag <= cfg.deploy_window_hours * HOUR:
            continue
        if breadth.environments and d.environment not in breadth.environments:
            continue
        evidence = [f"onset {max(0.0, lag) / 60:.0f} min after deploy {cap(d.release, 80)} to {d.environment}"]
        confidence = 0.5
        earlier = next(
            (e for e in reversed(deploys[:i]) if e.environment == d.environment and e.source == "operator"), None
        )
        if earlier is not None and path_files:
            try:
                touched = sorted(repo.changed_between(earlier.commit_sha, d.commit_sha) & set(path_files))
            except Exception:  # an unknown commit: the deploy still correlates in time
                touched = []
            if touched:
                confidence = 0.9
                evidence.append(f"its commits changed {', '.join(touched[:5])} on the crash path")
                # "Started N minutes after": the first event at or after the deploy (the onset is only an hour).
                first = min((e[0] for e in events if e[0] >= d.deployed_at), default=d.deployed_at + max(0.0, lag))
                evidence += _author(store, repo, issue.id, earlier, d, touched, first - d.deployed_at)
        found.append(Attribution(cause="deploy", confidence=confidence, evidence=evidence))
    changed = _dependency_change(store, repo, issue, onset_at, events, payloads)
    if changed is not None:
        found.append(changed)
    if breadth.tenants and payloads:
        counts = Counter(str(t) for t in (_tag(p, cfg.tenant_tag) for p in payloads) if t is not None)
        top, n = counts.most_common(1)[0] if counts else ("", 0)
        concentrated = n >= 0.9 * len(payloads)
        others = (
            signals.tenants_in_releases(store, breadth.releases, cfg.tenant_tag, since=onset_at) - {top}
            if concentrated
            else set()
        )
        if concentrated and others:
            found.append(Attribution(
                cause="user_configuration", confidence=0.95,
                evidence=[f"{n} of {len(payloads)} events since onset are tenant {cap(top, 60)}; "
                          f"{len(others)} other tenant(s) on the same releases do not fail this way"],
            ))  # fmt: skip
    raised = _raised(payloads)
    if raised is not None and (raised[0] in NETWORK_ERRORS or "Timeout" in raised[0]) and not raised[1]:
        spread = len(breadth.releases)
        found.append(Attribution(
            cause="external_service", confidence=0.8 if spread >= 2 else 0.6,
            evidence=[f"{cap(raised[0], 100)} raised in library code ({cap(raised[2], 80)}), "
                      f"across {spread} release(s)"],
        ))  # fmt: skip
    return sorted(found, key=lambda a: -a.confidence)


def _author(
    store: Store, repo: GitRepo, issue_id: int, earlier: Deploy, deploy: Deploy, touched: list[str], lag: float
) -> list[str]:
    """Record who changed the crash path in the blamed deploy (its newest commit touching it) and say so."""
    try:
        commits = repo.commits_touching_files(earlier.commit_sha, deploy.commit_sha, tuple(touched))
    except ProdloopError:
        return []
    if not commits:
        return []
    info = repo.commit_info(commits[0])
    lineage.attribute(store, issue_id, deploy_id=deploy.id, commit_sha=info.sha, author=info.author,
                      minutes_after=round(max(0.0, lag) / 60, 1), at=deploy.deployed_at + max(0.0, lag))  # fmt: skip
    return [f"the newest of them, {info.sha[:12]} by {cap(info.author, 80)}: {cap(info.summary, 120)}"]


def _tag(payload: dict[str, Any], tag: str) -> str | None:
    tags = payload.get("tags")
    if isinstance(tags, dict):
        value = tags.get(tag)
        return value if isinstance(value, str) else None
    if isinstance(tags, list):
        for pair in tags:
            if isinstance(pair, list) and len(pair) == 2 and pair[0] == tag and isinstance(pair[1], str):
                return pair[1]
    return None


def _raised(payloads: list[dict[str, Any]]) -> tuple[str, bool, str] | None:
    """(exception type, raised in app code, module of the raising frame) of the newest event."""
    for p in payloads:
        chain = exceptions(p)
        if chain:
            frames = frames_of(chain[-1])
            frame = frames[-1] if frames else {}
            return str(chain[-1].get("type") or ""), bool(frame.get("in_app")), str(frame.get("module") or "")
    return None


def _dependency_change(
    store: Store, repo: GitRepo, issue: IssueRow, onset_at: float, events: Sample, payloads: list[dict[str, Any]],
) -> Attribution | None:  # fmt: skip
    """A package whose version changed between the release before onset and the release failing since."""
    after = Counter(r for _, r, _, _, _ in events if r).most_common(1)
    if not after:
        return None
    failing = after[0][0]
    earlier = (
        store.reader()
        .execute(
            "SELECT release FROM release_packages WHERE project_id = ? AND release != ? AND seen_at < ?"
            " ORDER BY seen_at DESC LIMIT 1",
            (issue.project_id, failing, onset_at),
        )
        .fetchone()
    )
    if earlier is None:
        return None
    old = health.release_packages(store.reader(), issue.project_id, str(earlier[0]), consistent_only=True)
    new = health.release_packages(store.reader(), issue.project_id, failing, consistent_only=True)
    if old is None or new is None:  # unknown or disputed on either side: no evidence (never "all added")
        return None
    if not (_anchored(store, repo, str(earlier[0])) and _anchored(store, repo, failing)):
        return None  # a release name only events have used proves nothing about what was installed
    bumped = sorted(name for name in new if name in old and new[name] != old[name])
    added = sorted(name for name in new if name not in old)
    if not bumped and not added:
        return None
    in_stack = {_norm(str(m).split(".")[0]) for p in payloads[:50] for m in _frame_modules(p)}
    hit = [n for n in bumped + added if _norm(n) in in_stack]
    changes = [f"{n} {old[n]} -> {new[n]}" for n in bumped[:5]] + [f"{n} {new[n]} added" for n in added[:3]]
    evidence = [f"between {cap(str(earlier[0]), 60)} and {cap(failing, 60)}: " + ", ".join(changes)]
    if hit:
        evidence.append(f"{', '.join(hit[:3])} has frames in the stack")
    return Attribution(cause="dependency", confidence=0.85 if hit else 0.45, evidence=evidence)


def _anchored(store: Store, repo: GitRepo, release: str) -> bool:
    """A release the operator vouches for: an operator's deploy record, or a name that resolves in the repository
    (a commit id, a tag, or package@version naming a tag)."""
    if any(d.source == "operator" for d in store.deploys(release=release)):
        return True
    version = release.rsplit("@", 1)[-1]
    return any(repo.resolve(name) is not None for name in dict.fromkeys([release, version, f"v{version}"]))


def _frame_modules(payload: dict[str, Any]) -> list[str]:
    return [str(f["module"]) for exc in exceptions(payload) for f in frames_of(exc) if f.get("module")]


def _norm(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def _missing(
    cfg: TriageSettings, onset: Onset, breadth: Breadth, duration: float, culprit: str | None,
    attribution: list[Attribution],
) -> list[str]:  # fmt: skip
    missing = []
    if onset.events_after < cfg.min_events:
        missing.append(f"volume: {onset.events_after} events since onset (needs {cfg.min_events})")
    elif not onset.significant:
        missing.append(f"significance: p = {onset.p_value:.3g} after correction (needs <= {cfg.max_p_value})")
    if breadth.users < cfg.min_users:
        missing.append(f"breadth: {breadth.users} user(s) since onset (needs {cfg.min_users})")
    if duration < cfg.min_duration_hours:
        missing.append(f"duration: {duration:.1f} h (needs {cfg.min_duration_hours})")
    if culprit is None and onset.significant:
        missing.append("a culprit in this repository")
    top = attribution[0] if attribution else None
    if top is None or top.cause not in ("deploy", "dependency") or top.confidence < 0.6:
        said = f" (the likeliest cause is {top.cause.replace('_', ' ')})" if top else ""
        missing.append(f"a correlated deploy or dependency change{said}")
    return missing


def _tier(
    store: Store, settings: Settings, breadth: Breadth, culprit: str | None, issue_id: int
) -> tuple[int, list[str]]:
    reasons = []
    if len(breadth.tenants) >= 3 and len(breadth.releases) >= 2:
        reasons.append(
            f"broad pattern across {len(breadth.tenants)} tenants and {len(breadth.releases)} releases: an "
            "architectural cause is likely; a person should look first"
        )
    if culprit is not None:
        tier = file_tier(store, settings.reliability, culprit.split(":", 1)[0], leave_out=issue_id)
        if tier.tier == 2:
            reasons.append("the culprit's file is reliability tier 2: " + "; ".join(tier.reasons))
    return (2 if reasons else 1), reasons


def require_clearance(
    store: Store, repo: GitRepo, settings: Settings, clock: Clock, issue_id: int, *, action: str,
    paths: Iterable[str] = (),
) -> None:  # fmt: skip
    """Refuse agent work (`action`) on an issue the mode does not clear: shadow refuses all, approve needs a
    person's approval, autonomous an actionable tier-1 classification; rejected is refused in every mode. An issue
    triage has not judged yet (new, or older than the baseline window) is triaged first: never open by default.
    Before triage, in every mode: the stopping conditions and the andon cord's quarantine (`paths` are what the work
    changes, beside the issue's own frames)."""
    require_work_allowed(store, settings, clock, issue_id, action=action, paths=paths)
    cfg = settings.triage
    if cfg.mode == "off":
        return
    row = signals.get(store, issue_id)
    if row is None:
        triage_signals(store, repo, settings, clock, issue_id=issue_id)
        row = signals.get(store, issue_id)
    if row is None:  # triage records every issue it judges; say so rather than let work through
        raise TriageRefused(issue_id, action, "triage could not judge it", "run prodloop triage --issue ID")
    release = f"a person clears it: prodloop triage approve {issue_id} --by NAME --why TEXT"
    if row.decision == "rejected":
        raise TriageRefused(issue_id, action, "a person rejected it in triage", "nothing to do unless they approve it")
    if cfg.mode == "shadow":
        raise TriageRefused(issue_id, action, "triage runs in shadow mode (it records, agents do not act)",
                            "a person sets triage.mode to approve or autonomous")  # fmt: skip
    if row.decision == "approved":
        return
    if cfg.mode == "approve":
        raise TriageRefused(issue_id, action, f"triage classified it {row.classification} and awaits a person", release)
    if row.tier == 2:
        raise TriageRefused(issue_id, action, "it is tier 2 (escalated at creation)", release)
    if row.classification != "actionable":
        missing = "; ".join(row.report.get("missing", [])[:3])
        raise TriageRefused(issue_id, action, f"it is an observation ({missing})", release)
