"""The two engines a `Store` runs on, behind one connection shape.

SQLite (the embedded default): one write connection guarded by a lock (SQLite allows one writer at a time
anyway) and one read connection per thread; WAL lets readers run beside the writer. `synchronous=FULL` makes a
committed transaction survive a power cut, which is what acknowledging an event to a sender promises.

PostgreSQL (`postgresql://...`, for several prodloop processes sharing one state): psycopg 3 and its connection
pool. Every write transaction takes one transaction-scoped advisory lock first, so write transactions run one at a
time across every process on the database, as `BEGIN IMMEDIATE` makes them on SQLite: a budget or PR-slot
reservation that reads and then writes can never interleave with another (no lost update, no double reservation),
and a fixed lock order leaves nothing to deadlock on. Reads borrow a pooled connection per statement in autocommit
(each statement sees what is committed, as SQLite's readers do) and never wait on a writer.

prodloop's SQL is written once, in SQLite's dialect; `to_postgres` translates a statement once (cached): `?`
placeholders, `INSERT OR IGNORE`, two-argument `min`/`max`, `IS ?`, and the bare columns an upsert's `DO UPDATE`
reads. The handful of JSON queries carry both texts (`Sql`).
"""

from __future__ import annotations

import fcntl
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, cast

import psycopg
import psycopg_pool
from psycopg.adapt import Loader
from psycopg.types.string import StrDumperUnknown

DB_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error)
INTEGRITY_ERRORS: tuple[type[Exception], ...] = (sqlite3.IntegrityError, psycopg.IntegrityError)

