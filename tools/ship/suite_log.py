"""`suite_log`: how the test suite changed, from the provenance prodloop keeps: tests added (regression tests, and
records from before suite changes, which carry no action), moved to the slower suite, removed, quarantined and
unquarantined, oldest first, a page at a time."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from prodloop.server.store import Store, policy
from prodloop.tools.engine._shape import cap, decode_cursor, encode_cursor, iso

_REASON_KEYS = ("reasons", "reason", "why")


class SuiteLogEntry(BaseModel):
    action: str = Field(description="added, healed, moved, removed, quarantined or unquarantined")
    test: str = Field(description="the test node (a file for moves and removals)")
    test_path: str
    at: str | None
    reasons: list[str]
    issue_id: int | None = Field(description="the production issue, for a test prodloop added")
    branch: str | None
    url: str | None


class SuiteLog(BaseModel):
    entries: list[SuiteLogEntry]
    total: int
    next_cursor: str | None = Field(description="null on the last page; else pass it as cursor for the next")


def suite_log(
    store: Store, *, test_path: str | None = None, limit: Annotated[int, Field(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> SuiteLog:  # fmt: skip
    offset = decode_cursor(cursor, "suite-log", "cursor")
    rows, total = policy.suite_changes(store, test_path=test_path, limit=max(1, min(limit, 200)), offset=offset)
    entries = []
    for action, node, path, record, created, pr_branch, pr_url in rows:
        pull = record.get("pull_request")
        pull = pull if isinstance(pull, dict) else {}
        reasons = [r for key in _REASON_KEYS for r in _listed(record.get(key))]
        if action == "unquarantined" and record.get("clean_runs") is not None:
            reasons.append(f"{record['clean_runs']} clean CI runs in a row")
        issue = record.get("issue_id") or (record.get("added") or {}).get("issue_id")
        if action == "healed":
            reasons[:0] = [
                f"{record.get('classification')} (CI failure {record.get('ci_failure_id')}), "
                f"mutation score {record.get('mutation_score')}",
                *_listed(record.get("evidence"))[:3],
            ]
        if action == "added" and issue is not None:
            reasons.append(f"regression test of production issue {issue}")
        entries.append(SuiteLogEntry(
            action=action, test=cap(node, 500) or "", test_path=cap(path, 500) or "", at=iso(created),
            reasons=[cap(r, 300) or "" for r in reasons][:20], issue_id=int(issue) if isinstance(issue, int) else None,
            branch=cap(pr_branch or pull.get("branch"), 300), url=cap(pr_url or pull.get("url"), 500),
        ))  # fmt: skip
    end = offset + len(rows)
    return SuiteLog(entries=entries, total=total,
                    next_cursor=encode_cursor("suite-log", end) if end < total else None)  # fmt: skip


def _listed(value: object) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)] if value else []
