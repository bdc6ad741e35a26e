"""Release health and transaction performance per hour and per day: written with the events of the same envelope,
read by the reliability history, hours pruned after `retention.hourly_days` (store/retention.py). Counts only; no
session or transaction is kept."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

from prodloop.server.store.engine import Conn
from prodloop.server.store.records import SessionCounts, TransactionSample

BASE = 2 ** (1 / 8)  # bucket i holds durations in (BASE**(i-1), BASE**i] ms


def duration_bucket(ms: float) -> int:
    return 0 if ms <= 1 else math.ceil(math.log(ms) / math.log(BASE))


def bucket_middle_ms(index: int) -> float:
    """The geometric middle of a bucket: within BASE**0.5 (~4.4%) of every duration in it."""
    return 1.0 if index <= 0 else float(BASE ** (index - 0.5))


def quantile(histogram: dict[int, int], q: float) -> float | None:
    """The q-quantile (0..1) of the durations in a histogram, as its bucket's middle in ms."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return round(bucket_middle_ms(index), 3)
    return round(bucket_middle_ms(max(histogram)), 3)


@dataclass(frozen=True, slots=True)
class ReleaseHealth:
    release: str
    environment: str
    started: int
    errored: int
    crashed: int
    abnormal: int
    users: int

    @property
    def crash_free_rate(self) -> float | None:
        return round(1 - self.crashed / self.started, 4) if self.started else None


@dataclass(frozen=True, slots=True)
class TransactionStats:
    name: str
    release: str
    environment: str
    count: int
    failed: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


