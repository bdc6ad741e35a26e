"""The closing stage of the loop, kept in the store: merges of prodloop's PRs and the deploys that carry them, the
verdicts after a deploy, andon cords, agents' reported costs, budget resets by a person, and who changed the code an
issue was attributed to.

Every write that a decision rests on is one transaction: an andon cord is pulled once per deploy, a verdict's effect
on the lineage (its no-effect streak, a halt) lands with the verdict.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from typing import Any

from prodloop.server.errors import InvalidArgument, NotFoundError
from prodloop.server.store.db import Store, where
from prodloop.server.store.engine import Conn
from prodloop.server.store.policy import open_escalation


@dataclass(frozen=True, slots=True)
class Merge:
    pull_request_id: int
    merge_commit: str
    merged_at: float
    how: str  # github, webhook, ancestor (the PR's commit itself), patch (squash or rebase: same change), trailer
    deploy_id: int | None  # the first deploy that carried it (its time is the deploy's)


@dataclass(frozen=True, slots=True)
class VerdictRow:
    id: int
    issue_id: int
    pull_request_id: int
    verdict: str
    numbers: dict[str, Any]
    at: float


@dataclass(frozen=True, slots=True)
class Cord:
    id: int
    deploy_id: int
    release: str
    environment: str
    commit_sha: str
    previous_commit: str | None
    paths: list[str]
    evidence: list[dict[str, Any]]
    blast_radius: dict[str, Any]
    revert: dict[str, Any] | None
    escalation: dict[str, Any] | None
    pulled_at: float
    released_at: float | None
    released_by: str | None
    release_why: str | None

    @property
    def active(self) -> bool:
        return self.released_at is None


@dataclass(frozen=True, slots=True)
class Lineage:
    """The stopping state of an issue's lineage: what it has spent and whether it is halted."""

    issue_id: int
    runs: int
    cpu_seconds: float
    tokens: int
    cost_usd: float
    no_effect_streak: int
    halted_at: float | None
    halted_why: str | None


# -- merges -------------------------------------------------------------------------------


def record_merge(store: Store, pull_request_id: int, *, merge_commit: str, merged_at: float, how: str) -> bool:
    """Record that a PR was merged (the first detection wins); True when it is new."""
    with store.transaction() as conn:
        done = conn.execute(
            "INSERT OR IGNORE INTO merges (pull_request_id, merge_commit, merged_at, how) VALUES (?, ?, ?, ?)",
            (pull_request_id, merge_commit, merged_at, how),
        ).rowcount
    return bool(done)


def record_deployed(store: Store, pull_request_id: int, *, deploy_id: int) -> None:
    with store.transaction() as conn:
        conn.execute(
            "UPDATE merges SET deploy_id = ? WHERE pull_request_id = ? AND deploy_id IS NULL",
            (deploy_id, pull_request_id),
        )


def merges(store: Store) -> dict[int, Merge]:
    rows = store.reader().execute("SELECT pull_request_id, merge_commit, merged_at, how, deploy_id FROM merges")
    return {row[0]: Merge(*row) for row in rows}


def pull_request_by_number(store: Store, number: int) -> int | None:
    row = (
        store.reader()
        .execute(
            "SELECT id FROM pull_requests WHERE number = ? AND mode = 'github' ORDER BY id DESC LIMIT 1", (number,)
        )
        .fetchone()
    )
    return int(row[0]) if row else None


# -- verdicts -----------------------------------------------------------------------------


def latest_verdict(store: Store, pull_request_id: int) -> VerdictRow | None:
    row = (
        store.reader()
        .execute(
            "SELECT id, issue_id, pull_request_id, verdict, numbers, at FROM verdicts WHERE pull_request_id = ?"
            " ORDER BY id DESC LIMIT 1",
            (pull_request_id,),
        )
        .fetchone()
    )
    return _verdict(row) if row else None


def verdicts(store: Store, *, issue_id: int | None = None) -> list[VerdictRow]:
    clause, params = where(("issue_id = ?", issue_id))
    rows = store.reader().execute(
        f"SELECT id, issue_id, pull_request_id, verdict, numbers, at FROM verdicts {clause} ORDER BY id", params
    )
    return [_verdict(row) for row in rows]


