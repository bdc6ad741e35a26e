"""MCP resources: JSON views of issues, events, code paths, reliability history, provenance, the andon cords, an issue's
lineage after its PR and policy."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

from prodloop.server.context import AppContext
from prodloop.server.store import ci, policy
from prodloop.tools.engine._shape import iso
from prodloop.tools.locate.code_path import map_code_path
from prodloop.tools.observe.andon import andon_status
from prodloop.tools.observe.ci_classify import classify_failure
from prodloop.tools.observe.error_context import fetch_error_context
from prodloop.tools.observe.issues import list_issues
from prodloop.tools.observe.lineage_status import post_merge_status
from prodloop.tools.observe.metrics import metrics
from prodloop.tools.observe.reliability import query_reliability_history
from prodloop.tools.ship.provenance import list_provenance
from prodloop.tools.ship.suite import suggest_suite_changes
from prodloop.tools.ship.suite_log import suite_log

MIME = "application/json"


def issues(ctx: AppContext) -> str:
    return list_issues(ctx.store, status=None, order_by="last_seen", limit=100).model_dump_json()


def issue(ctx: AppContext, issue_id: int) -> str:
    return fetch_error_context(ctx.store, issue_id=issue_id, frames_limit=10, breadcrumbs_limit=10).model_dump_json()


def event(ctx: AppContext, event_id: str) -> str:
    return fetch_error_context(ctx.store, event_id=event_id, frames_limit=10, breadcrumbs_limit=10).model_dump_json()


def code_path(ctx: AppContext, event_id: str) -> str:
    return map_code_path(
        ctx.store, ctx.git(), event_id=event_id, path_rewrites=ctx.settings.path_rewrites,
        reliability=ctx.settings.reliability,
    ).model_dump_json()  # fmt: skip


def reliability(ctx: AppContext, path: str) -> str:
    return query_reliability_history(
        ctx.store, ctx.git(), ctx.settings, ctx.clock, path=unquote(path), days=30
    ).model_dump_json()


def provenance(ctx: AppContext) -> str:
    return list_provenance(ctx.store, limit=200).model_dump_json()


def suite_log_view(ctx: AppContext) -> str:
    return suite_log(ctx.store, limit=200).model_dump_json()


def suite_proposals_view(ctx: AppContext) -> str:
    return suggest_suite_changes(ctx.store, ctx.git(), ctx.clock).model_dump_json()


def andon(ctx: AppContext) -> str:
    return andon_status(ctx.store).model_dump_json()


def lineage_view(ctx: AppContext, issue_id: int) -> str:
    return post_merge_status(ctx.store, ctx.git(), ctx.settings, ctx.clock, issue_id).model_dump_json()


def metrics_view(ctx: AppContext) -> str:
    return metrics(ctx.store).model_dump_json()


def ci_failures_view(ctx: AppContext) -> str:
    rows = ci.failures(ctx.store, limit=200)
    return json.dumps({"failures": [
        {"id": r.id, "test_id": r.test_id, "exception_type": r.exception_type, "location": r.location,
         "count": r.count, "first_seen": iso(r.first_seen), "last_seen": iso(r.last_seen), "message": r.message}
        for r in rows
    ], "next": "prodloop://ci/failure/{id} classifies one"})  # fmt: skip


def ci_failure_view(ctx: AppContext, failure_id: int) -> str:
    return classify_failure(ctx.store, ctx.git(), failure_id).model_dump_json()


def policy_view(ctx: AppContext) -> str:
    settings = ctx.settings
    open_escalations: list[dict[str, Any]] = [
        {"id": e.id, "issue_id": e.issue_id, "kind": e.kind, "reason": e.reason, "since": iso(e.created_at)}
        for e in policy.escalations(ctx.store, open_only=True)
    ]
    return json.dumps(
        {
            "gates": settings.gates.model_dump(),
            "budgets": settings.budgets.model_dump(),
            "post_merge": settings.post_merge.model_dump(),
            "andon": settings.andon.model_dump(),
            "pr": {
                "base_branch": settings.base_branch,
                "remote": settings.git_remote,
                "labels": settings.pr_labels,
                "github": settings.github_token is not None,
            },
            "escalations_open": open_escalations,
        }
    )
