"""What ingest's keep-or-count decision reads of the store (`ingest/sampling.py`): an issue's id, how many of its
events of a release were kept with their payload, and the input digests of its kept events.

Only committed rows answer, so a decision made on them never keeps fewer payloads than its rule asks, whatever
other ingest processes sharing the store are doing.
"""

from __future__ import annotations

from prodloop.server.store.db import Store


def issue_id(store: Store, project_id: int, fingerprint: str) -> int | None:
    row = (
        store.reader()
        .execute("SELECT id FROM issues WHERE project_id = ? AND fingerprint = ?", (project_id, fingerprint))
        .fetchone()
    )
    return int(row[0]) if row else None


def kept_in_release(store: Store, issue_id: int, release: str | None, *, at_most: int) -> int:
    """How many of the issue's events of `release` (None: events without one) were kept, counted up to `at_most`."""
    match = "release = ?" if release is not None else "release IS NULL"
    params = (issue_id, release, at_most) if release is not None else (issue_id, at_most)
    row = (
        store.reader()
        .execute(
            "SELECT count(*) FROM (SELECT 1 FROM events"
            f" WHERE issue_id = ? AND {match} AND payload IS NOT NULL LIMIT ?) k",
            params,
        )
        .fetchone()
    )
    return int(row[0])


def input_digests(store: Store, issue_id: int, *, at_most: int) -> set[str]:
    """Up to `at_most` distinct input digests of the issue's kept events."""
    rows = store.reader().execute(
        "SELECT DISTINCT input_digest FROM events"
        " WHERE issue_id = ? AND payload IS NOT NULL AND input_digest IS NOT NULL LIMIT ?",
        (issue_id, at_most),
    )
    return {str(d) for (d,) in rows}
