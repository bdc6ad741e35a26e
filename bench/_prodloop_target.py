"""prodloop as a bench target: a throwaway store (SQLite file or PostgreSQL database), a project in it, and N
`prodloop serve --http` processes on that one store, each on its own port (rate limit off)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _pg import throwaway_database
from _server_procs import free_port, stop, wait_healthy


class _Engine:
    """The store's engine as the bench reads it: counts rows with the engine's own client."""

    def __init__(self, url: str) -> None:
        self.url = url

    def query_one(self, sql: str) -> tuple[Any, ...]:
        if self.url.startswith("sqlite:///"):
            conn = sqlite3.connect(f"file:{self.url.removeprefix('sqlite:///')}?mode=ro", uri=True, timeout=30)
            try:
                return tuple(conn.execute(sql).fetchone())
            finally:
                conn.close()
        import psycopg  # only for postgresql:// stores

        with psycopg.connect(self.url, autocommit=True) as pg:
            row = pg.execute(sql).fetchone()
            assert row is not None
            return tuple(row)


@contextlib.contextmanager
def throwaway_store(database_url: str | None, workdir: Path, label: str) -> Iterator[str]:
    """A store URL nothing else uses, removed afterwards. sqlite:///PATH: PATH (with `label` before its suffix) must
    not exist yet. postgresql://.../DB: a new database on that server (DB is only used to create and drop it)."""
    if database_url is None:
        yield f"sqlite:///{workdir / '.prodloop' / 'prodloop.db'}"
        return
    if database_url.startswith("sqlite:///"):
        path = Path(database_url.removeprefix("sqlite:///")).resolve()
        path = path.with_name(f"{path.stem}-{label}{path.suffix}")
        if path.exists():
            raise SystemExit(f"{path} exists: the bench creates its store and deletes it afterwards; name a new file")
        try:
            yield f"sqlite:///{path}"
        finally:
            for extra in ("", "-wal", "-shm"):
                Path(f"{path}{extra}").unlink(missing_ok=True)
        return
    if not database_url.startswith(("postgresql://", "postgres://")):
        raise SystemExit(f"--database-url: sqlite:///PATH or postgresql://..., not {database_url.split(':', 1)[0]}")
    with throwaway_database(database_url, label) as url:
        yield url


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "prodloop.server.cli", *args]


@dataclasses.dataclass
class Prodloop:
    """`processes` prodloop servers on one store; `running()` starts and stops them. `ingest`: one `serve-ingest
    --processes N` on one port instead (uvicorn's workers; `scrubbers` per worker, None: the setting's default)."""

    processes: int
    repo: Path
    database_url: str
    project_id: int
    public_key: str
    ports: list[int]
    ingest: bool = False
    scrubbers: int | None = None
    procs: list[subprocess.Popen[bytes]] = dataclasses.field(default_factory=list)

    @property
    def name(self) -> str:
        if self.ingest:
            return f"ingest x{self.processes}" + ("" if self.scrubbers is None else f" s{self.scrubbers}")
        return f"prodloop x{self.processes}"

    @property
    def engine(self) -> str:
        return self.database_url.split(":", 1)[0]

    @property
    def dsn(self) -> str:
        return f"http://{self.public_key}@127.0.0.1:{self.ports[0]}/{self.project_id}"

    @property
    def envelope_path(self) -> str:
        return f"/api/{self.project_id}/envelope/"

    def stored(self) -> int:
        return int(_Engine(self.database_url).query_one("SELECT count(*) FROM events")[0])

    def root_pids(self) -> list[int]:
        """The servers, and on PostgreSQL the server backends connected to the bench's database (not this query's)."""
        pids = [proc.pid for proc in self.procs]
        if self.engine.startswith("postgres"):
            sql = "SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE datname = current_database() "
            backends = _Engine(self.database_url).query_one(sql + "AND pid <> pg_backend_pid()")[0]
            pids += [int(pid) for pid in (backends or "").split(",") if pid]
        return pids

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PRODLOOP_DATABASE_URL": self.database_url,
            "PRODLOOP_INGEST_RATE_LIMIT": "0",
            # one token for all: no process races another to create .prodloop/mcp-token
            "PRODLOOP_MCP_TOKEN": secrets.token_urlsafe(24),
        }

    def describe(self) -> str:
        if self.ingest:
            scrubbers = "the default, 0" if self.scrubbers is None else str(self.scrubbers)
            return (
                f"`prodloop serve-ingest --processes {self.processes}` (uvicorn workers on one port, {self.ports[0]}, "
                f"scrubbing processes per worker: {scrubbers}) on one {self.engine} store, rate limit off"
                + ("; CPU counts the PostgreSQL backends serving them" if self.engine.startswith("postgres") else "")
            )
        return (
            f"{self.processes} x `prodloop serve --http` (uvicorn, one process each) on one {self.engine} store, "
            f"ports {', '.join(map(str, self.ports))}, rate limit off"
            + ("; CPU counts the PostgreSQL backends serving them" if self.engine.startswith("postgres") else "")
        )

    @contextlib.contextmanager
    def running(self) -> Iterator[Prodloop]:
        env = self._env()
        logs = []
        try:
            if self.ingest:
                log_path = self.repo / "ingest.log"
                logs.append(log_path.open("ab"))
                cmd = _cli("serve-ingest", "--repo", str(self.repo), "--port", str(self.ports[0]))
                cmd += ["--processes", str(self.processes)]
                cmd += [] if self.scrubbers is None else ["--scrubbers", str(self.scrubbers)]
                self.procs.append(subprocess.Popen(cmd, env=env, stdout=logs[-1], stderr=logs[-1]))
                wait_healthy(self.ports[0], "/healthz", self.procs[-1], log_path, "prodloop serve-ingest")
            for i, port in enumerate([] if self.ingest else self.ports):  # in turn: the first one migrates the store
                log_path = self.repo / f"server-{i}.log"
                log = log_path.open("ab")
                logs.append(log)
                cmd = _cli("serve", "--http", "--repo", str(self.repo), "--port", str(port))
                self.procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=log))
                wait_healthy(port, "/healthz", self.procs[-1], log_path, f"prodloop server {i}")
            yield self
        finally:
            for proc in self.procs:
                stop(proc)
            self.procs.clear()
            for log in logs:
                log.close()


@contextlib.contextmanager
def prodloop_target(
    processes: int, database_url: str | None, *, ingest: bool = False, scrubbers: int | None = None
) -> Iterator[Prodloop]:
    """A new repository and store with one project; the servers are started per round by `running()`."""
    repo = Path(tempfile.mkdtemp(prefix=f"prodloop-bench-http-p{processes}-"))
    try:
        with throwaway_store(database_url, repo, f"p{processes}") as url:
            env = {**os.environ, "PRODLOOP_DATABASE_URL": url}
            done = subprocess.run(_cli("init", "--repo", str(repo)), env=env, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"prodloop init on {url.split(':', 1)[0]} failed:\n{done.stderr[-2000:]}")
            project_id, key = _Engine(url).query_one("SELECT id, public_key FROM projects ORDER BY id LIMIT 1")
            ports = [free_port() for _ in range(1 if ingest else processes)]
            yield Prodloop(processes, repo, url, int(project_id), str(key), ports, ingest, scrubbers)
    finally:
        shutil.rmtree(repo, ignore_errors=True)
