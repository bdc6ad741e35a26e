"""Bounded storage: hour rows fold into days, day rows and raw events age out (settings `retention.*`).

What stays after a prune answers every query of the history: issues keep their counts, distinct users and frames;
events per day of an old hour come from its day's first-hour row; sessions and transactions from their day rows
(written at ingest beside the hour rows). Each issue keeps its newest kept event (one with its payload), so its
context and code path can still be read. Events go in batches of 1,000, each its own transaction, so a prune holds
ingest for one batch at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

from prodloop.server.store.db import Store

_EVENT_BATCH = 1000


@dataclass(frozen=True, slots=True)
class Pruned:
    issue_hours_folded: int
    session_hours: int
    transaction_hours: int
    day_rows: int
    events: int

    def __str__(self) -> str:
        return (
            f"{self.issue_hours_folded} issue hour rows folded into days, {self.session_hours} session and "
            f"{self.transaction_hours} transaction hour rows, {self.day_rows} day rows and {self.events} events removed"
        )


def prune(store: Store, *, now: float, hourly_days: int, aggregate_days: int, event_days: int) -> Pruned:
    """Apply the retention settings (`retention.*`) as of `now` (epoch seconds). A second call removes nothing."""
    today = int(now // 86400)
    hour_cutoff = (today - hourly_days) * 24  # whole days only: a day's hours fold together
    day_cutoff = today - aggregate_days
    with store.transaction() as conn:
        # An old hour's count moves to its day's first hour (events per day read hour / 24, so they see it).
        conn.execute(
            """
            INSERT INTO issue_hourly (issue_id, hour, count)
            SELECT issue_id, hour - hour % 24, SUM(count) FROM issue_hourly WHERE hour < ? AND hour % 24 != 0
            GROUP BY issue_id, hour - hour % 24
            ON CONFLICT (issue_id, hour) DO UPDATE SET count = count + excluded.count
            """,
            (hour_cutoff,),
        )
        folded = conn.execute("DELETE FROM issue_hourly WHERE hour < ? AND hour % 24 != 0", (hour_cutoff,)).rowcount
        sessions = conn.execute("DELETE FROM session_hours WHERE hour < ?", (hour_cutoff,)).rowcount
        transactions = conn.execute("DELETE FROM transaction_hours WHERE hour < ?", (hour_cutoff,)).rowcount
        days = conn.execute("DELETE FROM issue_hourly WHERE hour < ?", (day_cutoff * 24,)).rowcount
        for table in ("session_days", "session_day_users", "transaction_days"):
            days += conn.execute(f"DELETE FROM {table} WHERE day < ?", (day_cutoff,)).rowcount
    events = 0
    event_cutoff = now - event_days * 86400
    while True:
        with store.transaction() as conn:
            removed = conn.execute(
                """
                DELETE FROM events WHERE id IN (
                    SELECT e.id FROM events e WHERE e.timestamp < ? AND e.id != (
                        SELECT n.id FROM events n WHERE n.issue_id = e.issue_id AND n.payload IS NOT NULL
                        ORDER BY n.timestamp DESC, n.id DESC LIMIT 1
                    ) LIMIT ?
                )
                """,
                (event_cutoff, _EVENT_BATCH),
            ).rowcount
        events += removed
        if removed < _EVENT_BATCH:
            break
    return Pruned(folded, sessions, transactions, days, events)
