"""Throwaway PostgreSQL databases for the tests that run the store on both engines.

The server is the machine's (127.0.0.1:5432, trust auth) or the one PRODLOOP_TEST_POSTGRES_URL names (an admin
connection: it creates and drops databases). Without one these tests fail, saying how to start it: never a skip.
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from prodloop.server.store import Store

ADMIN_URL = os.environ.get("PRODLOOP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"the PostgreSQL half of these tests needs a server at {ADMIN_URL}: {str(exc).strip()[:300]}. Start the"
            " machine's with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`, or name"
            " another (a user that may create databases) in PRODLOOP_TEST_POSTGRES_URL"
        )


def create_database() -> str:
    """A new empty database; its URL."""
    name = f"prodloop_test_{uuid.uuid4().hex[:16]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(ADMIN_URL)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def drop_database(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def stored_bytes(store: Store) -> bytes:
    """Everything the store holds, as bytes to search for what must never be stored: a SQLite store's files
    (the database, its journal and WAL), or every row of every table of a PostgreSQL one."""
    if store.path is not None:
        return b"".join(p.read_bytes() for p in store.path.parent.glob(store.path.name + "*"))
    conn = store.reader()
    tables = [t for (t,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    return b"".join(
        str(row[0]).encode() for table in tables for row in conn.execute(f'SELECT t::text FROM "{table}" t')
    )
