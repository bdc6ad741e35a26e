"""`Store`: prodloop's state, its migrations, and every query prodloop makes of it.

On SQLite (the embedded default: a file) or PostgreSQL (a `postgresql://` URL, for several processes sharing one
state); `engine.py` says how each keeps write transactions atomic. Ingest batches many events into one commit to
keep a durable commit cheap.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import unquote

from prodloop.server.clock import Clock, SystemClock, new_key
from prodloop.server.errors import InvalidArgument, NotFoundError, StoreError
from prodloop.server.store import health as health_store
from prodloop.server.store.engine import (
    DB_ERRORS,
    INTEGRITY_ERRORS,
    Conn,
    PostgresEngine,
    SqliteEngine,
    ddl_to_postgres,
    is_database_url,
    is_postgres,
    pipelined,
    redacted,
)
from prodloop.server.store.migrations import MIGRATIONS, POSTGRES_MIGRATIONS, SQLITE_ONLY_BEFORE
from prodloop.server.store.records import Deploy, EventRecord, Health, IssueRow, Project, StoredEvent

IssueOrder = Literal["last_seen", "event_count", "first_seen", "user_count", "priority"]

_ISSUE_COLUMNS = (
    "id, project_id, fingerprint, title, exception_type, culprit, first_seen, last_seen, "
    "event_count, user_count, status, regressions, resolved_at, resolved_in, regressed_at"
)
_EVENT_COLUMNS = "id, project_id, event_id, issue_id, timestamp, release, environment, payload"
_NEWEST_KEPT = (
    "SELECT {columns} FROM events WHERE issue_id = ? AND payload IS NOT NULL ORDER BY timestamp DESC, id DESC LIMIT 1"
)


def _statements(sql: str) -> list[str]:
    """A migration's statements, split where SQLite says one is complete (a trigger's body holds `;` too)."""
    out, pending = [], ""
    for piece in sql.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                out.append(pending.strip())
            pending = ""
    if pending.strip(" \n;"):
        out.append(pending.strip())
    return out


def migration_statements(version: int, sql: str, dialect: str) -> list[str]:
    """What migration `version` runs on an engine. PostgreSQL stores begin empty at this version: the data
    statements of migrations before `SQLITE_ONLY_BEFORE` (backfills of SQLite stores that held data) have nothing
    to do there, and a migration whose DDL differs (triggers) has its own PostgreSQL text."""
    if dialect == "sqlite":
        return _statements(sql)
    if version in POSTGRES_MIGRATIONS:
        return list(POSTGRES_MIGRATIONS[version])
    statements = _statements(sql)
    if version < SQLITE_ONLY_BEFORE:
        statements = [s for s in statements if not s.lstrip().upper().startswith(("INSERT", "UPDATE"))]
    return [ddl_to_postgres(s) for s in statements]


class Store:
    def __init__(self, target: Path | str, *, clock: Clock | None = None) -> None:
        """`target`: a SQLite file's path, or a `postgresql://` URL."""
        self.clock: Clock = clock or SystemClock()
        self._engine: SqliteEngine | PostgresEngine
        if is_database_url(target):
            url = str(target)
            self.path: Path | None = None
            self.where = redacted(url)
            try:
                self._engine = PostgresEngine(url)
                self._migrated()
            except DB_ERRORS as exc:  # (not chained: libpq's own message may quote the password)
                raise StoreError("open", self.where, _safe(exc, url)) from None
            return
        path = Path(target)
        self.path = path
        self.where = str(path)
        try:
            # Production data lives here: the data dir is the owner's alone (when prodloop makes it), the database
            # file is 0600 from its first byte, and SQLite gives its -wal and -shm files the database's mode.
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not path.exists():
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            self._engine = SqliteEngine(path)
            self._migrated()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError("open", str(path), str(exc)) from exc

    def _migrated(self) -> None:
        """Migrate, or close the engine (its connections, pool, lock file) before the error goes up."""
        try:
            self._migrate()
        except BaseException:
            self._engine.close()
            raise

    @property
    def dialect(self) -> str:
        return self._engine.dialect

    @property
    def engine(self) -> SqliteEngine | PostgresEngine:
        return self._engine

    @property
    def target(self) -> Path | str:
        """What opens this store again (in another process): the SQLite file, or the database URL (it may hold a
        password: never show it)."""
        return self.path if self.path is not None else getattr(self._engine, "url", "")

    def _migrate(self) -> None:
        engine = self._engine
        with engine.migrating() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
                if engine.dialect == "sqlite"
                else "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY,"
                " applied_at DOUBLE PRECISION NOT NULL)"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for version, sql in MIGRATIONS:
                if version in done:
                    continue
                engine.begin_migration(conn)
                try:
                    for statement in migration_statements(version, sql, engine.dialect):
                        engine.execute_ddl(conn, statement)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                        (version, self.clock.now()),
                    )
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise

    @property
    def schema_version(self) -> int:
        row = self.reader().execute("SELECT max(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    def reader(self) -> Conn:
        return self._engine.reader()

    @contextmanager
    def transaction(self) -> Iterator[Conn]:
        try:
            with self._engine.transaction() as conn:
                yield conn
        except DB_ERRORS as exc:
            raise StoreError("write", self.where, _safe(exc, getattr(self._engine, "url", ""))) from exc

    def close(self) -> None:
        self._engine.close()

    # -- projects ---------------------------------------------------------------------------

    def create_project(self, name: str) -> Project:
        key = new_key()
        now = self.clock.now()
        try:
            with self.transaction() as conn:
                row = conn.execute(
                    "INSERT INTO projects (name, public_key, created_at) VALUES (?, ?, ?) RETURNING id",
                    (name, key, now),
                ).fetchone()
        except StoreError as exc:
            if not isinstance(exc.__cause__, INTEGRITY_ERRORS):
                raise
            raise InvalidArgument(
                "project", f"a project named {name} exists", "use it, or choose another name"
            ) from exc
        return Project(id=int(row[0]), name=name, public_key=key, created_at=now)

    def get_project(self, project_id: int) -> Project | None:
        row = (
            self.reader()
            .execute("SELECT id, name, public_key, created_at FROM projects WHERE id = ?", (project_id,))
            .fetchone()
        )
        return Project(*row) if row else None

    def project_by_name(self, name: str) -> Project | None:
        row = (
            self.reader()
            .execute("SELECT id, name, public_key, created_at FROM projects WHERE name = ?", (name,))
            .fetchone()
        )
        return Project(*row) if row else None

    def list_projects(self) -> list[Project]:
        rows = self.reader().execute("SELECT id, name, public_key, created_at FROM projects ORDER BY id")
        return [Project(*row) for row in rows]

    # -- events -----------------------------------------------------------------------------

    def write_events(self, records: Sequence[EventRecord], health: Sequence[Health] = ()) -> list[bool]:
        """Store events, and the health counts of the same envelopes, in one transaction; returns, per record,
        whether it was new.

        A repeated (project, event_id) is acknowledged but changes nothing (idempotent).
        """
        inserted: list[bool] = []
        try:
            with self.transaction() as conn, pipelined(conn):
                known = _known_events(conn, records)
                new: list[EventRecord] = []
                for record in records:
                    key = (record.project_id, record.event_id)
                    inserted.append(key not in known)
                    if key not in known:
                        new.append(record)
                        known.add(key)  # the same event twice in one batch: the second is a repeat
                _write_new_events(conn, new)
                for counts in health:
                    health_store.write(conn, counts.sessions, counts.transactions)
        except (OverflowError, ValueError) as exc:  # a value the engine cannot hold refuses the batch
            raise StoreError("write events", self.where, str(exc)) from exc
        return inserted

    def get_event(self, event_id: str) -> StoredEvent:
        """A kept event by id. One ingest counted without keeping its payload is refused, naming the event of its
        issue that was kept (with the same input on the culprit frame when one was, else the newest)."""
        conn = self.reader()
        row = conn.execute(
            f"SELECT {_EVENT_COLUMNS}, input_digest FROM events WHERE event_id = ? ORDER BY id LIMIT 1", (event_id,)
        ).fetchone()
        if row is None:
            raise NotFoundError(
                "event", event_id, "list_issues shows issues; fetch_error_context by issue id works too"
            )
        *columns, digest = row
        if columns[7] is not None:  # its payload: a kept event
            return StoredEvent(*columns)
        issue_id = int(columns[3])
        kept: tuple[Any, ...] | None = None
        if digest is not None:
            kept = conn.execute(
                "SELECT event_id FROM events WHERE issue_id = ? AND input_digest = ? AND payload IS NOT NULL"
                " ORDER BY timestamp DESC, id DESC LIMIT 1",
                (issue_id, digest),
            ).fetchone()
        kept = kept or conn.execute(_NEWEST_KEPT.format(columns="event_id"), (issue_id,)).fetchone()
        instead = (
            f'event {kept[0]} of the same issue was kept: fetch_error_context(event_id="{kept[0]}") reads it'
            if kept
            else "no event of its issue is held any more"
        )
        raise NotFoundError(
            "kept payload of event",
            event_id,
            f"it was counted in issue {issue_id} but its payload was not kept (ingest keeps an issue's first "
            f"events per release and those bringing a new input on the culprit frame); {instead}, or "
            f"fetch_error_context(issue_id={issue_id}) reads the issue's latest kept event",
        )

    def latest_event(self, issue_id: int) -> StoredEvent:
        """The issue's newest kept event (counted events have no payload to read)."""
        row = self.reader().execute(_NEWEST_KEPT.format(columns=_EVENT_COLUMNS), (issue_id,)).fetchone()
        if row is None:
            raise NotFoundError("event for issue", str(issue_id), "call list_issues for issues that have events")
        return StoredEvent(*row)

    def recent_events(self, issue_id: int, limit: int) -> list[StoredEvent]:
        """The issue's latest kept events, newest first."""
        rows = (
            self.reader()
            .execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE issue_id = ? AND payload IS NOT NULL"
                " ORDER BY timestamp DESC, id DESC LIMIT ?",
                (issue_id, limit),
            )
            .fetchall()
        )
        return [StoredEvent(*row) for row in rows]

    def event_of(self, *, issue_id: int | None, event_id: str | None) -> tuple[StoredEvent, IssueRow]:
        """An event and its issue, by event id or as the issue's latest event (exactly one must be given)."""
        if (issue_id is None) == (event_id is None):
            raise InvalidArgument(
                "issue_id/event_id", "give exactly one of them", "pass an issue id from list_issues or an event id"
            )
        if event_id is not None:
            stored = self.get_event(event_id.replace("-", "").lower())
            return stored, self.get_issue(stored.issue_id)
        assert issue_id is not None
        issue = self.get_issue(issue_id)
        return self.latest_event(issue.id), issue

    def count_events_since(self, issue_id: int, since: float) -> int:
        row = (
            self.reader()
            .execute("SELECT count(*) FROM events WHERE issue_id = ? AND timestamp > ?", (issue_id, since))
            .fetchone()
        )
        return int(row[0])

    def count_events(self) -> int:
        return int(self.reader().execute("SELECT count(*) FROM events").fetchone()[0])

    # -- issues -----------------------------------------------------------------------------

    def get_issue(self, issue_id: int) -> IssueRow:
        row = self.reader().execute(f"SELECT {_ISSUE_COLUMNS} FROM issues WHERE id = ?", (issue_id,)).fetchone()
        if row is None:
            raise NotFoundError("issue", str(issue_id), "call list_issues for the ids prodloop holds")
        return IssueRow(*row)

    def list_issues(
        self,
        *,
        project_id: int | None = None,
        status: str | None = None,
        order: IssueOrder = "last_seen",
        limit: int = 25,
        offset: int = 0,
    ) -> tuple[list[IssueRow], int]:
        if order not in get_args(IssueOrder):  # the one SQL fragment a caller chooses: only a known column
            keys = ", ".join(get_args(IssueOrder))
            raise InvalidArgument("order_by", f"{str(order)[:40]!r} is not a sort key", f"use one of {keys}")
        clause, params = where(("project_id = ?", project_id), ("status = ?", status))
        conn = self.reader()
        # Kept by triggers per (project, status): a page costs no count over the issues (migration 17).
        total = int(conn.execute(f"SELECT coalesce(sum(n), 0) FROM issue_counts {clause}", params).fetchone()[0])
        rows = conn.execute(
            f"SELECT {_ISSUE_COLUMNS} FROM issues {clause} ORDER BY {order} DESC, id DESC LIMIT ? OFFSET ?",
            [*params, limit, offset],
        ).fetchall()
        return [IssueRow(*row) for row in rows], total

    def hourly_counts(self, issue_id: int, since_hour: int) -> list[tuple[int, int]]:
        rows = self.reader().execute(
            "SELECT hour, count FROM issue_hourly WHERE issue_id = ? AND hour >= ? ORDER BY hour",
            (issue_id, since_hour),
        )
        return [(int(h), int(c)) for h, c in rows]

    # -- deploys ----------------------------------------------------------------------------

    def set_status(self, issue_id: int, status: str, *, in_release: str | None = None) -> IssueRow:
        """Resolve (optionally: fixed in `in_release`), ignore or reopen an issue. A resolved issue seen again in a
        later release regresses (see `_regress_if_resolved`)."""
        if status not in ("resolved", "unresolved", "ignored"):
            raise InvalidArgument("status", f"{status[:40]!r} is not resolved, unresolved or ignored", "pick one")
        with self.transaction() as conn:
            done = conn.execute(
                "UPDATE issues SET status = ?, resolved_at = ?, resolved_in = ? WHERE id = ?",
                (status, self.clock.now() if status == "resolved" else None,
                 in_release if status == "resolved" else None, issue_id),
            ).rowcount  # fmt: skip
        if not done:
            raise NotFoundError("issue", str(issue_id), "call list_issues for the issues prodloop holds")
        return self.get_issue(issue_id)

    def record_deploy(
        self,
        *,
        release: str,
        commit_sha: str,
        environment: str,
        deployed_at: float,
        project_id: int | None = None,
        source: str = "operator",
    ) -> int:
        with self.transaction() as conn:
            row = conn.execute(
                "INSERT INTO deploys (project_id, release, commit_sha, environment, deployed_at, source)"
                " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (project_id, release, commit_sha, environment, deployed_at, source),
            ).fetchone()
        return int(row[0])

    def deploys(self, *, release: str | None = None, environment: str | None = None) -> list[Deploy]:
        """Recorded deploys, newest first, optionally of one release and/or environment."""
        clause, params = where(("release = ?", release), ("environment = ?", environment))
        rows = self.reader().execute(
            f"SELECT id, project_id, release, commit_sha, environment, deployed_at, source FROM deploys {clause}"
            " ORDER BY deployed_at DESC, id DESC",
            params,
        )
        return [Deploy(*row) for row in rows]

    # -- reliability ------------------------------------------------------------------------


