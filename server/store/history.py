"""What the store knows about one part of the code: the issues whose in-app frames name it, and their events per
day. Frames name files relative to an import root prodloop cannot know, so a path is matched by its suffixes (never
a bare basename of a nested file, which another package may share) and by its module name."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prodloop.server.store.engine import Conn
from prodloop.server.store.records import IssueRow

_ISSUE_COLUMNS = (
    "i.id, i.project_id, i.fingerprint, i.title, i.exception_type, i.culprit, i.first_seen, i.last_seen, "
    "i.event_count, i.user_count, i.status, i.regressions, i.resolved_at, i.resolved_in, i.regressed_at"
)


@dataclass(frozen=True, slots=True)
class PathMatch:
    """How frames may name a path: exact filenames or modules, or prefixes for a folder; a function narrows."""

    filenames: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()
    filename_prefixes: tuple[str, ...] = ()
    module_prefixes: tuple[str, ...] = ()
    functions: tuple[str, ...] | None = None

    @classmethod
    def for_file(cls, path: str, function: str | None = None) -> PathMatch:
        """A repository file (and, with `function`, only frames of that function: its qualified or bare name)."""
        return cls(
            filenames=_suffixes(path.split("/"), "/"),
            modules=_suffixes(_dotted(path), "."),
            functions=tuple(dict.fromkeys([function, function.rsplit(".", 1)[-1]])) if function else None,
        )

    @classmethod
    def for_folder(cls, path: str) -> PathMatch:
        """A folder: its package module and everything below it."""
        return cls(
            modules=_suffixes(_dotted(path), "."),
            filename_prefixes=tuple(s + "/" for s in _suffixes(path.split("/"), "/")),
            module_prefixes=tuple(s + "." for s in _suffixes(_dotted(path), ".")),
        )


def _dotted(path: str) -> list[str]:
    return path.removesuffix(".py").removesuffix("/__init__").split("/")


def _suffixes(parts: list[str], joiner: str) -> tuple[str, ...]:
    """Every suffix of a path but its bare last part, unless the path has only that one part."""
    return tuple(joiner.join(parts[i:]) for i in range(max(1, len(parts) - 1)))


def issues_touching(conn: Conn, match: PathMatch, *, since: float) -> list[IssueRow]:
    """Issues seen since `since` whose in-app frames name the path, most recently seen first."""
    ors: list[str] = []
    params: list[object] = []
    if match.filenames:
        ors.append(f"f.filename IN ({','.join('?' * len(match.filenames))})")
        params += match.filenames
    if match.modules:
        ors.append(f"(f.module IN ({','.join('?' * len(match.modules))}) AND f.module != '')")
        params += match.modules
    for column, prefixes in (("filename", match.filename_prefixes), ("module", match.module_prefixes)):
        for prefix in prefixes:  # substr, not LIKE: a path's own % or _ must not match anything else
            ors.append(f"substr(f.{column}, 1, ?) = ?")
            params += [len(prefix), prefix]
    if not ors:
        return []
    narrow = ""
    if match.functions is not None:
        narrow = f" AND f.function IN ({','.join('?' * len(match.functions))})"
        params += match.functions
    rows = conn.execute(
        f"""
        SELECT {_ISSUE_COLUMNS} FROM issues i WHERE i.last_seen >= ? AND i.id IN (
            SELECT f.issue_id FROM issue_frames f WHERE ({" OR ".join(ors)}){narrow}
        ) ORDER BY i.last_seen DESC
        """,
        [since, *params],
    ).fetchall()
    return [IssueRow(*row) for row in rows[:_MAX_ISSUES]]


_MAX_ISSUES = 5000  # the most recently seen; later queries list their ids (SQLite allows 32,766 parameters)


def events_per_day(conn: Conn, issue_ids: Sequence[int], *, since_hour: int) -> dict[int, int]:
    """Events per day (days since the epoch) of these issues from `since_hour` on."""
    if not issue_ids:
        return {}
    rows = conn.execute(
        f"""
        SELECT hour / 24, SUM(count) FROM issue_hourly
        WHERE hour >= ? AND issue_id IN ({",".join("?" * len(issue_ids))}) GROUP BY hour / 24 ORDER BY 1
        """,
        [since_hour, *issue_ids],
    ).fetchall()
    return {int(day): int(n) for day, n in rows}


def events_since(conn: Conn, *, since_hour: int) -> int:
    row = conn.execute("SELECT COALESCE(SUM(count), 0) FROM issue_hourly WHERE hour >= ?", (since_hour,)).fetchone()
    return int(row[0])


def releases_and_transactions(
    conn: Conn, issue_ids: Sequence[int], *, since: float, limit: int = 500
) -> tuple[list[str], list[str]]:
    """The releases these issues' events ran since `since`, and the transactions they happened in (most recently
    seen first). Kept per issue at ingest, so they outlive the raw events (retention)."""
    if not issue_ids:
        return [], []
    rows = conn.execute(
        f"""
        SELECT release, transaction_name FROM issue_releases
        WHERE last_seen >= ? AND issue_id IN ({",".join("?" * len(issue_ids))}) ORDER BY last_seen DESC LIMIT ?
        """,
        [since, *issue_ids, limit],
    ).fetchall()
    releases = list(dict.fromkeys(r for r, _ in rows if r))
    transactions = list(dict.fromkeys(t for _, t in rows if t))
    return releases, transactions


def frame_files(conn: Conn, *, since: float, limit: int = 2000) -> list[tuple[str, int]]:
    """The in-app filenames of issues seen since `since`, with their events, most events first."""
    rows = conn.execute(
        """
        SELECT f.filename, SUM(i.event_count) FROM issue_frames f JOIN issues i ON i.id = f.issue_id
        WHERE i.last_seen >= ? GROUP BY f.filename ORDER BY 2 DESC LIMIT ?
        """,
        (since, limit),
    ).fetchall()
    return [(str(name), int(n)) for name, n in rows]
