"""What each page shows, read from the store and the repository through the tools' own functions (read-only: no page
runs triage, judges a verdict or changes state)."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from prodloop.server.context import AppContext
from prodloop.server.dashboard import svg
from prodloop.server.errors import NotFoundError, ProdloopError
from prodloop.server.store import ci, lineage, policy, receipts, signals
from prodloop.server.store.history import PathMatch, issues_touching
from prodloop.tools.budget import budget_status
from prodloop.tools.engine._shape import encode_cursor, iso
from prodloop.tools.observe.andon import andon_status
from prodloop.tools.observe.error_context import fetch_error_context
from prodloop.tools.observe.issues import list_issues
from prodloop.tools.observe.metrics import metrics, production_to_test_seconds
from prodloop.tools.observe.reliability import file_tier, query_reliability_history
from prodloop.tools.observe.triage import onset_of
from prodloop.tools.ship.suite_log import suite_log

HOUR = 3600
_SPARK_HOURS = 48
_MAP_DAYS = 30
_LATENCY_BUCKETS = (("under 1 hour", 0, 1), ("1 to 4 hours", 1, 4), ("4 to 24 hours", 4, 24),
                    ("1 to 7 days", 24, 168), ("over 7 days", 168, float("inf")))  # fmt: skip


def _hour_label(hour: int) -> str:
    return (iso(hour * HOUR) or "")[:13].replace("T", " ") + "h"


def overview(ctx: AppContext) -> dict[str, Any]:
    store = ctx.store
    page = list_issues(store, status="unresolved", order_by="priority", limit=50)
    now_hour = int(ctx.clock.now() // HOUR)
    first = now_hour - _SPARK_HOURS + 1
    series = signals.hourly_series(store, [i.id for i in page.issues], first_hour=first)
    sparks = {
        i.id: svg.sparkline([series.get(i.id, {}).get(h, 0) for h in range(first, now_hour + 1)], label=f"issue {i.id}")
        for i in page.issues
    }
    pending = [s for s in signals.all_signals(store) if s.decision == "pending"]
    titles = {i.id: i.title for i in page.issues}
    status = andon_status(store)
    budgets = [budget_status(store, ctx.settings.budgets, i.id) for i in page.issues]
    awaiting = []
    merged = lineage.merges(store)
    for pr in policy.pull_requests(store):
        merge = merged.get(pr.id)
        latest = lineage.latest_verdict(store, pr.id)
        if merge is not None and (latest is None or latest.verdict == "watching"):
            awaiting.append({"pr": pr, "merge": merge, "deployed": merge.deploy_id is not None, "verdict": latest})
    return {
        "issues": page.issues,
        "total": page.total,
        "sparks": sparks,
        "titles": titles,
        "actionable": [s for s in pending if s.classification == "actionable"],
        "observations": [s for s in pending if s.classification == "observation"],
        "cords": status.active,
        "quarantined": status.quarantined_paths,
        "escalations": policy.escalations(store, open_only=True),
        "budgets": [b for b in budgets if b.exhausted or b.runs_used or b.cost_usd_used],
        "awaiting": awaiting,
    }


def issue(ctx: AppContext, issue_id: int) -> dict[str, Any]:
    """An issue's rate over triage's baseline window with deploy markers and the onset shaded, onset and baseline
    (`onset_of`, as triage computes them), attribution, lineage and the scrubbed latest event."""
    store = ctx.store
    context = fetch_error_context(store, issue_id=issue_id, frames_limit=10, breadcrumbs_limit=10)
    cfg = ctx.settings.triage
    last = int(ctx.clock.now() // HOUR)
    first = last - min(cfg.baseline_days, ctx.settings.retention.hourly_days) * 24 + 1
    counts = signals.hourly_series(store, [issue_id], first_hour=first).get(issue_id, {})
    onset_hour, onset = onset_of(counts, first, last, min_events=cfg.min_events, max_p_value=cfg.max_p_value)
    markers = [
        svg.Marker(at=d.deployed_at / HOUR - first, label=d.release)
        for d in store.deploys()
        if first * HOUR <= d.deployed_at <= (last + 1) * HOUR
    ]
    chart = svg.line_chart(
        [counts.get(h, 0) for h in range(first, last + 1)], labels=[_hour_label(first), _hour_label(last)],
        markers=markers, shade=(onset_hour - first, last - first) if onset_hour is not None else None,
        title=f"events per hour of issue {issue_id}",
    )  # fmt: skip
    merged = lineage.merges(store)
    deploys = {d.id: d for d in store.deploys()}
    steps = []
    for pr in policy.pull_requests(store, issue_id=issue_id):
        try:
            receipt: receipts.Receipt | None = receipts.get(store, pr.receipt_id)
        except ProdloopError:
            receipt = None
        merge = merged.get(pr.id)
        deploy = deploys.get(merge.deploy_id) if merge is not None and merge.deploy_id is not None else None
        steps.append({"pr": pr, "receipt": receipt, "merge": merge, "deploy": deploy,
                      "verdict": lineage.latest_verdict(store, pr.id)})  # fmt: skip
    signal = signals.get(store, issue_id)
    return {
        "context": context,
        "chart": chart,
        "signal": signal,
        "attributions": (signal.report.get("attribution") or []) if signal else [],
        "missing": (signal.report.get("missing") or []) if signal else [],
        "onset": onset,
        "steps": steps,
        "budget": budget_status(store, ctx.settings.budgets, issue_id),
        "blame": lineage.attribution(store, issue_id),
        "decisions": [d for d in signals.decisions(store) if d.issue_id == issue_id],
    }


@dataclass(frozen=True, slots=True)
class Box:
    """One child on the reliability map: a folder, file or function, sized by lines and coloured by events."""

    name: str
    path: str
    kind: str
    lines: int
    events: int
    issues: int
    users: int
    tier: int | None  # files only (`file_tier`: from production alone); the history below weighs importers too
    share: float  # of the siblings' lines
    heat: int  # 0 (none) .. 4 (most events among siblings)


def reliability(ctx: AppContext, path: str) -> dict[str, Any]:
    """The map at `path` (the repository root when empty): its children as boxes, and its history when not root."""
    repo = ctx.git()
    head = repo.head()
    files = [f for f in repo.files(head) if f.endswith(".py")]
    given, _, function = path.partition("::")
    given = given.strip("/")
    since = ctx.clock.now() - _MAP_DAYS * 86_400
    conn = ctx.store.reader()

    def lines_of(file: str) -> int:
        text = repo.read(head, file) or ""
        return sum(1 for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))

    children: list[tuple[str, str, str, int, PathMatch]] = []
    if given in files and not function:
        text = repo.read(head, given) or ""
        for name, size in _functions(text):
            children.append((name, f"{given}::{name}", "function", size, PathMatch.for_file(given, name)))
    elif not function:
        if given and not any(f.startswith(given + "/") for f in files):
            raise NotFoundError("path", given[:100], "pick a folder or file of the repository at HEAD")
        prefix = given + "/" if given else ""
        below: dict[str, list[str]] = {}
        for f in files:
            if f.startswith(prefix):
                head_part, sep, _ = f[len(prefix) :].partition("/")
                below.setdefault(prefix + head_part if sep else f, []).append(f)
        for child, members in sorted(below.items()):
            is_file = child in files
            match = PathMatch.for_file(child) if is_file else PathMatch.for_folder(child)
            children.append((child.rsplit("/", 1)[-1], child, "file" if is_file else "folder",
                             sum(lines_of(m) for m in members), match))  # fmt: skip
    boxes = []
    counted = []
    for name, child_path, kind, size, match in children:
        found = issues_touching(conn, match, since=since)
        counted.append((name, child_path, kind, size, sum(i.event_count for i in found), found))
    total_lines = sum(c[3] for c in counted) or 1
    top = max((c[4] for c in counted), default=0)
    for name, child_path, kind, size, events, found in counted:
        heat = 0 if not events else 1 + min(3, int(3 * events / top)) if top else 0
        tier = (
            file_tier(ctx.store, ctx.settings.reliability, child_path, days=_MAP_DAYS).tier if kind == "file" else None
        )
        boxes.append(Box(name, child_path, kind, size, events, len(found), sum(i.user_count for i in found), tier,
                         round(size / total_lines, 4), heat))  # fmt: skip
    history = None
    chart: Markup | None = None
    if given:
        history = query_reliability_history(store=ctx.store, repo=repo, settings=ctx.settings, clock=ctx.clock,
                                            path=path, days=_MAP_DAYS)  # fmt: skip
        per_day = {d.day: d.events for d in history.events_per_day}
        today = int(ctx.clock.now() // 86_400)
        days = [(iso(d * 86_400) or "")[:10] for d in range(today - _MAP_DAYS + 1, today + 1)]
        chart = svg.line_chart(
            [per_day.get(d, 0) for d in days], labels=[days[0], days[-1]], title=f"events per day in {path}"
        )
    crumbs = []
    parts = given.split("/") if given else []
    for i in range(len(parts)):
        crumbs.append(("/".join(parts[: i + 1]), parts[i]))
    if function:
        crumbs.append((path, function))
    return {"path": path, "boxes": boxes, "history": history, "chart": chart, "crumbs": crumbs}


def _functions(text: str) -> list[tuple[str, int]]:
    """(qualified name, lines) of a module's functions and methods, in source order."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return []
    found: list[tuple[str, int]] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                found.append((prefix + child.name, (child.end_lineno or child.lineno) - child.lineno + 1))
            elif isinstance(child, ast.ClassDef):
                walk(child, prefix + child.name + ".")

    walk(tree, "")
    return found


def suite(ctx: AppContext) -> dict[str, Any]:
    store = ctx.store
    log = suite_log(store, limit=1)
    if log.total > 1:  # the newest 200, newest first
        log = suite_log(store, limit=200, cursor=encode_cursor("suite-log", max(log.total - 200, 0)))
    entries = list(reversed(log.entries))
    numbers = metrics(store)
    hours = [max(0.0, s) / HOUR for s in production_to_test_seconds(store).values()]
    buckets = [(label, float(sum(low <= h < high for h in hours))) for label, low, high in _LATENCY_BUCKETS]
    latency_chart = svg.bar_chart(buckets, title="issues by production-to-test latency")
    flaky = ci.flaky_tests(store)[:50]
    flaky_chart = svg.bar_chart([(t, f / n) for t, f, n in flaky[:15]], title="flaky share of commits")
    return {
        "log": log,
        "entries": entries,
        "metrics": numbers,
        "latency_chart": latency_chart,
        "flaky": flaky,
        "flaky_chart": flaky_chart,
    }
