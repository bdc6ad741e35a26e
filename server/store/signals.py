"""Triage's record of each issue's signal (one per issue: a new spike of the same group updates it), the history
of its priority, and every decision a person made on it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prodloop.server.errors import InvalidArgument, NotFoundError
from prodloop.server.store.db import Store
from prodloop.server.store.engine import Sql


@dataclass(frozen=True, slots=True)
class SignalRow:
    issue_id: int
    classification: str
    onset: float | None
    priority: float
    confidence: float
    tier: int
    report: dict[str, Any]
    decision: str
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class Decision:
    issue_id: int
    decision: str
    who: str
    why: str
    classification: str
    at: float


_COLUMNS = "issue_id, classification, onset, priority, confidence, tier, report, decision, created_at, updated_at"


def _row(row: Sequence[Any]) -> SignalRow:
    issue_id, classification, onset, priority, confidence, tier, report, decision, created, updated = row
    return SignalRow(
        int(issue_id), str(classification), onset, float(priority), float(confidence), int(tier), json.loads(report),
        str(decision), float(created), float(updated),
    )  # fmt: skip


def hourly_series(store: Store, issue_ids: Sequence[int], *, first_hour: int) -> dict[int, dict[int, int]]:
    """Events per hour from `first_hour` on, per issue (hours without events left out)."""
    out: dict[int, dict[int, int]] = {i: {} for i in issue_ids}
    for first in range(0, len(issue_ids), 500):
        part = list(issue_ids[first : first + 500])
        rows = store.reader().execute(
            "SELECT issue_id, hour, count FROM issue_hourly"
            f" WHERE hour >= ? AND issue_id IN ({','.join('?' * len(part))})",
            [first_hour, *part],
        )
        for issue_id, hour, count in rows:
            out[issue_id][hour] = count
    return out


def active_issues(store: Store, *, since: float) -> list[int]:
    rows = store.reader().execute("SELECT id FROM issues WHERE last_seen >= ? ORDER BY id", (since,))
    return [int(r[0]) for r in rows]


def recent_payloads(
    store: Store, issue_id: int, *, since: float, limit: int = 500
) -> list[tuple[float, str | None, str | None, str | None, str]]:
    """(timestamp, release, environment, user hash, payload) of the issue's newest events since `since`: its kept
    events newest first, then those ingest counted without a payload, newest first, each with its summary as the
    payload (`{"tags": [[tenant tag, value]], "contexts": {"runtime": ..., "os": ...}}`, what triage reads of
    them). Kept events come first so that what only a whole payload holds (the exception, frames) is read from
    them."""
    rows = store.reader().execute(
        "SELECT timestamp, release, environment, user_hash, payload, summary FROM events"
        " WHERE issue_id = ? AND timestamp >= ? ORDER BY timestamp DESC LIMIT ?",
        (issue_id, since, limit),
    )
    out = [(float(t), r, e, u, p if p is not None else (s or "{}"), p is None) for t, r, e, u, p, s in rows]
    out.sort(key=lambda row: row[5])  # stable: newest first within kept and within counted
    return [row[:5] for row in out]


_BREADTH = Sql(
    sqlite="SELECT COUNT(DISTINCT user_hash), json_group_array(DISTINCT release),"
    " json_group_array(DISTINCT environment) FROM events WHERE issue_id = ? AND timestamp >= ?",
    postgres="SELECT COUNT(DISTINCT user_hash), coalesce(json_agg(DISTINCT release)::text, '[]'),"
    " coalesce(json_agg(DISTINCT environment)::text, '[]') FROM events WHERE issue_id = ? AND timestamp >= ?",
)


def breadth_counts(store: Store, issue_id: int, *, since: float) -> tuple[int, list[str], list[str]]:
    """(distinct users, releases, environments) of the issue's events since `since`."""
    conn = store.reader()
    users, releases, environments = conn.execute(_BREADTH.text(conn), (issue_id, since)).fetchone()
    return (
        int(users),
        sorted({r for r in json.loads(releases) if isinstance(r, str) and r}),
        sorted({e for e in json.loads(environments) if isinstance(e, str) and e}),
    )