# One key for every write transaction on a PostgreSQL database (the text 'prodloop' as a bigint), another for
# migrations (held across them, so that two processes starting together migrate once).
WRITE_LOCK = 0x70726F646C6F6F70
MIGRATE_LOCK = WRITE_LOCK + 1


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Conn(Protocol):
    """What the store's queries use of a connection: `sqlite3.Connection` as is, or a `PgConn`."""

    def execute(self, sql: str, parameters: Sequence[Any] | Mapping[str, Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> Cursor: ...


@dataclass(frozen=True)
class Sql:
    """A statement whose text differs by engine (JSON functions); `text(conn)` picks the one to run."""

    sqlite: str
    postgres: str

    def text(self, conn: Conn) -> str:
        return self.postgres if is_postgres(conn) else self.sqlite


def is_postgres(conn: Conn) -> bool:
    return isinstance(conn, PgConn | PgReader)


@contextmanager
def pipelined(conn: Conn) -> Iterator[None]:
    """On PostgreSQL, statements go out without waiting for each answer (psycopg's pipeline mode) until one's
    rows are read; on SQLite, in process already, nothing changes."""
    if isinstance(conn, PgConn):
        with conn.raw.pipeline():
            yield
    else:
        yield


def is_database_url(target: Path | str) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def redacted(url: str) -> str:
    """A database URL fit for a message or a log: the password (and any query options) left out. Never raises:
    libpq takes URLs `urlsplit` cannot read (several hosts, `h1:5432,h2:5432`)."""
    scheme, _, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    user, at, hosts = netloc.rpartition("@")
    shown = f"{user.partition(':')[0]}@{hosts}" if at else hosts
    return f"{scheme}://{shown}{slash}{path.partition('?')[0]}"


# -- SQLite ---------------------------------------------------------------------------------------------------------


class _FileLock:
    """Write transactions of several processes on one SQLite file, in turn: an `flock` on a file beside it, taken
    before `BEGIN IMMEDIATE`. Without it a writer that finds the database locked sleeps in SQLite's busy handler
    (1, 2, 5, 10 ... ms) and wakes late, so two ingest processes wrote slower than one (p99 ack 60-175 ms, max
    0.6-0.8 s); with it a waiting writer retries every 0.1-1 ms and starts soon after the commit before it ends. A
    writer that cannot have it within `timeout` (a stopped or hung process holds it) gives up as SQLite's busy
    timeout does: "database is locked", which ingest answers 503 (resend). Processes that do not take it (another
    tool on the file) still meet SQLite's own lock. Where the file cannot be opened (a read-only directory, a
    symlink planted in its place: never followed) only SQLite's lock serializes."""

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        self._timeout = timeout
        try:
            self._fd: int | None = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError:
            self._fd = None

    def __enter__(self) -> None:
        fd = self._fd
        if fd is None:
            return
        wait, deadline = 0.0001, time.monotonic() + self._timeout
        while True:
            if self._fd != fd:  # closed meanwhile: the number may name another file now
                raise sqlite3.OperationalError("the store was closed")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise sqlite3.OperationalError(
                        f"database is locked (another process held its write lock for {self._timeout:g} s)"
                    ) from None
                time.sleep(wait)
                wait = min(wait * 2, 0.001)

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class SqliteEngine:
    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._writer = self._connect()
        self._across = _FileLock(path.with_name(path.name + "-writelock"))

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def reader(self) -> Conn:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return cast(Conn, conn)

    @contextmanager
    def transaction(self) -> Iterator[Conn]:
        with self._write_lock, self._across:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield cast(Conn, conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.Error:
                conn.execute("ROLLBACK")
                raise

    @contextmanager
    def migrating(self) -> Iterator[Conn]:
        """The connection migrations run on, each in its own transaction (`BEGIN IMMEDIATE` is taken per one)."""
        with self._write_lock:
            yield cast(Conn, self._writer)

    def begin_migration(self, conn: Conn) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def execute_ddl(self, conn: Conn, statement: str) -> None:
        conn.execute(statement)

    def close(self) -> None:
        self._across.close()
        self._writer.close()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


# -- PostgreSQL -----------------------------------------------------------------------------------------------------


class PgConn:
    """A psycopg connection speaking prodloop's SQL."""

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, parameters: Sequence[Any] | Mapping[str, Any] = (), /) -> Cursor:
        return cast(Cursor, self.raw.execute(to_postgres(sql), _params(parameters)))

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> Cursor:
        cur = self.raw.cursor()
        cur.executemany(to_postgres(sql), [tuple(p) for p in seq_of_parameters])
        return cast(Cursor, cur)


def _params(parameters: Sequence[Any] | Mapping[str, Any]) -> tuple[Any, ...] | Mapping[str, Any]:
    return parameters if isinstance(parameters, Mapping) else tuple(parameters)


class _Rows:
    """A finished statement's rows, read before its pooled connection went back."""

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class PgReader:
    """Reads (and single autocommit statements): each borrows a pooled connection for one statement."""

    def __init__(self, pool: psycopg_pool.ConnectionPool[Any]) -> None:
        self._pool = pool

    def execute(self, sql: str, parameters: Sequence[Any] | Mapping[str, Any] = (), /) -> Cursor:
        with self._pool.connection() as raw:
            cur = raw.execute(to_postgres(sql), _params(parameters))
            return _Rows(cur.fetchall() if cur.description else [], cur.rowcount)

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> Cursor:
        with self._pool.connection() as raw, raw.transaction():
            cur = raw.cursor()
            cur.executemany(to_postgres(sql), [tuple(p) for p in seq_of_parameters])
            return _Rows([], cur.rowcount)


class _NumericLoader(Loader):
    """`sum()` of integers is `numeric` on PostgreSQL: an int when whole, else a float (never a Decimal)."""

    def load(self, data: Any) -> int | float:
        text = bytes(data)
        try:
            return int(text)
        except ValueError:  # a fraction, an exponent, NaN or Infinity
            return float(text)


class _Text(StrDumperUnknown):
    """PostgreSQL text holds no NUL and no lone surrogate; production text may carry either."""

    def dump(self, obj: str) -> Any:
        if "\x00" in obj:
            obj = obj.replace("\x00", "\ufffd")
        try:
            return super().dump(obj)
        except UnicodeEncodeError:
            return super().dump(obj.encode("utf-8", "replace").decode("utf-8"))


def _configure(raw: psycopg.Connection[Any]) -> None:
    raw.adapters.register_loader("numeric", _NumericLoader)
    raw.adapters.register_dumper(str, _Text)


class PostgresEngine:
    dialect = "postgres"
    path: Path | None = None

    def __init__(self, url: str, *, max_connections: int = 8) -> None:
        self.url = url
        self.where = redacted(url)
        self._write_lock = threading.Lock()  # one writer per process holds a pooled connection: readers always get one
        self._pool: psycopg_pool.ConnectionPool[Any] = psycopg_pool.ConnectionPool(
            url,
            min_size=1,
            max_size=max(2, max_connections),
            kwargs={"autocommit": True},
            configure=_configure,
            open=False,
            timeout=30.0,
            name="prodloop",
        )
        try:  # a server that refuses (or a database that is missing) says so now, with its own words
            psycopg.connect(url, connect_timeout=10).close()
        except psycopg.Error:
            self._pool.close()
            raise
        self._pool.open(wait=True, timeout=30.0)
        self._reader = PgReader(self._pool)

    def reader(self) -> Conn:
        return self._reader

    @contextmanager
    def transaction(self) -> Iterator[Conn]:
        with self._write_lock, self._pool.connection() as raw, raw.transaction():
            raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            yield PgConn(raw)

    @contextmanager
    def migrating(self) -> Iterator[Conn]:
        with self._write_lock, self._pool.connection() as raw:
            raw.execute("SELECT pg_advisory_lock(%s)", (MIGRATE_LOCK,))
            try:
                yield PgConn(raw)
            finally:
                raw.execute("SELECT pg_advisory_unlock(%s)", (MIGRATE_LOCK,))

    def begin_migration(self, conn: Conn) -> None:
        conn.execute("BEGIN")

    def execute_ddl(self, conn: Conn, statement: str) -> None:
        """A migration's statement, as PostgreSQL text already (no placeholders to translate)."""
        assert isinstance(conn, PgConn)
        conn.raw.execute(statement.encode())

    @contextmanager
    def connection(self) -> Iterator[PgConn]:
        """A pooled connection of one's own (in autocommit), for a long read or a bulk copy."""
        with self._pool.connection() as raw:
            yield PgConn(raw)

    def close(self) -> None:
        self._pool.close()


# -- SQLite's dialect to PostgreSQL's -------------------------------------------------------------------------------

_TOKEN = re.compile(r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|[A-Za-z_][A-Za-z_0-9]*|\s+|.", re.S)
_WORD = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")
_KEYWORDS = frozenset(
    "and or not null is in exists select from where case when then else end distinct true false between like as"
    " excluded returning on conflict do update set nothing asc desc".split()
)


def _matching(tokens: list[str], start: int) -> int:
    """The index of the `)` closing the `(` at `start`."""
    depth = 0
    for i in range(start, len(tokens)):
        if tokens[i] == "(":
            depth += 1
        elif tokens[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError("unbalanced parentheses")


def _next_word(tokens: list[str], i: int) -> int:
    """The index of the first non-space token after `i` (len(tokens) if none)."""
    i += 1
    while i < len(tokens) and tokens[i].isspace():
        i += 1
    return i


@lru_cache(maxsize=4096)
def to_postgres(sql: str) -> str:
    tokens = [" " if t.startswith(("--", "/*")) else t for t in _TOKEN.findall(sql)]  # comments dropped
    lowered = [t.lower() for t in tokens]
    out: list[str] = []
    on_conflict_nothing = False
    upsert_table: str | None = None
    qualifying = False  # inside an upsert's DO UPDATE SET ... (until RETURNING)
    setting_target = False
    depth = subquery_at = 0  # parentheses within DO UPDATE SET, and where a subquery began
    i = 0
    while i < len(tokens):
        tok, low = tokens[i], lowered[i]
        nxt = _next_word(tokens, i)
        if tok == "?":  # `? IS NULL`: a parameter PostgreSQL must know the type of
            out.append("%s::text" if nxt < len(tokens) and lowered[nxt] == "is" else "%s")
        elif tok == "%":
            out.append("%%")
        elif (
            tok == ":" and i + 1 < len(tokens) and _WORD.fullmatch(tokens[i + 1]) and (not out or out[-1] != ":")
        ):  # a named parameter (`:name`; not a `::type` cast)
            out.append(f"%({tokens[i + 1]})s")
            i += 1
        elif tok.startswith("'"):
            out.append(tok.replace("%", "%%"))
        elif low == "insert" and nxt < len(tokens) and lowered[nxt] == "or":
            verb = _next_word(tokens, nxt)
            if lowered[verb] != "ignore":
                raise ValueError(f"INSERT OR {tokens[verb]} has no PostgreSQL translation: use ON CONFLICT")
            out.append("INSERT")
            on_conflict_nothing = True
            i = verb
        elif low == "into" and upsert_table is None and nxt < len(tokens):
            upsert_table = tokens[nxt]
            out.append(tok)
        elif low == "is" and nxt < len(tokens) and tokens[nxt] == "?":
            out.append("IS NOT DISTINCT FROM %s")
            i = nxt
        elif low == "is" and nxt < len(tokens) and lowered[nxt] == "not" and tokens[_next_word(tokens, nxt)] == "?":
            out.append("IS DISTINCT FROM %s")
            i = _next_word(tokens, nxt)
        elif low in ("min", "max") and nxt < len(tokens) and tokens[nxt] == "(":
            close = _matching(tokens, nxt)
            level, commas = 0, 0
            for t in tokens[nxt:close]:
                level += t == "("
                level -= t == ")"
                commas += t == "," and level == 1
            out.append(("LEAST" if low == "min" else "GREATEST") if commas else tok)
        elif low == "set" and re.sub(r"\s+", "", "".join(out[-6:])).lower().endswith("doupdate"):
            qualifying, setting_target, depth, subquery_at = True, True, 0, 0
            out.append(tok)
        elif low == "returning" and depth == 0:
            qualifying = False
            if on_conflict_nothing:
                out.append("ON CONFLICT DO NOTHING ")
                on_conflict_nothing = False
            out.append(tok)
        elif qualifying:
            if tok == "(":
                depth += 1
                if not subquery_at and lowered[nxt] == "select":
                    subquery_at = depth
            elif tok == ")":
                if subquery_at == depth:
                    subquery_at = 0
                depth -= 1
            if tok == "," and depth == 0:
                setting_target = True
            elif tok == "=" and setting_target:
                setting_target = False
            elif low == "where" and depth == 0:
                setting_target = False
            bare = (tok[0].isalpha() or tok[0] == "_") and low not in _KEYWORDS
            if (
                bare
                and not setting_target
                and not subquery_at
                and tokens[nxt : nxt + 1] not in (["("], ["."])
                and (not out or out[-1] != ".")
            ):
                out.append(f"{upsert_table}.{tok}")
            else:
                out.append(tok)
        else:
            out.append(tok)
        i += 1
    if on_conflict_nothing:
        out.append(" ON CONFLICT DO NOTHING")
    return "".join(out)


def ddl_to_postgres(statement: str) -> str:
    """A migration's SQLite DDL as PostgreSQL's: rowid keys become identity columns, `REAL` (a float4 there)
    becomes `DOUBLE PRECISION`, integers 64-bit as SQLite's are."""
    s = re.sub(r"\bINTEGER PRIMARY KEY\b", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", statement)
    s = re.sub(r"\bINTEGER\b", "BIGINT", s)
    s = re.sub(r"\bREAL\b", "DOUBLE PRECISION", s)
    s = re.sub(r"\bBLOB\b", "BYTEA", s)
    return re.sub(r"\)\s*WITHOUT ROWID", ")", s)
