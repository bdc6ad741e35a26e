"""`prodloop serve-ingest --processes 2`: uvicorn's worker processes on one port, each judging, scrubbing and writing
the same SQLite store. Real sentry-sdk senders in processes of their own; every acknowledged event stored once, the
counters add up; a worker that dies is replaced, with the command's settings, and ingest goes on; a bind beyond
loopback without allowed Host names is refused before anything starts."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import envelope_bytes, make_event, post
from tests.server.store.test_team_scale import SENDER, _free_port, _wait_for

CLI = [sys.executable, "-m", "prodloop.server.cli"]
# The team-scale sender with in-app frames and a few repeating inputs, so that most events are only counted.
REPEATING = (
    SENDER.replace("default_integrations=False", 'default_integrations=False, in_app_include=["__main__"]')
    .replace('f"x{i}"', 'f"x{i % 4}"')
    .replace('f"c{i}"', 'f"c{i % 4}"')
)
assert REPEATING.count("i % 4") == 2 and "in_app_include" in REPEATING


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.add(int(entry.name))
    return found


def _workers(server: subprocess.Popen[str]) -> set[int]:
    """uvicorn's worker processes under the supervisor (multiprocessing's resource tracker is not one)."""
    return {
        pid for pid in _children(server.pid) if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    }


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str], int, str]]:
    root = tmp_path / "shop"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PRODLOOP_")},
        "PRODLOOP_INGEST_RATE_LIMIT": "0", "COLUMNS": "300",
    }  # fmt: skip
    init = subprocess.run([*CLI, "init", "--repo", str(root)], env=env, capture_output=True, text=True, timeout=60)
    assert init.returncode == 0, init.stderr
    db = sqlite3.connect(root / ".prodloop" / "prodloop.db")
    project_id, key = db.execute("SELECT id, public_key FROM projects").fetchone()
    db.close()
    yield root, env, int(project_id), str(key)


def _count(root: Path, sql: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(root / ".prodloop" / "prodloop.db")
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def test_two_ingest_processes_on_one_port_store_every_acknowledged_event_once(
    repo: tuple[Path, dict[str, str], int, str], tmp_path: Path
) -> None:
    root, env, project_id, key = repo
    port = _free_port()
    server = subprocess.Popen(
        [*CLI, "serve-ingest", "--repo", str(root), "--port", str(port), "--processes", "2", "--scrubbers", "0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait_for(port, server)
        deadline = time.monotonic() + 60
        while len(_workers(server)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(_workers(server)) == 2
        script = tmp_path / "sender.py"
        script.write_text(REPEATING)
        dsn = f"http://{key}@127.0.0.1:{port}/{project_id}"
        senders = [
            subprocess.Popen([sys.executable, str(script), dsn, "120", tag], stdout=subprocess.PIPE, text=True)
            for tag in ("a", "b")
        ]
        sent = [json.loads(s.communicate(timeout=240)[0]) for s in senders]
        acknowledged = {event_id for ids in sent for event_id in ids}
        assert len(acknowledged) == 240
        stored = {row[0] for row in _count(root, "SELECT event_id FROM events")}
        assert stored == acknowledged  # flush() returned: every one was answered 200 after its commit
        issues = _count(root, "SELECT sum(event_count), count(*) FROM issues")[0]
        assert issues == (240, 3)
        users = _count(root, "SELECT sum(user_count) FROM issues")[0][0]
        assert users == len({f"{t}-{i % 7}-{i % 3}" for t in "ab" for i in range(120)})
        kept = _count(root, "SELECT count(*) FROM events WHERE payload IS NOT NULL")[0][0]
        assert 0 < kept < 120  # the keep policy ran in the workers: most events only counted

        # A worker killed mid-service is replaced by uvicorn; ingest answers on, with the settings the command
        # started with, though the repository's configuration changed meanwhile (here to one no process may start
        # with: a repository may not name the database).
        (root / "pyproject.toml").write_text('[tool.prodloop]\ndatabase_url = "postgresql://elsewhere/db"\n')
        victim = min(_workers(server))
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while (victim in _workers(server) or len(_workers(server)) < 2) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert victim not in _workers(server) and len(_workers(server)) == 2
        settled = _workers(server)
        time.sleep(3)  # a worker that failed to start would be replaced again meanwhile
        assert _workers(server) == settled
        url = f"http://127.0.0.1:{port}/api/{project_id}/envelope/"
        headers = {"X-Sentry-Auth": f"Sentry sentry_key={key}, sentry_version=7"}
        answers = [post(url, envelope_bytes(make_event(event_id=f"{n:032x}")), headers).status for n in range(20)]
        assert answers == [200] * 20
        assert _count(root, "SELECT count(*) FROM events")[0][0] == 260
    finally:
        server.send_signal(signal.SIGINT)
        try:
            _, errors = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            _, errors = server.communicate()
    assert server.returncode == 0
    assert "database_url" not in errors and "Traceback" not in errors, errors[-3000:]
    assert not _workers(server)


@pytest.mark.parametrize("processes", ["1", "2"])
def test_stopping_leaves_no_settings_file_behind(
    repo: tuple[Path, dict[str, str], int, str], tmp_path: Path, processes: str
) -> None:
    """The workers' settings (they may hold the database password and the MCP token) are gone once serving stops,
    by SIGTERM too (with one process uvicorn dies of the signal after shutting down: nothing is written then)."""
    root, env, _, _ = repo
    private = tmp_path / "tmp"
    private.mkdir()
    port = _free_port()
    server = subprocess.Popen(
        [*CLI, "serve-ingest", "--repo", str(root), "--port", str(port), "--processes", processes],
        env={**env, "TMPDIR": str(private)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait_for(port, server)
        assert len(list(private.glob("prodloop-ingest-*"))) == (processes == "2")
    finally:
        server.terminate()
        server.communicate(timeout=30)
    assert not list(private.glob("prodloop-ingest-*"))


def test_serve_ingest_refuses_a_public_bind_without_allowed_hosts_before_starting(
    repo: tuple[Path, dict[str, str], int, str],
) -> None:
    root, env, _, _ = repo
    done = subprocess.run(
        [*CLI, "serve-ingest", "--repo", str(root), "--host", "0.0.0.0", "--port", str(_free_port())],  # noqa: S104
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert "allowed_hosts" in done.stderr and "Traceback" not in done.stderr
