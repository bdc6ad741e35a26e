"""`prodloop store copy`: a SQLite store into an empty PostgreSQL one, whole or not at all.

Both stores are first migrated to the same version; the source is read in one transaction (a consistent
snapshot, even with a server still writing to it: stop it first all the same, or its later events stay behind);
the target is written in one transaction with COPY, tables in foreign-key order, then each identity column is
moved past the largest id copied. `issue_counts` is not copied: it is counted from the copied issues (the
triggers that keep it are off during the copy, which would otherwise cost quadratic time on PostgreSQL). Every
table's row count is compared before the commit; any difference, or a value PostgreSQL refuses, rolls the whole
copy back and says which table.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prodloop.server.errors import InvalidArgument, StoreError
from prodloop.server.store.db import Store
from prodloop.server.store.engine import DB_ERRORS, PostgresEngine

DERIVED = frozenset({"issue_counts", "schema_migrations"})  # kept by triggers / by each store's own migrations
BATCH = 5000


@dataclass(frozen=True, slots=True)
class Copied:
    tables: dict[str, int]
    schema_version: int

    @property
    def rows(self) -> int:
        return sum(self.tables.values())


def _tables_in_order(conn: sqlite3.Connection) -> list[str]:
    """The source's tables, each after the tables its foreign keys point to."""
    names = [
        r[0]
        for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        if r[0] not in DERIVED
    ]
    needs = {n: {r[2] for r in conn.execute(f'PRAGMA foreign_key_list("{n}")')} - {n} for n in names}
    ordered: list[str] = []
    while len(ordered) < len(names):
        ready = sorted(n for n in names if n not in ordered and needs[n] <= set(ordered))
        if not ready:
            raise StoreError("copy", "sqlite", f"foreign keys form a cycle among {sorted(set(names) - set(ordered))}")
        ordered.extend(ready)
    return ordered


def copy_store(source: Path, target_url: str, *, on_table: Callable[[str, int], None] | None = None) -> Copied:
    if not source.is_file():
        raise InvalidArgument("--from", f"{source} is not a SQLite store", "name the prodloop.db file to copy")
    Store(source).close()  # migrate the source to this version first
    target = Store(target_url)
    engine = target.engine
    if not isinstance(engine, PostgresEngine):
        target.close()
        raise InvalidArgument("--to", "the target must be a postgresql:// URL", "name an empty PostgreSQL database")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, isolation_level=None)
    copied: dict[str, int] = {}
    try:
        src.execute("BEGIN")  # one snapshot of the source for the whole copy
        tables = _tables_in_order(src)
        with target.transaction() as conn:
            raw = conn.raw  # type: ignore[attr-defined]
            held = [t for t in tables if raw.execute(f'SELECT 1 FROM "{t}" LIMIT 1').fetchone()]
            if held:
                raise InvalidArgument(
                    "--to",
                    f"the target already holds rows (in {', '.join(held[:5])})",
                    "copy into a new, empty database (createdb NAME), never over a store in use",
                )
            # The issue counts' triggers would update one row per issue copied, in one transaction: PostgreSQL keeps
            # every version of it until the commit (quadratic). Off for the copy, the counts made once after it;
            # the ALTERs are part of the transaction, so a failed copy leaves the triggers as they were.
            raw.execute("ALTER TABLE issues DISABLE TRIGGER USER")
            for table in tables:
                copied[table] = _copy_table(src, raw, table)
                if on_table is not None:
                    on_table(table, copied[table])
            raw.execute(
                "INSERT INTO issue_counts (project_id, status, n)"
                " SELECT project_id, status, count(*) FROM issues GROUP BY project_id, status"
            )
            raw.execute("ALTER TABLE issues ENABLE TRIGGER USER")
            for table in tables:
                if raw.execute(
                    "SELECT 1 FROM information_schema.columns WHERE table_name = %s AND column_name = 'id'"
                    " AND is_identity = 'YES'",
                    (table,),
                ).fetchone():
                    raw.execute(  # the next id: one past the largest copied (1 for an empty table)
                        f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'),"
                        f' coalesce((SELECT max(id) FROM "{table}"), 0) + 1, false)'
                    )
            for table, n in copied.items():
                there = raw.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
                if there != n:
                    raise StoreError("copy", target.where, f"{table}: {n} rows read but {there} written")
        version = target.schema_version
    except DB_ERRORS as exc:
        raise StoreError("copy", target.where, str(exc).strip()[:500]) from exc
    finally:
        src.close()
        target.close()
    return Copied(tables=copied, schema_version=version)


def _copy_table(src: sqlite3.Connection, raw: Any, table: str) -> int:
    columns = [r[1] for r in src.execute(f'PRAGMA table_info("{table}")')]
    theirs = {
        r[0]
        for r in raw.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s AND table_schema = 'public'",
            (table,),
        )
    }
    if set(columns) != theirs:
        raise StoreError("copy", table, f"columns differ: source {sorted(columns)}, target {sorted(theirs)}")
    quoted = ", ".join(f'"{c}"' for c in columns)
    n = 0
    rows = src.execute(f'SELECT {quoted} FROM "{table}"')
    with raw.cursor().copy(f'COPY "{table}" ({quoted}) FROM STDIN') as copy:
        while batch := rows.fetchmany(BATCH):
            for row in batch:
                copy.write_row(row)
            n += len(batch)
    return n
