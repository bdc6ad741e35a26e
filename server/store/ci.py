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
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (commit, branch, run_url, job, len(results),
             sum(r.outcome in ("failed", "error") for r in results), digest, at),
        ).fetchone()[0])  # fmt: skip
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


# One row per (test, commit) CI ran it on: whether it was flaky there, judged within one job (it failed and passed
# in two runs of the same job, or passed after reruns in one): failing in every run of one job (py39) while passing
# in another (py312) is an environment's failure, not a flake.
_PER_TEST_COMMIT = """
    SELECT test_id, commit_sha, MAX(flaky) AS flaky FROM (
        SELECT r.test_id AS test_id, c.commit_sha AS commit_sha,
               CASE WHEN (MAX(CASE WHEN r.outcome = 'passed' THEN 1 ELSE 0 END) = 1
                          AND MAX(CASE WHEN r.outcome IN ('failed', 'error') THEN 1 ELSE 0 END) = 1)
                         OR MAX(CASE WHEN r.outcome = 'passed' AND r.reruns > 0 THEN 1 ELSE 0 END) = 1
                    THEN 1 ELSE 0 END AS flaky
        FROM ci_results r JOIN ci_runs c ON c.id = r.run_id
        WHERE r.outcome != 'skipped'{clause}
        GROUP BY r.test_id, c.commit_sha, coalesce(c.job, '')
    ) AS per_job GROUP BY test_id, commit_sha
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
        f"SELECT test_id, SUM(flaky), COUNT(*) FROM ({_PER_TEST_COMMIT.format(clause=clause)}) AS t"
        " GROUP BY test_id HAVING SUM(flaky) > 0 ORDER BY SUM(flaky) * 1.0 / COUNT(*) DESC, test_id",
        params,
    )
    return [(str(t), int(f), int(n)) for t, f, n in rows]


def flake_counts(store: Store) -> tuple[int, int, int]:
    """(CI runs, (test, commit) pairs run, of them flaky)."""
    conn = store.reader()
    runs = int(conn.execute("SELECT count(*) FROM ci_runs").fetchone()[0])
    pairs, flaky = conn.execute(
        f"SELECT count(*), coalesce(SUM(flaky), 0) FROM ({_PER_TEST_COMMIT.format(clause='')}) AS t"
    ).fetchone()
    return runs, int(pairs), int(flaky)


@dataclass(frozen=True, slots=True)
class FailureRow:
    id: int
    test_id: str
    exception_type: str
    location: str
    frames: list[str]
    message: str
    first_seen: float
    last_seen: float
    count: int


def failure(store: Store, failure_id: int) -> FailureRow | None:
    row = (
        store.reader()
        .execute(
            "SELECT id, test_id, exception_type, location, frames, message, first_seen, last_seen, count"
            " FROM ci_failures WHERE id = ?",
            (failure_id,),
        )
        .fetchone()
    )
    if row is None:
        return None
    return FailureRow(int(row[0]), row[1], row[2], row[3], json.loads(row[4]), row[5], row[6], row[7], int(row[8]))


@dataclass(frozen=True, slots=True)
class TestRun:
    commit: str
    job: str
    branch: str | None
    outcome: str
    reruns: int
    failure_id: int | None
    run_url: str | None
    at: float


def runs_of_test(store: Store, test_id: str) -> list[TestRun]:
    """Every stored result of one test, oldest first."""
    rows = store.reader().execute(
        "SELECT c.commit_sha, coalesce(c.job, ''), c.branch, r.outcome, r.reruns, r.failure_id, c.run_url, c.at"
        " FROM ci_results r JOIN ci_runs c ON c.id = r.run_id WHERE r.test_id = ? ORDER BY c.at, c.id",
        (test_id,),
    )
    return [TestRun(str(c), str(j), b, str(o), int(n), f, u, float(a)) for c, j, b, o, n, f, u, a in rows]


def decide(store: Store, failure_id: int, *, kind: str, by: str, why: str, at: float) -> None:
    """A person's classification of a failure group; the newest one stands."""
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO ci_verdicts (failure_id, kind, decided_by, why, at) VALUES (?, ?, ?, ?, ?)",
            (failure_id, kind, by, why, at),
        )


def decision(store: Store, failure_id: int) -> tuple[str, str, str, float] | None:
    """(kind, by, why, at) of the newest decision of a person on the failure, if any."""
    row = (
        store.reader()
        .execute(
            "SELECT kind, decided_by, why, at FROM ci_verdicts WHERE failure_id = ? ORDER BY id DESC LIMIT 1",
            (failure_id,),
        )
        .fetchone()
    )
    return (str(row[0]), str(row[1]), str(row[2]), float(row[3])) if row else None


def save_selection(store: Store, *, base: str, head: str, selected: list[str], test_files: int, at: float) -> None:
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO ci_selections (base, head, selected, test_files, at) VALUES (?, ?, ?, ?, ?)",
            (base, head, json.dumps(selected), test_files, at),
        )


def selection_savings(store: Store) -> tuple[int, float, float]:
    """Over the selections whose head CI also ran in full: (selections, seconds of the selected test files,
    seconds of every test) on those heads (the newest selection of each head counts)."""
    conn = store.reader()
    picks = conn.execute(
        "SELECT head, selected FROM ci_selections s WHERE id = (SELECT max(id) FROM ci_selections WHERE head = s.head)"
    ).fetchall()
    counted, chosen, total = 0, 0.0, 0.0
    for head, selected in picks:
        files = set(json.loads(selected))
        rows = conn.execute(
            "SELECT r.test_id, max(r.seconds) FROM ci_results r JOIN ci_runs c ON c.id = r.run_id"
            " WHERE c.commit_sha = ? GROUP BY r.test_id",
            (head,),
        ).fetchall()
        if not rows:
            continue
        counted += 1
        for test_id, seconds in rows:
            total += float(seconds)
            if test_file(str(test_id)) in files:
                chosen += float(seconds)
    return counted, chosen, total


def test_file(test_id: str) -> str:
    """The file a JUnit test id names: `tests.test_x::test_y` or `tests.test_x.TestC::test_y` -> tests/test_x.py
    (a class's dotted part is dropped: module names are lower case by convention, classes capitalized)."""
    module = test_id.split("::", 1)[0]
    parts = module.split(".")
    while len(parts) > 1 and parts[-1][:1].isupper():
        parts.pop()
    return "/".join(parts) + ".py"


def failures(store: Store, *, limit: int) -> list[FailureRow]:
    rows = store.reader().execute(
        "SELECT id, test_id, exception_type, location, frames, message, first_seen, last_seen, count"
        " FROM ci_failures ORDER BY last_seen DESC, id DESC LIMIT ?",
        (limit,),
    )
    return [FailureRow(int(r[0]), r[1], r[2], r[3], json.loads(r[4]), r[5], r[6], r[7], int(r[8])) for r in rows]


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


def results_since(store: Store, test_ids: list[str], since: float) -> list[tuple[int, str, int, str]]:
    """(run id, outcome, reruns, commit) of `test_ids` in the CI runs stored after `since`, oldest run first."""
    if not test_ids:
        return []
    rows = store.reader().execute(
        "SELECT r.run_id, r.outcome, r.reruns, c.commit_sha FROM ci_results r JOIN ci_runs c ON c.id = r.run_id"
        f" WHERE r.test_id IN ({','.join('?' * len(test_ids))}) AND c.at > ? ORDER BY c.at, c.id",
        [*test_ids, since],
    )
    return [(int(run), str(outcome), int(reruns), str(commit)) for run, outcome, reruns, commit in rows]
