"""`query_reliability_history`: how one part of the code (a file, a folder or a function) has behaved in
production, and what happened when it changed.

From the store: the issues whose in-app frames name the path, their events per day, the releases those events ran
with their crash-free session rate, and the transactions they happened in (failure rate, p95). From the deploy
records and git: the deploys whose commits touched the path, each with the new issues in the path that followed
within `reliability.change_failure_hours` (a change failure), giving deploy frequency, change failure rate and time
to restore. From git at HEAD: churn (commits, authors), the modules that import the path, the tests that guard it
(prodloop's own regression tests and related tests). A tier with its reasons says how hard a reviewer should look.
"""

from __future__ import annotations

import ast
import functools
import statistics
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from prodloop.server.clock import Clock
from prodloop.server.errors import CodePathError, InvalidArgument
from prodloop.server.settings import ReliabilitySettings, Settings
from prodloop.server.store import Store, health, history, policy
from prodloop.server.store.history import PathMatch
from prodloop.server.store.records import Deploy, IssueRow
from prodloop.tools.engine._shape import UNTRUSTED_NOTICE, cap, iso
from prodloop.tools.engine.git_repo import GitRepo
from prodloop.tools.locate.related_tests import related_tests
from prodloop.tools.locate.source_map import module_of

DAY = 86400.0
PathKind = Literal["file", "folder", "function"]


class PathIssue(BaseModel):
    id: int
    title: str
    status: str
    events: int
    users: int
    first_seen: str | None
    last_seen: str | None
    regressions: int = Field(description="times it came back, in a new release, after it was resolved")


class DayCount(BaseModel):
    day: str
    events: int


class ReleaseView(BaseModel):
    release: str
    environment: str
    sessions: int
    crash_free_rate: float | None = Field(description="1 - crashed/started sessions of the whole release")


class TransactionView(BaseModel):
    name: str
    release: str
    count: int
    failure_rate: float
    p95_ms: float | None


class DeployView(BaseModel):
    release: str
    commit: str
    environment: str
    deployed_at: str | None
    commits_touching: int = Field(description="commits since the environment's previous deploy that touched the path")
    failed: bool = Field(description="a new issue in the path followed within change_failure_hours")
    new_issues: list[int]
    restored_after_hours: float | None = Field(description="until its new issues went quiet for a day; null: not yet")


class Delivery(BaseModel):
    deploys_touching: int
    deploys_per_week: float
    change_failure_rate: float | None
    median_time_to_restore_hours: float | None


class Churn(BaseModel):
    commits: int
    authors: list[str]


class Guards(BaseModel):
    regression_tests: list[str] = Field(description="tests prodloop added for this path's issues")
    related_tests: list[str]
    production_to_test_hours: float | None = Field(description="median, first event to the regression test's PR")


class BlastRadius(BaseModel):
    importers: list[str] = Field(description="modules of the repository that import the path (at most 20)")
    importers_total: int
    users: int = Field(description="distinct users of its issues, summed over issues")


class Tier(BaseModel):
    tier: Literal[1, 2]
    reasons: list[str]


class ReliabilityHistory(BaseModel):
    production_data_notice: str = Field(default=UNTRUSTED_NOTICE)
    path: str
    kind: PathKind
    window_days: int
    environment: str | None
    issues: list[PathIssue] = Field(description="most recently seen first (at most 20)")
    issues_total: int
    events: int
    events_share: float | None = Field(description="of every error event in the window")
    events_per_day: list[DayCount]
    releases: list[ReleaseView]
    transactions: list[TransactionView]
    deploys: list[DeployView]
    delivery: Delivery
    churn: Churn
    tests: Guards
    blast_radius: BlastRadius
    tier: Tier
    notes: list[str]