def _password(url: str) -> str:
    """The password a database URL carries ('' if none), as written in it."""
    return url.partition("://")[2].partition("/")[0].rpartition("@")[0].partition(":")[2]


def _safe(exc: BaseException, url: str) -> str:
    """An engine's error message with the database URL's password (should the message quote it) left out."""
    text = str(exc).strip()
    password = _password(url)
    for form in {password, unquote(password)} - {""}:
        text = text.replace(form, "***")
    return text


def where(*conditions: tuple[str, object]) -> tuple[str, list[object]]:
    """A WHERE clause of the conditions whose value is not None (Ellipsis: a condition without a parameter)."""
    active = [(sql, value) for sql, value in conditions if value is not None]
    clause = f"WHERE {' AND '.join(sql for sql, _ in active)}" if active else ""
    return clause, [value for _, value in active if value is not Ellipsis]


def _regress_once(conn: Conn, issue: tuple[int, str, float, str | None], records: Sequence[EventRecord]) -> None:
    """A resolved issue (id, status, resolved_at, resolved_in, as the upsert returned it) seen again after its
    resolution, in a release it had not run before (or the release said to carry the fix), has regressed: it is
    unresolved again and counts one more regression. An event of a release it already failed in before (in the
    store, or earlier in this batch) is a straggler (an old server still running), not a regression. The batch's
    events of the issue are judged in order; the first regression ends it (the issue is unresolved again)."""
    issue_id, _, resolved_at, resolved_in = issue
    failed_before: set[str] = set()
    for r in records:
        if resolved_at is None or r.timestamp <= resolved_at:
            if r.release:
                failed_before.add(r.release)
            continue
        if r.release is not None and r.release != resolved_in:
            if (
                r.release in failed_before
                or conn.execute(
                    "SELECT 1 FROM issue_releases WHERE issue_id = ? AND release = ? AND first_seen <= ? LIMIT 1",
                    (issue_id, r.release, resolved_at),
                ).fetchone()
            ):
                continue
        conn.execute(
            "UPDATE issues SET status = 'unresolved', regressions = regressions + 1, regressed_at = ? WHERE id = ?",
            (r.timestamp, issue_id),
        )
        # An approval was for the incident a person saw, not for its return.
        conn.execute(
            "UPDATE signals SET decision = 'pending' WHERE issue_id = ? AND decision = 'approved'", (issue_id,)
        )
        return


