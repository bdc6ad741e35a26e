"""What the server enforces, kept in the store: receipts, per-issue budgets and escalations."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from prodloop.server.store.db import Store, where
from prodloop.server.store.engine import Conn, Sql


@dataclass(frozen=True, slots=True)
class BudgetRow:
    issue_id: int
    runs: int
    cpu_seconds: float
    exhausted_at: float | None
    reset_at: float | None
    synthesis_attempts: int = 0


@dataclass(frozen=True, slots=True)
class Escalation:
    id: int
    issue_id: int | None
    kind: str
    reason: str
    created_at: float
    resolved_at: float | None


def budget(store: Store, issue_id: int) -> BudgetRow:
    row = (
        store.reader()
        .execute(
            "SELECT issue_id, runs, cpu_seconds, exhausted_at, reset_at, synthesis_attempts FROM budgets"
            " WHERE issue_id = ?",
            (issue_id,),
        )
        .fetchone()
    )
    return BudgetRow(*row) if row else BudgetRow(issue_id, 0, 0.0, None, None)


def reserve_run(
    store: Store,
    issue_id: int,
    *,
    max_runs: int,
    max_cpu_seconds: float,
    max_synthesis: int,
    kind: Literal["candidate", "synthesis", "cpu"] = "candidate",
) -> tuple[BudgetRow, bool]:
    """Check the budget and, if it allows, take one run of `kind`, in one transaction (concurrent calls cannot
    both pass). Candidate runs and synthesis attempts are counted apart; CPU seconds are shared."""
    with store.transaction() as conn:
        row = conn.execute(
            "SELECT issue_id, runs, cpu_seconds, exhausted_at, reset_at, synthesis_attempts FROM budgets"
            " WHERE issue_id = ?",
            (issue_id,),
        ).fetchone()
        current = BudgetRow(*row) if row else BudgetRow(issue_id, 0, 0.0, None, None)
        allowed = current.exhausted_at is None and current.cpu_seconds < max_cpu_seconds
        if kind == "candidate":
            allowed = allowed and current.runs < max_runs
        elif kind == "synthesis":
            allowed = allowed and current.synthesis_attempts < max_synthesis
        column = {"candidate": "runs", "synthesis": "synthesis_attempts"}.get(kind)
        if allowed and column:
            conn.execute(
                f"INSERT INTO budgets (issue_id, {column}) VALUES (?, 1)"
                f" ON CONFLICT (issue_id) DO UPDATE SET {column} = {column} + 1",
                (issue_id,),
            )
    return current, allowed


def charge_budget(store: Store, issue_id: int, *, runs: int, cpu_seconds: float) -> BudgetRow:
    with store.transaction() as conn:
        conn.execute(
            """
            INSERT INTO budgets (issue_id, runs, cpu_seconds) VALUES (?, ?, ?)
            ON CONFLICT (issue_id) DO UPDATE SET runs = runs + excluded.runs,
                                                 cpu_seconds = cpu_seconds + excluded.cpu_seconds
            """,
            (issue_id, runs, cpu_seconds),
        )
    return budget(store, issue_id)


def mark_exhausted(store: Store, issue_id: int, at: float, reason: str) -> None:
    """Flag the budget exhausted and open an escalation for a person, once per exhaustion."""
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO budgets (issue_id, exhausted_at) VALUES (?, ?)"
            " ON CONFLICT (issue_id) DO UPDATE SET exhausted_at = coalesce(exhausted_at, excluded.exhausted_at)",
            (issue_id, at),
        )
        open_escalation(conn, issue_id, "budget", reason, at)


def escalations(store: Store, *, issue_id: int | None = None, open_only: bool = False) -> list[Escalation]:
    clause, params = where(("issue_id = ?", issue_id), ("resolved_at IS NULL", ... if open_only else None))
    rows = store.reader().execute(
        f"SELECT id, issue_id, kind, reason, created_at, resolved_at FROM escalations {clause} ORDER BY id", params
    )
    return [Escalation(*row) for row in rows]


@dataclass(frozen=True, slots=True)
class PullRequestRow:
    id: int
    issue_id: int
    receipt_id: str
    branch: str
    commit_sha: str
    url: str | None
    number: int | None
    mode: str
    created_at: float


def reserve_pull_request(
    store: Store, issue_id: int, receipt_id: str, *, max_per_issue: int, max_per_day: int, now: float
) -> tuple[int | None, str | None]:
    """Take a PR slot within the per-issue and per-day budgets in one transaction: (slot id, None) or
    (None, why not). Concurrent calls cannot both take the last slot."""
    with store.transaction() as conn:
        # A pending slot older than an hour belongs to a process that died mid-way: it no longer counts.
        live = "(mode != 'pending' OR created_at > ?)"
        for_issue = conn.execute(
            f"SELECT count(*) FROM pull_requests WHERE issue_id = ? AND {live}", (issue_id, now - 3600)
        ).fetchone()[0]
        today = conn.execute(
            f"SELECT count(*) FROM pull_requests WHERE created_at >= ? AND {live}", (now - 86_400, now - 3600)
        ).fetchone()[0]
        if for_issue >= max_per_issue:
            return None, f"issue {issue_id} already has {for_issue} of {max_per_issue} PRs"
        if today >= max_per_day:
            return None, f"{today} of {max_per_day} PRs were opened in the last 24 hours"
        slot = conn.execute(
            "INSERT INTO pull_requests (issue_id, receipt_id, branch, commit_sha, mode, created_at)"
            " VALUES (?, ?, '', '', 'pending', ?) RETURNING id",
            (issue_id, receipt_id, now),
        ).fetchone()[0]
    return int(slot), None


def complete_pull_request(
    store: Store, pr: PullRequestRow, provenance: dict[str, Any], *, auto_merge: str | None = None
) -> None:
    """Fill in a reserved slot (with its auto-merge eligibility, JSON) and store the provenance record, in one
    transaction."""
    with store.transaction() as conn:
        conn.execute(
            "UPDATE pull_requests SET branch = ?, commit_sha = ?, url = ?, number = ?, mode = ?, auto_merge = ?"
            " WHERE id = ?",
            (pr.branch, pr.commit_sha, pr.url, pr.number, pr.mode, auto_merge, pr.id),
        )
        conn.execute(
            "INSERT INTO provenance (test_node, test_path, record, created_at, pull_request_id) VALUES (?, ?, ?, ?, ?)",
            (
                provenance["test_node"],
                provenance["test_path"],
                json.dumps(provenance, sort_keys=True),
                pr.created_at,
                pr.id,
            ),
        )


_AUTO_MERGE_COUNTS = Sql(
    sqlite="SELECT count(*), coalesce(sum(json_extract(auto_merge, '$.eligible')), 0),"
    " coalesce(sum(json_extract(auto_merge, '$.eligible') AND EXISTS"
    " (SELECT 1 FROM merges m WHERE m.pull_request_id = p.id)), 0)"
    " FROM pull_requests p WHERE auto_merge IS NOT NULL AND mode IN ('github', 'local')",
    postgres="SELECT count(*), count(*) FILTER (WHERE (auto_merge::jsonb ->> 'eligible')::boolean),"
    " count(*) FILTER (WHERE (auto_merge::jsonb ->> 'eligible')::boolean AND EXISTS"
    " (SELECT 1 FROM merges m WHERE m.pull_request_id = p.id))"
    " FROM pull_requests p WHERE auto_merge IS NOT NULL AND mode IN ('github', 'local')",
)


def auto_merge_counts(store: Store) -> tuple[int, int, int]:
    """(PRs opened with an eligibility on record, of them eligible, of those merged)."""
    conn = store.reader()
    row = conn.execute(_AUTO_MERGE_COUNTS.text(conn)).fetchone()
    return int(row[0]), int(row[1]), int(row[2])


def provenance_count(store: Store, *, action: str, since: float) -> int:
    conn = store.reader()
    row = conn.execute(
        Sql(
            "SELECT count(*) FROM provenance WHERE json_extract(record, '$.action') = ? AND created_at >= ?",
            "SELECT count(*) FROM provenance WHERE record::jsonb ->> 'action' = ? AND created_at >= ?",
        ).text(conn),
        (action, since),
    ).fetchone()
    return int(row[0])


def fail_pull_request(store: Store, slot: int, *, branch: str, commit: str) -> None:
    """A slot whose branch was pushed but whose PR could not be finished: it stays counted, marked failed."""
    with store.transaction() as conn:
        conn.execute(
            "UPDATE pull_requests SET branch = ?, commit_sha = ?, mode = 'failed' WHERE id = ? AND mode = 'pending'",
            (branch, commit, slot),
        )


def release_pull_request(store: Store, slot: int) -> None:
    """Give back a slot whose PR was never made."""
    with store.transaction() as conn:
        conn.execute("DELETE FROM pull_requests WHERE id = ? AND mode = 'pending'", (slot,))


def pull_requests(store: Store, *, issue_id: int | None = None, since: float | None = None) -> list[PullRequestRow]:
    clause, params = where(("issue_id = ?", issue_id), ("created_at >= ?", since), ("mode != 'pending'", ...))
    rows = store.reader().execute(
        "SELECT id, issue_id, receipt_id, branch, commit_sha, url, number, mode, created_at"
        f" FROM pull_requests {clause} ORDER BY id",
        params,
    )
    return [PullRequestRow(*row) for row in rows]


def provenance_records(
    store: Store, *, test_path: str | None = None, limit: int = -1, offset: int = 0
) -> tuple[list[dict[str, Any]], int]:
    """Provenance records, oldest first, a page of them (limit -1: all), and how many there are in all."""
    clause, params = where(("test_path = ?", test_path))
    conn = store.reader()
    total = int(conn.execute(f"SELECT count(*) FROM provenance {clause}", params).fetchone()[0])
    everything = 2**63 - 1  # (`LIMIT -1` is SQLite's alone)
    rows = conn.execute(
        f"SELECT record FROM provenance {clause} ORDER BY id LIMIT ? OFFSET ?",
        [*params, limit if limit >= 0 else everything, offset],
    )
    return [json.loads(row[0]) for row in rows], total


def save_provenance(store: Store, records: list[dict[str, Any]], at: float) -> None:
    """Provenance records of a change no pull request slot holds (a suite change), in one transaction."""
    with store.transaction() as conn:
        conn.executemany(
            "INSERT INTO provenance (test_node, test_path, record, created_at) VALUES (?, ?, ?, ?)",
            [(r["test_node"], r["test_path"], json.dumps(r, sort_keys=True), at) for r in records],
        )


_ACTION = Sql(
    sqlite="coalesce(json_extract(p.record, '$.action'), 'added')",
    postgres="coalesce(p.record::jsonb ->> 'action', 'added')",
)


def suite_changes(
    store: Store, *, test_path: str | None, limit: int, offset: int
) -> tuple[list[tuple[str, str, str, dict[str, Any], float, str | None, str | None]], int]:
    """One page of every provenance record as a suite change, oldest first: (action, test node, test path, record,
    created at, PR branch, PR url), and how many there are in all."""
    clause, params = where(("p.test_path = ?", test_path))
    rows = (
        store.reader()
        .execute(
            f"SELECT {_ACTION.text(store.reader())}, p.test_node, p.test_path, p.record, p.created_at, pr.branch,"
            " pr.url, count(*) OVER () FROM provenance p LEFT JOIN pull_requests pr ON pr.id = p.pull_request_id"
            f" {clause} ORDER BY p.created_at, p.id LIMIT ? OFFSET ?",
            (*params, limit, offset),
        )
        .fetchall()
    )
    total = int(rows[0][7]) if rows else _count(store, test_path)
    return [(str(a), str(n), str(t), json.loads(r), float(c), b, u) for a, n, t, r, c, b, u, _ in rows], total


def _count(store: Store, test_path: str | None) -> int:
    clause, params = where(("test_path = ?", test_path))
    return int(store.reader().execute(f"SELECT count(*) FROM provenance {clause}", params).fetchone()[0])


def latest_actions(store: Store) -> dict[str, tuple[str, dict[str, Any], float]]:
    """Each test node's latest provenance record: (action, record, created at)."""
    rows = store.reader().execute(
        f"SELECT p.test_node, {_ACTION.text(store.reader())}, p.record, p.created_at FROM provenance p"
        " WHERE p.id = (SELECT max(q.id) FROM provenance q WHERE q.test_node = p.test_node)"
    )
    return {str(n): (str(a), json.loads(r), float(c)) for n, a, r, c in rows}


def is_added(record: dict[str, Any]) -> bool:
    """A record of a regression test prodloop added (records before suite changes carry no action)."""
    return bool(record.get("action", "added") == "added")


def escalate(store: Store, issue_id: int | None, kind: str, reason: str, at: float) -> None:
    """Open an escalation for a person unless one of this kind is already open for the issue."""
    with store.transaction() as conn:
        open_escalation(conn, issue_id, kind, reason, at)


def open_escalation(conn: Conn, issue_id: int | None, kind: str, reason: str, at: float) -> None:
    open_row = conn.execute(
        "SELECT id FROM escalations WHERE issue_id IS ? AND kind = ? AND resolved_at IS NULL", (issue_id, kind)
    ).fetchone()
    if open_row is None:
        conn.execute(
            "INSERT INTO escalations (issue_id, kind, reason, created_at) VALUES (?, ?, ?, ?)",
            (issue_id, kind, reason, at),
        )