def query_reliability_history(
    store: Store,
    repo: GitRepo,
    settings: Settings,
    clock: Clock,
    *,
    path: str,
    days: int = 30,
    environment: str | None = None,
) -> ReliabilityHistory:
    kind, file_or_folder, function = _parse_path(repo, path)
    now = clock.now()
    since = now - days * DAY
    since_hour = int(since // 3600)
    if days > settings.retention.hourly_days:  # hours that old are kept as days: the window's first day counts whole
        since_hour -= since_hour % 24
    match = PathMatch.for_folder(file_or_folder) if kind == "folder" else PathMatch.for_file(file_or_folder, function)
    notes: list[str] = []
    kept = settings.retention
    if days > kept.aggregate_days:
        notes.append(f"counts are kept {kept.aggregate_days} days (retention.aggregate_days): the window is cut there")
    conn = store.reader()
    issues = history.issues_touching(conn, match, since=since)
    ids = [i.id for i in issues]
    per_day = history.events_per_day(conn, ids, since_hour=since_hour)
    events = sum(per_day.values())
    all_events = history.events_since(conn, since_hour=since_hour)
    releases, names = history.releases_and_transactions(conn, ids, since=since)
    release_views = [
        ReleaseView(release=r.release, environment=r.environment, sessions=r.started, crash_free_rate=r.crash_free_rate)
        for r in health.release_health(conn, since_hour=since_hour, environment=environment)
        if r.release in releases
    ]
    transactions = [
        TransactionView(
            name=t.name, release=t.release, count=t.count, failure_rate=round(t.failed / t.count, 4), p95_ms=t.p95_ms
        )
        for t in health.transaction_stats(conn, since_hour=since_hour, environment=environment, names=names)
        if t.count
    ]
    head = repo.head()
    deploys = _deploys(store, repo, issues, file_or_folder, since, now, environment, settings, notes)
    failed = [d for d in deploys if d.failed]
    restores = [d.restored_after_hours for d in failed if d.restored_after_hours is not None]
    shas = repo.commits_since(since, head, (file_or_folder,))
    authors = list(dict.fromkeys(repo.commit_info(s).author for s in shas))
    importers = _importers(repo, head, file_or_folder, kind)
    users = sum(i.user_count for i in issues)
    tests = _guards(store, repo, head, kind, file_or_folder, function, issues)
    share = round(events / all_events, 4) if all_events else None
    return ReliabilityHistory(
        path=path, kind=kind, window_days=days, environment=environment,
        issues=[_issue(i) for i in issues[:20]], issues_total=len(issues), events=events, events_share=share,
        events_per_day=[DayCount(day=(iso(d * DAY) or "")[:10], events=n) for d, n in sorted(per_day.items())],
        releases=release_views, transactions=transactions[:20], deploys=deploys[-20:],
        delivery=Delivery(
            deploys_touching=len(deploys), deploys_per_week=round(len(deploys) / (days / 7), 3),
            change_failure_rate=round(len(failed) / len(deploys), 4) if deploys else None,
            median_time_to_restore_hours=round(statistics.median(restores), 2) if restores else None,
        ),
        churn=Churn(commits=len(shas), authors=[a[:100] for a in authors[:20]]),
        tests=tests,
        blast_radius=BlastRadius(importers=importers[:20], importers_total=len(importers), users=users),
        tier=_tier(share, users, len(importers), sum(i.regressions for i in issues), settings.reliability),
        notes=notes,
    )  # fmt: skip


def _parse_path(repo: GitRepo, path: str) -> tuple[PathKind, str, str | None]:
    """(kind, the file or folder in the repository, the function's qualified name)."""
    given, _, function = path.partition("::")
    given = given.strip().strip("/") if given.strip() != "/" else ""
    if not given or given.startswith(("-", "/")) or ".." in given.split("/") or len(path) > 500:
        raise InvalidArgument("path", f"{path[:100]} is not a path inside the repository", "e.g. shop/pricing.py")
    files = repo.files(repo.head())
    if function:
        if given not in files or not all(part.isidentifier() for part in function.split(".")):
            raise InvalidArgument(
                "path", f"{path[:100]} is not file::Qualified.name of a file here", "e.g. shop/pricing.py::line_total"
            )
        return "function", given, function
    if given in files:
        return "file", given, None
    if any(f.startswith(given + "/") for f in files):
        return "folder", given, None
    raise InvalidArgument("path", f"{given[:100]} is neither a file nor a folder at HEAD", "give a repository path")


def _issue(row: IssueRow) -> PathIssue:
    return PathIssue(
        id=row.id, title=cap(row.title, 200) or "", status=row.status, events=row.event_count, users=row.user_count,
        first_seen=iso(row.first_seen), last_seen=iso(row.last_seen), regressions=row.regressions,
    )  # fmt: skip


def _deploys(
    store: Store, repo: GitRepo, issues: list[IssueRow], target: str, since: float, now: float,
    environment: str | None, settings: Settings, notes: list[str],
) -> list[DeployView]:  # fmt: skip
    """Deploys in the window whose commits (since the environment's previous deploy) touched the path."""
    window = settings.reliability.change_failure_hours * 3600
    previous: dict[str, Deploy] = {}
    pairs: dict[str, list[tuple[Deploy, Deploy]]] = {}  # per environment, in deploy order
    for deploy in sorted(store.deploys(environment=environment), key=lambda d: d.deployed_at):
        before = previous.get(deploy.environment)
        previous[deploy.environment] = deploy
        if deploy.deployed_at < since:
            continue
        if before is None:
            notes.append(
                f"deploy {deploy.release[:60]}: no earlier deploy in {deploy.environment[:40]} to diff against"
            )
            continue
        pairs.setdefault(deploy.environment, []).append((before, deploy))
    counted: list[tuple[Deploy, int]] = []
    for env, env_pairs in pairs.items():  # one span per environment: two git runs each
        try:
            counts = repo.touching_per_range([(b.commit_sha, d.commit_sha) for b, d in env_pairs], (target,))
        except CodePathError:
            notes.append(f"deploys to {env[:40]}: a deployed commit is not in this repository; not counted")
            continue
        counted += [(d, n) for (_, d), n in zip(env_pairs, counts, strict=True)]
    out = []
    for deploy, touching in counted:
        if not touching:
            continue
        new = [i for i in issues if deploy.deployed_at <= i.first_seen <= deploy.deployed_at + window]
        restored = None
        if new and all(now - i.last_seen >= DAY for i in new):
            restored = round((max(i.last_seen for i in new) - deploy.deployed_at) / 3600, 2)
        out.append(
            DeployView(
                release=deploy.release[:200], commit=deploy.commit_sha, environment=deploy.environment[:100],
                deployed_at=iso(deploy.deployed_at), commits_touching=touching, failed=bool(new),
                new_issues=[i.id for i in new], restored_after_hours=restored,
            )
        )  # fmt: skip
    return sorted(out, key=lambda d: d.deployed_at or "")


def _importers(repo: GitRepo, head: str, target: str, kind: PathKind) -> list[str]:
    """Modules of the repository (outside the path) that import the path's module or package. Every way to import
    it names its last part, so `git grep` finds the candidates and only those are parsed."""
    module = module_of(target if kind != "folder" else target + "/__init__.py")
    inside = target + "/" if kind == "folder" else target
    candidates = repo.grep_files(head, (module.rsplit(".", 1)[-1],), ("*.py",))
    out = []
    for path in candidates:
        if path == target or path.startswith(inside):
            continue
        imported = repo.memo(("imports", head, path), functools.partial(_imports_of, repo, head, path))
        if any(name == module or name.startswith(module + ".") for name in imported):
            out.append(module_of(path))
    return sorted(out)


def importers_of(repo: GitRepo, head: str, path: str) -> list[str]:
    """The modules that import one file's module (a change's dependents)."""
    return _importers(repo, head, path, "file")


def _imports_of(repo: GitRepo, head: str, path: str) -> frozenset[str]:
    """The module names a file imports (a `from pkg import name` counts as pkg.name; relative imports resolved)."""
    source = repo.read(head, path) or ""
    if len(source) > 1_000_000:
        return frozenset()
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return frozenset()
    names: set[str] = set()
    own = module_of(path)
    package = own if path.endswith("__init__.py") else own.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".") if package else []
                parent = parts[: max(0, len(parts) - node.level + 1)]
                base = ".".join([*parent, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{a.name}" if base else a.name for a in node.names)
    return frozenset(n for n in names if n)


def _guards(
    store: Store, repo: GitRepo, head: str, kind: PathKind, target: str, function: str | None,
    issues: list[IssueRow],
) -> Guards:  # fmt: skip
    by_id = {i.id: i for i in issues}
    records, _ = policy.provenance_records(store)
    ours = [r for r in records if policy.is_added(r) and r.get("issue_id") in by_id]
    latency = []
    for record in ours:
        try:
            added = datetime.fromisoformat(str(record.get("created_at"))).timestamp()
        except ValueError:
            continue
        latency.append((added - by_id[int(record["issue_id"])].first_seen) / 3600)
    related: list[str] = []
    if kind != "folder":
        found = related_tests(repo, head, module=module_of(target), function=function)
        related = [t.path for t in found]
    return Guards(
        regression_tests=list(dict.fromkeys(str(r.get("test_node"))[:300] for r in ours))[:20],
        related_tests=related[:20],
        production_to_test_hours=round(statistics.median(latency), 2) if latency else None,
    )


def _tier(
    share: float | None, users: int, importers: int | None, regressions: int, limits: ReliabilitySettings
) -> Tier:
    reasons = []
    if share is not None and share >= limits.tier2_failure_share:
        reasons.append(f"{share:.0%} of the window's error events (tier 2 from {limits.tier2_failure_share:.0%})")
    if users >= limits.tier2_users:
        reasons.append(f"its issues reached {users} users (tier 2 from {limits.tier2_users})")
    if importers is not None and importers >= limits.tier2_importers:
        reasons.append(f"{importers} modules import it (tier 2 from {limits.tier2_importers})")
    if regressions:
        reasons.append(f"its issues came back {regressions} time(s) after being resolved")
    if reasons:
        return Tier(tier=2, reasons=reasons)
    weighed = (
        "failure share, users, importers, regressions"
        if importers is not None
        else ("failure share, users, regressions; importers: query_reliability_history")
    )
    return Tier(tier=1, reasons=[f"under every tier 2 threshold ({weighed})"])


def file_tier(
    store: Store, limits: ReliabilitySettings, path: str, *, days: int = 30, leave_out: int | None = None
) -> Tier:
    """A repository file's tier over the last `days` from what production says of it (share of the errors, users,
    regressions): what `map_code_path` says of each file on a crash path. Its importers, which take a search of the
    whole repository, count in `query_reliability_history`'s tier only."""
    since = store.clock.now() - days * DAY
    since_hour = int(since // 3600)
    conn = store.reader()
    issues = history.issues_touching(conn, PathMatch.for_file(path), since=since)
    events = sum(history.events_per_day(conn, [i.id for i in issues], since_hour=since_hour).values())
    all_events = history.events_since(conn, since_hour=since_hour)
    if leave_out is not None:  # triage asks how critical the code is apart from the issue it is judging
        own = sum(history.events_per_day(conn, [leave_out], since_hour=since_hour).values())
        if any(i.id == leave_out for i in issues):
            events -= own
        issues = [i for i in issues if i.id != leave_out]
        all_events -= own
    share = round(events / all_events, 4) if all_events else None
    users = sum(i.user_count for i in issues)
    return _tier(share, users, None, sum(i.regressions for i in issues), limits)


class RankedModule(BaseModel):
    path: str
    tier: Literal[1, 2]
    issues: int
    events: int
    users: int
    change_failure_rate: float | None
    commits: int
    importers: int


def rank_modules(
    store: Store,
    repo: GitRepo,
    settings: Settings,
    clock: Clock,
    *,
    days: int = 30,
    limit: int = 20,
    environment: str | None = None,
) -> list[RankedModule]:
    """The repository's files that production errors ran through in the window, ranked by tier, then events (the
    deploys, releases and transactions of one environment when given)."""
    since = clock.now() - days * DAY
    files = set(repo.files(repo.head()))
    found: dict[str, None] = {}
    for name, _ in history.frame_files(store.reader(), since=since):
        name = name.lstrip("/")
        match = name if name in files else next((f for f in sorted(files) if f.endswith("/" + name)), None)
        if match is not None and match.endswith(".py"):
            found[match] = None
        if len(found) >= 3 * limit:
            break
    ranked = []
    for path in found:
        h = query_reliability_history(store, repo, settings, clock, path=path, days=days, environment=environment)
        ranked.append(
            RankedModule(
                path=path, tier=h.tier.tier, issues=h.issues_total, events=h.events, users=h.blast_radius.users,
                change_failure_rate=h.delivery.change_failure_rate, commits=h.churn.commits,
                importers=h.blast_radius.importers_total,
            )
        )  # fmt: skip
    return sorted(ranked, key=lambda m: (-m.tier, -m.events, m.path))[:limit]