def write(conn: Conn, sessions: Sequence[SessionCounts], transactions: Sequence[TransactionSample]) -> None:
    # Each session update counts in its hour and in its day; distinct users are kept per day.
    for s in sessions:
        key = (s.project_id, s.release, s.environment)
        counts = (s.started, s.errored, s.crashed, s.abnormal)
        for table, column, bucket in (("session_hours", "hour", s.bucket), ("session_days", "day", s.bucket // 24)):
            conn.execute(
                f"""
                INSERT INTO {table} (project_id, release, environment, {column}, started, errored, crashed, abnormal)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (project_id, release, environment, {column}) DO UPDATE SET
                    started = started + excluded.started, errored = errored + excluded.errored,
                    crashed = crashed + excluded.crashed, abnormal = abnormal + excluded.abnormal
                """,
                (*key, bucket, *counts),
            )
        if s.user_hash is not None:
            day_key = (*key, s.bucket // 24)
            new = conn.execute(
                "INSERT OR IGNORE INTO session_day_users (project_id, release, environment, day, user_hash)"
                " VALUES (?, ?, ?, ?, ?)",
                (*day_key, s.user_hash),
            ).rowcount
            if new:
                conn.execute(
                    "UPDATE session_days SET users = users + 1"
                    " WHERE project_id = ? AND release = ? AND environment = ? AND day = ?",
                    day_key,
                )
    # Each transaction counts in its hour and, rolled up as it is written, in its day: a window of days reads
    # day rows, 24 times fewer than hours.
    for table, column, per in (("transaction_hours", "hour", 1), ("transaction_days", "day", 24)):
        merged: dict[tuple[int, str, str, str, int], tuple[int, int, dict[int, int]]] = {}
        for t in transactions:
            key5 = (t.project_id, t.name, t.release, t.environment, t.bucket // per)
            count, failed, hist = merged.get(key5, (0, 0, {}))
            index = duration_bucket(t.duration_ms)
            hist[index] = hist.get(index, 0) + 1
            merged[key5] = (count + 1, failed + int(t.failed), hist)
        for key5, (count, failed, hist) in merged.items():
            row = conn.execute(
                f"SELECT durations FROM {table}"
                f" WHERE project_id = ? AND name = ? AND release = ? AND environment = ? AND {column} = ?",
                key5,
            ).fetchone()
            if row is not None:
                for index, n in json.loads(row[0]).items():
                    hist[int(index)] = hist.get(int(index), 0) + n
            conn.execute(
                f"""
                INSERT INTO {table} (project_id, name, release, environment, {column}, count, failed, durations)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (project_id, name, release, environment, {column}) DO UPDATE SET
                    count = count + excluded.count, failed = failed + excluded.failed, durations = excluded.durations
                """,
                (*key5, count, failed, json.dumps(hist, separators=(",", ":"))),
            )


def write_packages(conn: Conn, project_id: int, release: str, packages: str, seen_at: float) -> None:
    """The release's installed packages as its first event reported them; a different list for the same release
    (a host that differs, or an event that lies) is counted as a conflict, and triage then trusts neither."""
    conn.execute(
        """
        INSERT INTO release_packages (project_id, release, packages, seen_at) VALUES (?, ?, ?, ?)
        ON CONFLICT (project_id, release) DO UPDATE SET
            conflicts = conflicts + CASE WHEN excluded.packages != release_packages.packages THEN 1 ELSE 0 END,
            seen_at = min(release_packages.seen_at, excluded.seen_at)
        """,
        (project_id, release, packages, seen_at),
    )


def release_health(conn: Conn, *, since_hour: int, environment: str | None = None) -> list[ReleaseHealth]:
    """Per release and environment since `since_hour`: whole days from the day rows, the first partial day from
    hours; distinct users per day, summed over the days (the first partial day's users count whole)."""
    first_day = -(-since_hour // 24)
    rows = conn.execute(
        """
        SELECT release, environment, SUM(started), SUM(errored), SUM(crashed), SUM(abnormal), SUM(users)
        FROM (
            SELECT release, environment, day * 24 AS hour, started, errored, crashed, abnormal, users
            FROM session_days WHERE day >= ? AND (? IS NULL OR environment = ?)
            UNION ALL
            SELECT release, environment, hour, started, errored, crashed, abnormal, 0 FROM session_hours
            WHERE hour >= ? AND hour < ? AND (? IS NULL OR environment = ?)
            UNION ALL
            SELECT release, environment, day * 24, 0, 0, 0, 0, users FROM session_days
            WHERE day = ? AND day < ? AND (? IS NULL OR environment = ?)
        ) AS rows
        GROUP BY release, environment ORDER BY MIN(hour)
        """,
        (first_day, environment, environment, since_hour, first_day * 24, environment, environment,
         since_hour // 24, first_day, environment, environment),
    ).fetchall()  # fmt: skip
    return [ReleaseHealth(*row) for row in rows]


def transaction_stats(
    conn: Conn, *, since_hour: int, environment: str | None = None, names: Sequence[str] | None = None
) -> list[TransactionStats]:
    """Per name, release and environment since `since_hour`: whole days from the day rows, the first partial day
    from hours."""
    if names is not None and not names:
        return []
    first_day = -(-since_hour // 24)
    named = f" AND name IN ({','.join('?' * len(names))})" if names is not None else ""
    rows = conn.execute(
        f"""
        SELECT name, release, environment, count, failed, durations FROM transaction_days
        WHERE day >= ? AND (? IS NULL OR environment = ?){named}
        UNION ALL
        SELECT name, release, environment, count, failed, durations FROM transaction_hours
        WHERE hour >= ? AND hour < ? AND (? IS NULL OR environment = ?){named}
        """,
        [first_day, environment, environment, *(names or []), since_hour, first_day * 24, environment, environment,
         *(names or [])],
    ).fetchall()  # fmt: skip
    totals: dict[tuple[str, str, str], tuple[int, int, dict[int, int]]] = {}
    for name, release, env, count, failed, durations in rows:
        c, f, hist = totals.get((name, release, env), (0, 0, {}))
        for index, n in json.loads(durations).items():
            hist[int(index)] = hist.get(int(index), 0) + n
        totals[(name, release, env)] = (c + count, f + failed, hist)
    return [
        TransactionStats(name, release, env, c, f, quantile(h, 0.5), quantile(h, 0.95), quantile(h, 0.99))
        for (name, release, env), (c, f, h) in sorted(totals.items())
    ]


def release_packages(
    conn: Conn, project_id: int, release: str, *, consistent_only: bool = False
) -> dict[str, str] | None:
    """A release's packages; with `consistent_only`, None when its events disagreed about them."""
    row = conn.execute(
        "SELECT packages, conflicts FROM release_packages WHERE project_id = ? AND release = ?", (project_id, release)
    ).fetchone()
    if row is None or (consistent_only and row[1]):
        return None
    return dict(json.loads(row[0]))
