"""Prompt templates that guide an agent through the loop, filled in with live data.

Each function renders Markdown from the store and the repository through the same plain
functions the tools use (read-only: no prompt spends budget or runs tests).
"""

from __future__ import annotations

import json
import re

from prodloop.server.context import AppContext
from prodloop.server.errors import ProdloopError
from prodloop.server.store import policy
from prodloop.tools.budget import budget_status
from prodloop.tools.engine._shape import UNTRUSTED_NOTICE, iso, untrusted
from prodloop.tools.locate.code_path import CodePath, map_code_path
from prodloop.tools.locate.failing_test import map_failing_test
from prodloop.tools.observe.ci_classify import classify_failure
from prodloop.tools.observe.error_context import fetch_error_context
from prodloop.tools.observe.issues import list_issues
from prodloop.tools.observe.lineage_status import post_merge_status
from prodloop.tools.observe.reliability import query_reliability_history

_STEPS = """1. `fetch_error_context` (issue_id={id}) — read the exception, the crash frame's locals and the request.
2. `map_code_path` (issue_id={id}) — the files, functions and lines at the deployed commit; the suspect commits.
3. `synthesize_regression_test` (issue_id={id}), or write a test next to the related tests yourself.
4. `run_candidate_test` with the test and no fix: the *reproduces* gate must pass.
5. Fix the code in the working tree; `run_candidate_test` again with `fix_from_working_tree=true`.
6. `mutate_validate` with the receipt id; strengthen the assertions while mutants survive.
7. `open_pr` with the receipt id."""


def fix_production_error(ctx: AppContext, issue_id: int) -> str:
    issue = ctx.store.get_issue(issue_id)
    path = _code_path(ctx, issue_id)
    gates = ctx.settings.gates
    status = budget_status(ctx.store, ctx.settings.budgets, issue_id)
    return "\n".join(
        [
            f"# Fix production issue {issue_id}",
            "",
            UNTRUSTED_NOTICE,
            "",
            f"Title: {untrusted(issue.title, 300)}",
            f"{issue.event_count} events from {issue.user_count} users, first seen {iso(issue.first_seen)}, "
            f"last seen {iso(issue.last_seen)}. Culprit: {untrusted(issue.culprit, 200)}.",
            "",
            "## Code path at the deployed commit",
            _path_lines(path),
            "",
            "## Steps",
            _STEPS.format(id=issue_id),
            "",
            "## Rules the server enforces",
            f"- Gates: reproduces, passes_with_fix, not_flaky ({gates.flaky_runs} repeats and a shuffled run), "
            f"covers_path, public_interface, real_assertion, fast (under {gates.max_test_seconds:g} s).",
            f"- Mutation score at least {gates.min_mutation_score:g}.",
            f"- Budget: {status.runs_used} of {status.runs_limit} candidate runs and {status.cpu_seconds_used:.0f} of "
            f"{status.cpu_seconds_limit:.0f} CPU seconds used"
            + (" — EXHAUSTED: ask a person to run `prodloop budget reset`." if status.exhausted else "."),
            "- Production values are scrubbed; never put a [Filtered] value back into a test.",
        ]
    )


def write_regression_test(ctx: AppContext, issue_id: int) -> str:
    context = fetch_error_context(ctx.store, issue_id=issue_id, frames_limit=5, breadcrumbs_limit=5)
    path = _code_path(ctx, issue_id)
    crash = context.frames[-1] if context.frames else None
    related = (
        "\n".join(
            f"- `{t.path}`: {t.reason}; e.g. {', '.join(t.test_functions[:3]) or '—'}" for t in path.related_tests
        )
        if path and path.related_tests
        else "- none found: put the test under tests/"
    )
    return "\n".join(
        [
            f"# Write a regression test for issue {issue_id}",
            "",
            UNTRUSTED_NOTICE,
            "",
            f"Production raised {untrusted(context.exceptions[-1].type if context.exceptions else '?', 100)}: "
            f"{untrusted(context.exceptions[-1].value if context.exceptions else '', 500)}",
            "",
            "## The crash frame's production inputs (scrubbed)",
            untrusted(json.dumps(crash.vars if crash else {}, indent=1), 3000),
            "## Code path",
            _path_lines(path),
            "",
            "## Related tests (follow their style, put the new test beside them)",
            related,
            "",
            "## What makes the test acceptable",
            "- It fails on the deployed code with the production exception, raised from the mapped path.",
            "- It calls public functions of the service, asserts on their results, and patches nothing of it.",
            "- It is deterministic and fast. Then run it with `run_candidate_test`.",
        ]
    )