def tenants_in_releases(
    store: Store, releases: Sequence[str], tag: str, *, since: float, limit: int = 2000
) -> set[str]:
    """The tenants (values of `tag`) any issue's newest events of these releases named since `since` (tags are a
    list of pairs once scrubbed, or an object): a kept event's payload, a counted one's summary."""
    if not releases:
        return set()
    conn = store.reader()
    newest = (
        "SELECT coalesce(payload, summary, '{}') AS payload FROM events"
        f" WHERE timestamp >= ? AND release IN ({','.join('?' * len(releases))}) ORDER BY timestamp DESC LIMIT ?"
    )
    rows = conn.execute(
        Sql(
            f"""
            SELECT DISTINCT CASE WHEN t.type = 'array' THEN json_extract(t.value, '$[1]') ELSE t.value END
            FROM ({newest}) e, json_each(e.payload, '$.tags') t
            WHERE (t.type = 'array' AND json_extract(t.value, '$[0]') = ?) OR (t.type != 'array' AND t.key = ?)
            """,
            f"""
            WITH e AS (SELECT p.payload::jsonb -> 'tags' AS tags FROM ({newest}) p)
            SELECT pair ->> 1 FROM e, jsonb_array_elements(
                CASE WHEN jsonb_typeof(e.tags) = 'array' THEN e.tags ELSE '[]'::jsonb END) pair
            WHERE jsonb_typeof(pair) = 'array' AND pair ->> 0 = ?
            UNION
            SELECT kv.value FROM e, jsonb_each_text(
                CASE WHEN jsonb_typeof(e.tags) = 'object' THEN e.tags ELSE '{{}}'::jsonb END) kv
            WHERE kv.key = ?
            """,
        ).text(conn),
        [since, *releases, limit, tag, tag],
    )
    return {str(v) for (v,) in rows if v is not None}


def save(store: Store, row: SignalRow, components: dict[str, float], old_row: SignalRow | None = None) -> SignalRow:
    """Insert or update the issue's signal (its decision is kept while what was decided on holds), and keep the
    priority's history when it moved. A pass that finds nothing new writes nothing (a steady issue costs no
    commit)."""
    old_row = old_row or get(store, row.issue_id)
    if old_row is not None and (
        (old_row.classification, old_row.onset, old_row.tier, old_row.report)
        == (row.classification, row.onset, row.tier, row.report)
        and abs(old_row.priority - row.priority) < 1.0
        and abs(old_row.confidence - row.confidence) < 0.01
    ):
        return old_row
    with store.transaction() as conn:
        conn.execute(
            f"""
            INSERT INTO signals ({_COLUMNS}, actionable_at)
            VALUES (:id, :kind, :onset, :priority, :confidence, :tier, :report, 'pending', :created, :updated,
                    CASE WHEN :kind = 'actionable' THEN :updated END)
            ON CONFLICT (issue_id) DO UPDATE SET
                -- the day's cap counts issues that became actionable that day, whenever they were first seen
                actionable_at = CASE WHEN excluded.classification = 'actionable'
                    AND signals.classification != 'actionable' THEN excluded.updated_at ELSE signals.actionable_at END,
                -- a rejection stands until a person says otherwise; an approval covers what was approved: the same
                -- classification, tier and incident (an onset more than a day away is another incident)
                decision = CASE WHEN signals.decision = 'rejected' THEN 'rejected'
                    WHEN excluded.classification != signals.classification OR excluded.tier != signals.tier
                        OR abs(coalesce(excluded.onset, 0) - coalesce(signals.onset, 0)) > 86400
                    THEN 'pending' ELSE signals.decision END,
                classification = excluded.classification, onset = excluded.onset,
                priority = excluded.priority, confidence = excluded.confidence, tier = excluded.tier,
                report = excluded.report, updated_at = excluded.updated_at
            """,
            {"id": row.issue_id, "kind": row.classification, "onset": row.onset, "priority": row.priority,
             "confidence": row.confidence, "tier": row.tier, "report": json.dumps(row.report, separators=(",", ":")),
             "created": row.created_at, "updated": row.updated_at},
        )  # fmt: skip
        # Kept on the issue too, where list_issues orders by it with an index (migration 19).
        conn.execute("UPDATE issues SET priority = ? WHERE id = ?", (row.priority, row.issue_id))
        if old_row is None or abs(old_row.priority - row.priority) >= 1.0:
            conn.execute(
                "INSERT INTO signal_priorities (issue_id, at, priority, components) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (issue_id, at) DO UPDATE SET priority = excluded.priority,"
                " components = excluded.components",
                (row.issue_id, row.updated_at, row.priority, json.dumps(components, separators=(",", ":"))),
            )
    return get(store, row.issue_id) or row