def save_verdict(
    store: Store, issue_id: int, pull_request_id: int, verdict: str, numbers: dict[str, Any], at: float,
    *, max_no_effect: int,
) -> tuple[bool, Lineage]:  # fmt: skip
    """Keep a verdict when it differs from the PR's last one, with its effect on the lineage in the same
    transaction: `no_effect` adds one to the streak and halts the lineage at `max_no_effect`, `fixed` ends the
    streak. Returns (whether it changed, the lineage after)."""
    with store.transaction() as conn:
        last = conn.execute(
            "SELECT verdict FROM verdicts WHERE pull_request_id = ? ORDER BY id DESC LIMIT 1", (pull_request_id,)
        ).fetchone()
        changed = last is None or last[0] != verdict
        if changed:
            conn.execute(
                "INSERT INTO verdicts (issue_id, pull_request_id, verdict, numbers, at) VALUES (?, ?, ?, ?, ?)",
                (issue_id, pull_request_id, verdict, json.dumps(numbers, sort_keys=True), at),
            )
            record = conn.execute(
                "SELECT id, record FROM provenance WHERE pull_request_id = ?", (pull_request_id,)
            ).fetchone()
            if record is not None:  # the provenance record carries the verdict it earned
                body = json.loads(record[1])
                body["verdict"] = {"verdict": verdict, "at": at, **{k: numbers.get(k) for k in _VERDICT_KEYS}}
                conn.execute("UPDATE provenance SET record = ? WHERE id = ?", (json.dumps(body, sort_keys=True),
                                                                                 record[0]))  # fmt: skip
            if verdict == "no_effect":
                conn.execute(
                    "INSERT INTO budgets (issue_id, no_effect_streak) VALUES (?, 1) ON CONFLICT (issue_id)"
                    " DO UPDATE SET no_effect_streak = no_effect_streak + 1",
                    (issue_id,),
                )
                streak = conn.execute("SELECT no_effect_streak FROM budgets WHERE issue_id = ?", (issue_id,)).fetchone()
                if streak[0] >= max_no_effect:
                    why = f"{streak[0]} consecutive fixes had no effect on the production signal"
                    conn.execute(
                        "UPDATE budgets SET halted_at = coalesce(halted_at, ?), halted_why = coalesce(halted_why, ?)"
                        " WHERE issue_id = ?",
                        (at, why, issue_id),
                    )
                    open_escalation(conn, issue_id, "no-effect", why, at)
            elif verdict == "fixed":
                conn.execute("UPDATE budgets SET no_effect_streak = 0 WHERE issue_id = ?", (issue_id,))
    return changed, lineage(store, issue_id)


_VERDICT_KEYS = ("metric", "ratio", "p_value", "events_after", "expected_after", "deploy")


def _verdict(row: Any) -> VerdictRow:
    return VerdictRow(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5])


# -- lineage budgets ------------------------------------------------------------------------


def lineage(store: Store, issue_id: int, conn: Conn | None = None) -> Lineage:
    """The lineage's counters (read on `conn`, a transaction's connection, when given)."""
    row = (
        (conn or store.reader())
        .execute(
            "SELECT runs, cpu_seconds, tokens, cost_usd, no_effect_streak, halted_at, halted_why FROM budgets"
            " WHERE issue_id = ?",
            (issue_id,),
        )
        .fetchone()
    )
    return Lineage(issue_id, *row) if row else Lineage(issue_id, 0, 0.0, 0, 0.0, 0, None, None)


def add_cost(
    store: Store, issue_id: int, *, tokens: int, cost_usd: float, cpu_seconds: float, reporter: str, note: str,
    at: float,
) -> Lineage:  # fmt: skip
    """Add what an agent (or the headless loop) reports it spent on the issue: kept itemised and summed."""
    store.get_issue(issue_id)
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO agent_costs (issue_id, tokens, cost_usd, cpu_seconds, reporter, note, at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (issue_id, tokens, cost_usd, cpu_seconds, reporter, note, at),
        )
        conn.execute(
            "INSERT INTO budgets (issue_id, tokens, cost_usd, cpu_seconds) VALUES (?, ?, ?, ?) ON CONFLICT (issue_id)"
            " DO UPDATE SET tokens = tokens + excluded.tokens, cost_usd = cost_usd + excluded.cost_usd,"
            " cpu_seconds = cpu_seconds + excluded.cpu_seconds",
            (issue_id, tokens, cost_usd, cpu_seconds),
        )
    return lineage(store, issue_id)