def _known_events(conn: Conn, records: Sequence[EventRecord]) -> set[tuple[int, str]]:
    """Which of the batch's (project, event id)s the store holds already: one query for the batch."""
    held: set[tuple[int, str]] = set()
    ids = sorted({r.event_id for r in records})
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        rows = conn.execute(
            f"SELECT project_id, event_id FROM events WHERE event_id IN ({','.join('?' * len(chunk))})", chunk
        )
        held.update((int(p), str(e)) for p, e in rows)
    return held


_UPSERT_ISSUE = """
    INSERT INTO issues (project_id, fingerprint, title, exception_type, culprit, first_seen, last_seen,
                        event_count, user_count, status)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 'unresolved')
    ON CONFLICT (project_id, fingerprint) DO UPDATE SET
        event_count = event_count + excluded.event_count,
        first_seen = min(first_seen, excluded.first_seen),
        last_seen = max(last_seen, excluded.last_seen),
        title = CASE WHEN ? >= last_seen THEN excluded.title ELSE title END,
        culprit = CASE WHEN ? >= last_seen THEN excluded.culprit ELSE culprit END
    RETURNING id, status, resolved_at, resolved_in
"""


def _write_new_events(conn: Conn, records: Sequence[EventRecord]) -> None:
    """Events the store does not hold, in their order. One upsert per issue the batch touches (its count, first
    and last seen, and the title and culprit of its newest event, as one upsert per event would leave them);
    only those are waited for (ids and statuses; on PostgreSQL all in one round trip), the rest of the batch goes
    out in its pipeline."""
    by_issue: dict[tuple[int, str], list[EventRecord]] = {}
    for r in records:
        by_issue.setdefault((r.project_id, r.fingerprint), []).append(r)
    pending: list[Any] = []  # cursors (PostgreSQL: read after the pipeline sends them all) or rows
    for (project_id, fingerprint), recs in by_issue.items():
        newest = _newest(recs)
        assert newest is not None
        # The title and culprit come from the newest kept event (a counted one's are not its own), the times from all.
        titled = _newest([r for r in recs if r.kept])
        first = min(r.timestamp for r in recs)
        since = titled.timestamp if titled else None
        titled = titled or newest
        values = (project_id, fingerprint, titled.title, recs[0].exception_type, titled.culprit, first,
                  newest.timestamp, len(recs), since, since)  # fmt: skip
        cur = conn.execute(_UPSERT_ISSUE, values)
        pending.append(cur if is_postgres(conn) else cur.fetchone())  # (SQLite's row read at once)
    rows: list[tuple[int, str, float, str | None]] = [p.fetchone() if is_postgres(conn) else p for p in pending]
    issue_of: dict[tuple[int, str], int] = {}
    for (key, recs), row in zip(by_issue.items(), rows, strict=True):
        issue_of[key] = int(row[0])
        if row[1] == "resolved":  # the status comes back with the id: only a resolved issue costs the check
            _regress_once(conn, row, recs)
    _write_event_rows(conn, records, issue_of)