def filed(store: Store, issue_id: int) -> dict[str, Any] | None:
    """Where the issue was filed (GitHub or a local file), once it was."""
    row = store.reader().execute("SELECT filed FROM signals WHERE issue_id = ?", (issue_id,)).fetchone()
    return json.loads(row[0]) if row and row[0] else None


def set_filed(store: Store, issue_id: int, where: dict[str, Any]) -> None:
    with store.transaction() as conn:
        conn.execute("UPDATE signals SET filed = ? WHERE issue_id = ?", (json.dumps(where), issue_id))


def get(store: Store, issue_id: int) -> SignalRow | None:
    found = store.reader().execute(f"SELECT {_COLUMNS} FROM signals WHERE issue_id = ?", (issue_id,)).fetchone()
    return _row(found) if found else None


def all_signals(store: Store) -> list[SignalRow]:
    rows = store.reader().execute(f"SELECT {_COLUMNS} FROM signals ORDER BY priority DESC, issue_id")
    return [_row(r) for r in rows]


def actionable_since(store: Store, since: float) -> int:
    row = (
        store.reader()
        .execute("SELECT COUNT(*) FROM signals WHERE classification = 'actionable' AND actionable_at >= ?", (since,))
        .fetchone()
    )
    return int(row[0])


def priority_history(store: Store, issue_id: int) -> list[tuple[float, float, dict[str, float]]]:
    rows = store.reader().execute(
        "SELECT at, priority, components FROM signal_priorities WHERE issue_id = ? ORDER BY at", (issue_id,)
    )
    return [(float(at), float(p), json.loads(c)) for at, p, c in rows]


def decide(store: Store, issue_id: int, decision: str, *, who: str, why: str, at: float) -> Decision:
    """A person approves or rejects a triaged issue; the decision and who made it are kept."""
    if decision not in ("approved", "rejected"):
        raise InvalidArgument("decision", f"{decision[:40]!r} is neither approved nor rejected", "pick one")
    if not who.strip():
        raise InvalidArgument("who", "a decision needs the name of the person making it", "pass --by NAME")
    with store.transaction() as conn:
        found = conn.execute("SELECT classification FROM signals WHERE issue_id = ?", (issue_id,)).fetchone()
        if found is None:
            raise NotFoundError("triaged issue", str(issue_id), "run prodloop triage first; it records each issue")
        conn.execute("UPDATE signals SET decision = ? WHERE issue_id = ?", (decision, issue_id))
        conn.execute(
            "INSERT INTO triage_decisions (issue_id, decision, who, why, classification, at) VALUES (?, ?, ?, ?, ?, ?)",
            (issue_id, decision, who.strip()[:100], why.strip()[:1000], found[0], at),
        )
    return Decision(issue_id, decision, who.strip()[:100], why.strip()[:1000], str(found[0]), at)


def decisions(store: Store) -> list[Decision]:
    rows = store.reader().execute(
        "SELECT issue_id, decision, who, why, classification, at FROM triage_decisions ORDER BY id"
    )
    return [Decision(*r) for r in rows]