def reset(store: Store, issue_id: int, *, who: str, why: str, at: float) -> Lineage:
    """A person starts the lineage's counters again (runs, synthesis, CPU, tokens, money, the no-effect streak, a
    halt): recorded with who, why and what the counters held, and the lineage's escalations closed."""
    who, why = person(who, why)
    store.get_issue(issue_id)
    with store.transaction() as conn:
        before = lineage(store, issue_id, conn)  # what the reset zeroes, read under the write lock
        conn.execute(
            "INSERT INTO budget_resets (issue_id, who, why, before, at) VALUES (?, ?, ?, ?, ?)",
            (issue_id, who, why, json.dumps({
                "runs": before.runs, "cpu_seconds": before.cpu_seconds, "tokens": before.tokens,
                "cost_usd": before.cost_usd, "no_effect_streak": before.no_effect_streak,
                "halted_why": before.halted_why,
            }), at),
        )  # fmt: skip
        conn.execute(
            "INSERT INTO budgets (issue_id, reset_at) VALUES (?, ?) ON CONFLICT (issue_id) DO UPDATE SET"
            " runs = 0, synthesis_attempts = 0, cpu_seconds = 0, tokens = 0, cost_usd = 0, no_effect_streak = 0,"
            " exhausted_at = NULL, halted_at = NULL, halted_why = NULL, reset_at = excluded.reset_at",
            (issue_id, at),
        )
        conn.execute(
            "UPDATE escalations SET resolved_at = ? WHERE issue_id = ? AND resolved_at IS NULL"
            " AND kind IN ('budget', 'no-effect', 'cost')",
            (at, issue_id),
        )
    return lineage(store, issue_id)


def resets(store: Store, issue_id: int) -> list[dict[str, Any]]:
    rows = store.reader().execute(
        "SELECT who, why, before, at FROM budget_resets WHERE issue_id = ? ORDER BY id", (issue_id,)
    )
    return [{"who": r[0], "why": r[1], "before": json.loads(r[2]), "at": r[3]} for r in rows]


def person(who: str, why: str) -> tuple[str, str]:
    """A person's decision needs their name and their reason (both kept)."""
    if not who.strip():
        raise InvalidArgument("who", "a person's decision needs their name", "pass --by NAME")
    if not why.strip():
        raise InvalidArgument("why", "a person's decision needs a reason", "pass --why TEXT")
    return who.strip()[:100], why.strip()[:1000]


# -- andon cords ----------------------------------------------------------------------------

_CORD_COLUMNS = (
    "id, deploy_id, release, environment, commit_sha, previous_commit, paths, evidence, blast_radius, revert,"
    " escalation, pulled_at, released_at, released_by, release_why"
)


def pull_cord(
    store: Store, *, deploy_id: int, release: str, environment: str, commit_sha: str, previous_commit: str | None,
    paths: list[str], evidence: list[dict[str, Any]], blast_radius: dict[str, Any], at: float,
) -> Cord | None:  # fmt: skip
    """Pull the cord on a deploy, once (a deploy already pulled, even if released since, is not pulled again):
    the new cord, or None. Its escalation for a person opens in the same transaction."""
    with store.transaction() as conn:
        new = conn.execute(
            "INSERT OR IGNORE INTO andon_cords (deploy_id, release, environment, commit_sha, previous_commit, paths,"
            " evidence, blast_radius, pulled_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (deploy_id, release, environment, commit_sha, previous_commit, json.dumps(paths),
             json.dumps(evidence), json.dumps(blast_radius), at),
        ).fetchone()  # fmt: skip
        if new is None:
            return None
        cord_id = int(new[0])
        reason = f"andon cord {cord_id}: deploy {release[:80]} to {environment[:40]} made things worse"
        conn.execute(
            "INSERT INTO escalations (issue_id, kind, reason, created_at) VALUES (NULL, 'andon', ?, ?)", (reason, at)
        )
    return cord(store, cord_id)