def _newest(records: Sequence[EventRecord]) -> EventRecord | None:
    newest: EventRecord | None = None
    for r in records:
        if newest is None or r.timestamp >= newest.timestamp:  # a tie goes to the later event, as upserts in order
            newest = r
    return newest


def _write_event_rows(conn: Conn, records: Sequence[EventRecord], issue_of: dict[tuple[int, str], int]) -> None:
    """The new events' rows and what they add to their issues' counts, a statement per table for the batch
    (executemany: on PostgreSQL each table's rows go out at once)."""
    events: list[tuple[Any, ...]] = []
    users: dict[tuple[int, str], None] = {}  # (dicts as ordered sets)
    hours: dict[tuple[int, int], int] = {}
    releases: dict[tuple[int, str, str], tuple[float, float]] = {}
    frames: dict[tuple[int, str, str, str], None] = {}
    for r in records:
        issue_id = issue_of[(r.project_id, r.fingerprint)]
        events.append((r.project_id, r.event_id, issue_id, r.timestamp, r.received, r.release, r.environment,
                       r.level, r.exception_type, r.culprit_module, r.culprit_function, r.culprit_filename,
                       r.user_hash, r.source, r.payload, r.input_digest, r.summary))  # fmt: skip
        if r.user_hash is not None:
            users[(issue_id, r.user_hash)] = None
        hour = (issue_id, int(r.timestamp // 3600))
        hours[hour] = hours.get(hour, 0) + 1
        if r.release or r.transaction:
            key = (issue_id, r.release or "", r.transaction or "")
            first, last = releases.get(key, (r.timestamp, r.timestamp))
            releases[key] = (min(first, r.timestamp), max(last, r.timestamp))
        for frame in r.frames:
            frames[(issue_id, frame.filename, frame.module, frame.function)] = None
    conn.executemany(
        """
        INSERT INTO events (project_id, event_id, issue_id, timestamp, received, release, environment, level,
                            exception_type, culprit_module, culprit_function, culprit_filename, user_hash,
                            source, payload, input_digest, summary)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """,
        events,
    )
    if users:  # each user new to an issue counts once: counted before it is added (distinct pairs of the batch)
        conn.executemany(
            "UPDATE issues SET user_count = user_count + 1 WHERE id = ?"
            " AND NOT EXISTS (SELECT 1 FROM issue_users WHERE issue_id = ? AND user_hash = ?)",
            [(issue_id, issue_id, user) for issue_id, user in users],
        )
        conn.executemany("INSERT OR IGNORE INTO issue_users (issue_id, user_hash) VALUES (?, ?)", list(users))
    conn.executemany(
        """
        INSERT INTO issue_hourly (issue_id, hour, count) VALUES (?, ?, ?)
        ON CONFLICT (issue_id, hour) DO UPDATE SET count = count + excluded.count
        """,
        [(*hour, n) for hour, n in hours.items()],
    )
    if releases:
        conn.executemany(
            """
            INSERT INTO issue_releases (issue_id, release, transaction_name, first_seen, last_seen)
            VALUES (?, ?, ?, ?, ?)
            ON CONFLICT (issue_id, release, transaction_name) DO UPDATE SET
                first_seen = min(coalesce(first_seen, excluded.first_seen), excluded.first_seen),
                last_seen = max(last_seen, excluded.last_seen)
            """,
            [(*key, first, last) for key, (first, last) in releases.items()],
        )
    for r in records:
        if r.release and r.packages:
            health_store.write_packages(conn, r.project_id, r.release, r.packages, r.timestamp)
    if frames:
        conn.executemany(
            "INSERT OR IGNORE INTO issue_frames (issue_id, filename, module, function) VALUES (?, ?, ?, ?)",
            list(frames),
        )
