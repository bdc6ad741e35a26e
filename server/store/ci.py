"""CI runs, their test results and failure groups (see `tools/observe/ci_signals.py`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from prodloop.server.store.db import Store


@dataclass(frozen=True, slots=True)
class FailureIn:
    fingerprint: str
    test_id: str
    exception_type: str
    location: str
    frames: list[str]
    message: str


@dataclass(frozen=True, slots=True)
class ResultIn:
    test_id: str
    outcome: str
    reruns: int
    seconds: float
    failure: FailureIn | None


@dataclass(frozen=True, slots=True)
class GroupOut:
    id: int
    test_id: str
    exception_type: str
    location: str
    new: bool
    count: int


@dataclass
class SavedRun:
    run_id: int
    duplicate: bool
    groups: list[GroupOut] = field(default_factory=list)


def save_run(
    store: Store, *, commit: str, branch: str | None, run_url: str | None, job: str | None, digest: str,
    results: list[ResultIn], at: float,
) -> SavedRun:  # fmt: skip
    """One run in one transaction; the same file for the same commit and job again is acknowledged, not counted."""
    with store.transaction() as conn:
        known = conn.execute("SELECT id FROM ci_runs WHERE digest = ?", (digest,)).fetchone()
        if known is not None:
            return SavedRun(int(known[0]), True, _groups_of(conn, int(known[0]), set()))
        run_id = int(conn.execute(
            "INSERT INTO ci_runs (commit_sha, branch, run_url, job, tests, failed, digest, at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (commit, branch, run_url, job, len(results),
             sum(r.outcome in ("failed", "error") for r in results), digest, at),
        ).lastrowid or 0)  # fmt: skip
        new: set[int] = set()
        seen: set[str] = set()
        for r in results:
            if r.test_id in seen:  # a test id twice in one file (parametrized ids cut short): the first counts
                continue
            seen.add(r.test_id)
            failure_id = None
            if r.failure is not None:
                f = r.failure
                row = conn.execute(
                    "INSERT INTO ci_failures (fingerprint, test_id, exception_type, location, frames, message,"
                    " first_seen, last_seen, count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)"
                    " ON CONFLICT (fingerprint) DO UPDATE SET last_seen = excluded.last_seen, count = count + 1,"
                    " message = excluded.message RETURNING id, count",
                    (f.fingerprint, f.test_id, f.exception_type, f.location, json.dumps(f.frames), f.message, at, at),
                ).fetchone()
                failure_id = int(row[0])
                if int(row[1]) == 1:
                    new.add(failure_id)
            conn.execute(
                "INSERT INTO ci_results (run_id, test_id, outcome, reruns, seconds, failure_id)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, r.test_id, r.outcome, r.reruns, r.seconds, failure_id),
            )
        return SavedRun(run_id, False, _groups_of(conn, run_id, new))


def _groups_of(conn: object, run_id: int, new: set[int]) -> list[GroupOut]:
    rows = conn.execute(  # type: ignore[attr-defined]
        "SELECT f.id, f.test_id, f.exception_type, f.location, f.count FROM ci_results r"
        " JOIN ci_failures f ON f.id = r.failure_id WHERE r.run_id = ? ORDER BY f.id",
        (run_id,),
    )
    return [GroupOut(int(i), t, e, loc, int(i) in new, int(n)) for i, t, e, loc, n in rows]


# One row per (test, commit) CI ran it on: whether it was flaky there (failed and passed on the commit, in two runs,
# or passed after reruns in one).
_PER_TEST_COMMIT = """
    SELECT r.test_id AS test_id, c.commit_sha,
           (MAX(r.outcome = 'passed') AND MAX(r.outcome IN ('failed', 'error')))
           OR MAX(r.outcome = 'passed' AND r.reruns > 0) AS flaky
    FROM ci_results r JOIN ci_runs c ON c.id = r.run_id
    WHERE r.outcome != 'skipped'{clause}
    GROUP BY r.test_id, c.commit_sha
"""


def flaky_tests(
    store: Store, *, test_ids: list[str] | None = None, since: float | None = None
) -> list[tuple[str, int, int]]:
    """(test id, commits it was flaky on, commits it ran on) for tests flaky on at least one commit (in the runs
    stored after `since`, when given)."""
    clause, params = "", list[object]()
    if test_ids is not None:
        if not test_ids:
            return []
        clause = f" AND r.test_id IN ({','.join('?' * len(test_ids))})"
        params = list(test_ids)
    if since is not None:
        clause += " AND c.at > ?"
        params.append(since)
    rows = store.reader().execute(
        f"SELECT test_id, SUM(flaky), COUNT(*) FROM ({_PER_TEST_COMMIT.format(clause=clause)})"
        " GROUP BY test_id HAVING SUM(flaky) > 0 ORDER BY SUM(flaky) * 1.0 / COUNT(*) DESC, test_id",
        params,
    )
    return [(str(t), int(f), int(n)) for t, f, n in rows]


def flake_counts(store: Store) -> tuple[int, int, int]:
    """(CI runs, (test, commit) pairs run, of them flaky)."""
    conn = store.reader()
    runs = int(conn.execute("SELECT count(*) FROM ci_runs").fetchone()[0])
    pairs, flaky = conn.execute(
        f"SELECT count(*), coalesce(SUM(flaky), 0) FROM ({_PER_TEST_COMMIT.format(clause='')})"
    ).fetchone()
    return runs, int(pairs), int(flaky)


def failing_run_urls(store: Store, test_ids: list[str], *, limit: int = 10) -> list[str]:
    """The URLs of CI runs (newest first) in which any of `test_ids` failed or errored."""
    if not test_ids:
        return []
    rows = store.reader().execute(
        "SELECT c.run_url FROM ci_results r JOIN ci_runs c ON c.id = r.run_id"
        f" WHERE r.test_id IN ({','.join('?' * len(test_ids))}) AND r.outcome IN ('failed', 'error')"
        " AND c.run_url IS NOT NULL GROUP BY c.run_url ORDER BY max(c.at) DESC, max(c.id) DESC LIMIT ?",
        [*test_ids, limit],
    )
    return [str(row[0]) for row in rows]


def results_since(store: Store, test_ids: list[str], since: float) -> list[tuple[int, str, int]]:
    """(run id, outcome, reruns) of `test_ids` in the CI runs stored after `since`, oldest run first."""
    if not test_ids:
        return []
    rows = store.reader().execute(
        "SELECT r.run_id, r.outcome, r.reruns FROM ci_results r JOIN ci_runs c ON c.id = r.run_id"
        f" WHERE r.test_id IN ({','.join('?' * len(test_ids))}) AND c.at > ? ORDER BY c.at, c.id",
        [*test_ids, since],
    )
    return [(int(run), str(outcome), int(reruns)) for run, outcome, reruns in rows]