def set_cord_outcome(store: Store, cord_id: int, *, revert: dict[str, Any] | None = None,
                     escalation: dict[str, Any] | None = None) -> None:  # fmt: skip
    with store.transaction() as conn:
        if revert is not None:
            conn.execute("UPDATE andon_cords SET revert = ? WHERE id = ?", (json.dumps(revert), cord_id))
        if escalation is not None:
            conn.execute("UPDATE andon_cords SET escalation = ? WHERE id = ?", (json.dumps(escalation), cord_id))


def cord(store: Store, cord_id: int) -> Cord:
    row = store.reader().execute(f"SELECT {_CORD_COLUMNS} FROM andon_cords WHERE id = ?", (cord_id,)).fetchone()
    if row is None:
        raise NotFoundError("andon cord", str(cord_id), "run prodloop andon status for the cords on record")
    return _cord(row)


def cords(store: Store, *, active_only: bool = False) -> list[Cord]:
    clause = "WHERE released_at IS NULL" if active_only else ""
    rows = store.reader().execute(f"SELECT {_CORD_COLUMNS} FROM andon_cords {clause} ORDER BY id")
    return [_cord(row) for row in rows]


def corded_deploys(store: Store) -> set[int]:
    return {row[0] for row in store.reader().execute("SELECT deploy_id FROM andon_cords")}


def release_cord(store: Store, cord_id: int, *, who: str, why: str, at: float) -> Cord:
    """A person releases a cord: quarantine lifted, its escalation closed, who and why kept."""
    who, why = person(who, why)
    current = cord(store, cord_id)
    if not current.active:
        return current
    with store.transaction() as conn:
        conn.execute(
            "UPDATE andon_cords SET released_at = ?, released_by = ?, release_why = ? WHERE id = ?"
            " AND released_at IS NULL",
            (at, who, why, cord_id),
        )
        conn.execute(
            "UPDATE escalations SET resolved_at = ? WHERE kind = 'andon' AND resolved_at IS NULL AND reason LIKE ?",
            (at, f"andon cord {cord_id}:%"),
        )
    return cord(store, cord_id)


def _cord(row: Any) -> Cord:
    return Cord(
        row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6]), json.loads(row[7]), json.loads(row[8]),
        json.loads(row[9]) if row[9] else None, json.loads(row[10]) if row[10] else None, row[11], row[12],
        row[13], row[14],
    )  # fmt: skip


# -- who changed it -------------------------------------------------------------------------


def attribute(
    store: Store, issue_id: int, *, deploy_id: int | None, commit_sha: str, author: str, minutes_after: float,
    at: float,
) -> bool:  # fmt: skip
    """Record the commit (and its author) an issue was attributed to, once; True when new."""
    with store.transaction() as conn:
        done = conn.execute(
            "INSERT OR IGNORE INTO attributions (issue_id, deploy_id, commit_sha, author, minutes_after, at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (issue_id, deploy_id, commit_sha, author, minutes_after, at),
        ).rowcount
    return bool(done)


def attribution(store: Store, issue_id: int) -> dict[str, Any] | None:
    row = (
        store.reader()
        .execute(
            "SELECT deploy_id, commit_sha, author, minutes_after, notified, at FROM attributions WHERE issue_id = ?",
            (issue_id,),
        )
        .fetchone()
    )
    if row is None:
        return None
    return {"deploy_id": row[0], "commit": row[1], "author": row[2], "minutes_after": row[3],
            "notified": json.loads(row[4]) if row[4] else None, "at": row[5]}  # fmt: skip


def set_notified(store: Store, issue_id: int, where_: dict[str, Any]) -> None:
    with store.transaction() as conn:
        conn.execute("UPDATE attributions SET notified = ? WHERE issue_id = ?", (json.dumps(where_), issue_id))


# -- rates ---------------------------------------------------------------------------------


def exposure_per_hour(
    store: Store, kind: str, first_hour: int, last_hour: int, environment: str | None, *, releases: list[str]
) -> dict[int, int]:
    """Sessions started (`sessions`) or transactions (`transactions`) per hour in [first_hour, last_hour] of the
    given releases (the operator's: a sender may claim any release), of one environment when given; hours without
    any left out."""
    if not releases:
        return {}
    table, column = {"sessions": ("session_hours", "started"), "transactions": ("transaction_hours", "count")}[kind]
    clause, params = where(("hour >= ?", first_hour), ("hour <= ?", last_hour), ("environment = ?", environment))
    marks = ",".join("?" * len(releases))
    rows = store.reader().execute(
        f"SELECT hour, SUM({column}) FROM {table} {clause} AND release IN ({marks}) GROUP BY hour", [*params, *releases]
    )
    return {int(h): int(n) for h, n in rows if n}