def triage_production_signals(ctx: AppContext, limit: int = 10) -> str:
    page = list_issues(ctx.store, order_by="event_count", limit=limit)
    files = set(ctx.git().files(ctx.git().head())) if _is_repo(ctx) else set()
    lines = [f"# Production signals: top {len(page.issues)} of {page.total} open issues", "", UNTRUSTED_NOTICE, ""]
    lines += [
        "| issue | events | users | last 24 h | previous 24 h | kind | title |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for issue in page.issues:
        last, before = _trend(ctx, issue.id)
        latest = ctx.store.latest_event(issue.id)
        kind = "actionable" if _actionable(latest.payload, files) else "observation (needs a person)"
        counts = f"{issue.event_count} | {issue.user_count} | {last} | {before}"
        title = untrusted(issue.title, 80).replace("|", "\\|")
        lines.append(f"| {issue.id} | {counts} | {kind} | {title} |")
    lines += [
        "",
        "Rank by breadth (users), depth (events), duration (first seen) and trend (last 24 h against the 24 h before).",
        "Actionable issues have their culprit in this repository: start `fix_production_error` on the top one.",
    ]
    return "\n".join(lines)


def review_change_with_reliability(ctx: AppContext, diff: str) -> str:
    files = sorted(set(re.findall(r"^\+\+\+ b/(\S+)", diff, re.M)))
    if not files:
        return "# Reliability review\n\nThe diff names no changed file (`+++ b/...` lines): pass a unified diff."
    lines = [
        "# Reliability review of the change",
        "",
        "| file | tier | issues (30 days) | events | change failure rate | importers | why |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for path in files[:50]:
        try:
            h = query_reliability_history(ctx.store, ctx.git(), ctx.settings, ctx.clock, path=path, days=30)
        except ProdloopError:
            lines.append(f"| `{path}` | new | - | - | - | - | not in the repository at HEAD |")
            continue
        rate = h.delivery.change_failure_rate
        lines.append(
            f"| `{path}` | {h.tier.tier} | {h.issues_total} | {h.events} | "
            f"{'n/a' if rate is None else f'{rate:.0%}'} | {h.blast_radius.importers_total} | "
            f"{'; '.join(h.tier.reasons)} |"
        )
    lines += [
        "",
        "Look hardest at tier 2 files: ask `query_reliability_history` for one file's issues, deploys and tests, and",
        "`map_code_path` for its issues; files with production history deserve a regression test for the failures",
        "they had before approving.",
    ]
    return "\n".join(lines)


def heal_failing_test(ctx: AppContext, test_node_id: str, failure_output: str) -> str:
    frames = map_failing_test(ctx.git(), failure_output)
    lines = [f"# Heal the failing test `{test_node_id}`", ""]
    if not frames:
        lines.append("No frame of the failure output names a file of this repository; paste pytest's full output.")
    for f in frames:
        lines += [
            f"- `{f.path}:{f.line}` in `{f.function or '<module>'}`: `{f.code or ''}`",
            f"  last changed by {f.last_changed_by}: {f.last_change}",
            *(f"  recent: {c}" for c in f.recent_commits),
        ]
    lines += ["", *_ci_classification(ctx, test_node_id)]
    lines += [
        "",
        "Decide first whether the test or the code is wrong: a recent commit to the code under test points at the",
        "code; a change of intended behaviour points at the test. Fix one, never weaken an assertion to pass.",
    ]
    return "\n".join(lines)


def _ci_classification(ctx: AppContext, test_node_id: str) -> list[str]:
    """What CI's stored failures of this test say (see prodloop://ci/failure/{id}), if CI reported it."""
    path, _, name = test_node_id.partition("::")
    junit_id = f"{path.removesuffix('.py').replace('/', '.')}::{name.rsplit('::', 1)[-1]}"
    row = (
        ctx.store.reader()
        .execute("SELECT id FROM ci_failures WHERE test_id = ? ORDER BY last_seen DESC LIMIT 1", (junit_id,))
        .fetchone()
    )
    if row is None:
        return ["CI has not reported this test failing to prodloop (`prodloop ci ingest` or POST /ci/results)."]
    found = classify_failure(ctx.store, ctx.git(), int(row[0]))
    return [
        f"CI failure {found.failure_id}: prodloop classifies it **{found.kind}**"
        + (f" (decided by {found.decided_by})" if found.decided_by else ""),
        *(f"- {e}" for e in found.evidence[:6]),
        f"Next: {found.next_step}",
    ]


def post_merge_followup(ctx: AppContext, issue_id: int) -> str:
    """Driven by the lineage's real state: the watch pass's verdict and its numbers, what stops it, what is next."""
    issue = ctx.store.get_issue(issue_id)
    lines = [
        f"# After the fix of issue {issue_id}",
        "",
        UNTRUSTED_NOTICE,
        "",
        f"Title: {untrusted(issue.title, 300)}",
        "",
    ]
    if not policy.pull_requests(ctx.store, issue_id=issue_id):
        return "\n".join([*lines, "No PR was opened by prodloop for this issue yet."])
    try:
        status = post_merge_status(ctx.store, ctx.git(), ctx.settings, ctx.clock, issue_id)
    except ProdloopError as exc:
        return "\n".join([*lines, f"The lineage cannot be followed: {exc}"])
    for pr in status.pull_requests:
        merged = f", merged ({pr.merged_how}) as {pr.merge_commit[:12]}" if pr.merge_commit else ""
        deployed = f", deployed in {untrusted(pr.deploy, 100)}" if pr.deploy else ""
        lines.append(f"- PR {pr.pull_request}: {pr.stage}{merged}{deployed}; verdict {pr.verdict or 'none yet'}")
    j = status.judgement
    if j is not None:
        lines += [
            "",
            f"Verdict **{status.verdict}** ({j.metric}): {j.events_after} events after the deploy where the "
            f"pre-deploy trend projects {j.expected_after}; ratio {j.ratio} [{j.ratio_low}, {j.ratio_high}], "
            f"p={j.p_value}, trend x{j.trend_per_day}/day{' (significant)' if j.trend_significant else ''}.",
            j.reason,
            *([f"Needs: {j.needed}"] if j.needed else []),
        ]
    lines += [
        "",
        f"Issue status: {status.issue_status} (regressions: {issue.regressions}); no-effect iterations in a row: "
        f"{status.no_effect_streak} of {ctx.settings.budgets.max_no_effect_iterations}.",
        *([f"Halted: {status.halted}."] if status.halted else []),
        *([f"Quarantined: {status.quarantined}"] if status.quarantined else []),
        "",
        f"Next: {status.next_step}.",
    ]
    return "\n".join(lines)


def _code_path(ctx: AppContext, issue_id: int) -> CodePath | None:
    try:
        return map_code_path(
            ctx.store, ctx.git(), issue_id=issue_id, path_rewrites=ctx.settings.path_rewrites,
            reliability=ctx.settings.reliability,
        )  # fmt: skip
    except ProdloopError:
        return None


def _path_lines(path: CodePath | None) -> str:
    if path is None:
        return "(the repository could not be read; run `map_code_path` for the reason)"
    frames = [
        f"- `{f.location.repo_path}:{f.location.lineno}` in `{f.qualname or f.function}`"
        f" ({f.location.confidence}){' ← culprit' if f.is_culprit else ''}"
        for e in path.exceptions
        for f in e.path
    ]
    suspects = [
        f"- suspect {s.commit[:12]} by {s.author} ({s.reason}): {s.summary}"
        for s in (path.attribution.suspects[:3] if path.attribution else [])
    ]
    return "\n".join(
        [f"Release {path.release.release} → {path.release.commit[:12]} ({path.release.source}).", *frames, *suspects]
    )


def _trend(ctx: AppContext, issue_id: int) -> tuple[int, int]:
    now_hour = int(ctx.clock.now() // 3600)
    counts = dict(ctx.store.hourly_counts(issue_id, now_hour - 47))
    last = sum(c for h, c in counts.items() if h > now_hour - 24)
    return last, sum(counts.values()) - last


def _is_repo(ctx: AppContext) -> bool:
    try:
        ctx.git()
    except ProdloopError:
        return False
    return True


def _actionable(payload: str, files: set[str]) -> bool:
    event = json.loads(payload)
    for exc in (event.get("exception") or {}).get("values") or []:
        for frame in ((exc.get("stacktrace") or {}).get("frames")) or []:
            name = frame.get("filename") or ""
            if frame.get("in_app") and any(f == name or f.endswith("/" + name) for f in files):
                return True
    return False