def events_between(
    store: Store, issue_ids: list[int], start: float, end: float, *, environment: str | None = None
) -> dict[int, int]:
    """Events of each issue timestamped in [start, end) (of one environment, events naming none included)."""
    env = " AND (environment = ? OR environment IS NULL)" if environment is not None else ""
    out = dict.fromkeys(issue_ids, 0)
    for first in range(0, len(issue_ids), 500):
        part = issue_ids[first : first + 500]
        rows = store.reader().execute(
            f"SELECT issue_id, count(*) FROM events WHERE timestamp >= ? AND timestamp < ?{env}"
            f" AND issue_id IN ({','.join('?' * len(part))}) GROUP BY issue_id",
            [start, end, *([environment] if environment is not None else []), *part],
        )
        out.update({int(i): int(n) for i, n in rows})
    return out


def users_between(
    store: Store, issue_ids: list[int], start: float, end: float, *, environment: str | None = None
) -> int:
    """Distinct users behind the issues' events in [start, end); where no event names a user (an SDK without user
    context), each event counts as one."""
    if not issue_ids:
        return 0
    env = " AND (environment = ? OR environment IS NULL)" if environment is not None else ""
    row = (
        store.reader()
        .execute(
            f"SELECT count(DISTINCT user_hash), count(*) FROM events WHERE timestamp >= ? AND timestamp < ?{env}"
            f" AND issue_id IN ({','.join('?' * len(issue_ids))})",
            [start, end, *([environment] if environment is not None else []), *issue_ids],
        )
        .fetchone()
    )
    return int(row[0]) or int(row[1])


def release_sessions(
    store: Store, release: str, environment: str, first_hour: int, last_hour: int
) -> tuple[int, int, int]:
    """(started, errored, crashed) sessions of one release and environment over [first_hour, last_hour]."""
    row = (
        store.reader()
        .execute(
            "SELECT coalesce(SUM(started), 0), coalesce(SUM(errored), 0), coalesce(SUM(crashed), 0) FROM session_hours"
            " WHERE release = ? AND environment = ? AND hour >= ? AND hour <= ?",
            (release, environment, first_hour, last_hour),
        )
        .fetchone()
    )
    return int(row[0]), int(row[1]), int(row[2])


def repo_path(path: str) -> str:
    """A path as the repository names it: `./` prefixes and `a/./b`, `a//b` folded (a leading dot of a name such as
    `.github` kept)."""
    text = path.replace("\\", "/")
    while text.startswith("./"):
        text = text[2:]
    return posixpath.normpath(text) if text else text


def issues_on_files(store: Store, files: list[str], *, seen_since: float) -> dict[int, tuple[str, float]]:
    """Issues seen since `seen_since` with an in-app frame in one of `files` (repository paths; a frame's file name
    may be the path or end with /path): id -> (title, first_seen)."""
    if not files:
        return {}
    wanted = {repo_path(f) for f in files}
    out: dict[int, tuple[str, float]] = {}
    rows = store.reader().execute(
        "SELECT DISTINCT i.id, i.title, i.first_seen, f.filename FROM issues i JOIN issue_frames f ON f.issue_id = i.id"
        " WHERE i.last_seen >= ?",
        (seen_since,),
    )
    for issue_id, title, first_seen, filename in rows:
        name = repo_path(str(filename))
        if name in wanted or any(name.endswith("/" + path) for path in wanted):
            out[int(issue_id)] = (str(title), float(first_seen))
    return out


def issue_files(store: Store, issue_id: int) -> list[str]:
    rows = store.reader().execute("SELECT DISTINCT filename FROM issue_frames WHERE issue_id = ?", (issue_id,))
    return [str(r[0]) for r in rows]


def unnotified_attributions(store: Store) -> list[int]:
    return [int(r[0]) for r in store.reader().execute("SELECT issue_id FROM attributions WHERE notified IS NULL")]
