"""SQLite writers of several processes take turns on a file lock beside the database (`<db>-writelock`), so a waiting
writer starts when the commit before it ends instead of sleeping in SQLite's busy handler. The lock is held for the
whole write transaction and no longer; a symlink planted where the lock file goes is not followed."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from prodloop.server.errors import StoreError
from prodloop.server.store import Store

WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from prodloop.server.store import Store

    store = Store(Path(sys.argv[1]))
    for _ in range(int(sys.argv[2])):
        with store.transaction() as conn:
            (n,) = conn.execute("SELECT count(*) FROM projects").fetchone()
            conn.execute("INSERT INTO projects (name, public_key, created_at) VALUES (?, ?, 0)",
                         (f"p{n}", f"k{n}"))
    store.close()
    """
)


def _locked_by_someone(path: Path) -> bool:
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_a_write_transaction_holds_the_file_lock_and_releases_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "prodloop.db")
    lock = tmp_path / "prodloop.db-writelock"
    try:
        assert lock.stat().st_mode & 0o777 == 0o600
        assert not _locked_by_someone(lock)
        with store.transaction():
            assert _locked_by_someone(lock)
        assert not _locked_by_someone(lock)
        try:
            with store.transaction():
                raise ValueError("rolled back")
        except ValueError:
            pass
        assert not _locked_by_someone(lock)  # released on rollback too
    finally:
        store.close()


def test_writers_in_three_processes_each_see_the_others_commits(tmp_path: Path) -> None:
    db = tmp_path / "prodloop.db"
    Store(db).close()
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    procs = [subprocess.Popen([sys.executable, str(script), str(db), "150"]) for _ in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    store = Store(db)
    try:
        names = {p.name for p in store.list_projects()}
    finally:
        store.close()
    assert names == {f"p{n}" for n in range(450)}  # read-modify-write in turn: no name taken twice


def test_a_symlink_where_the_lock_file_goes_is_not_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    (tmp_path / "prodloop.db-writelock").symlink_to(elsewhere)
    store = Store(tmp_path / "prodloop.db")
    try:
        with store.transaction() as conn:
            conn.execute("INSERT INTO projects (name, public_key, created_at) VALUES ('a', 'k', 0)")
        assert [p.name for p in store.list_projects()] == ["a"]
    finally:
        store.close()
    assert not elsewhere.exists()


def test_a_writer_that_cannot_have_the_lock_gives_up_as_sqlite_would(tmp_path: Path) -> None:
    """A stopped or hung process holding the lock: the writer gives up after its timeout with "database is locked"
    (ingest answers 503, resend) instead of waiting for ever; what was stored stays."""
    store = Store(tmp_path / "prodloop.db")
    store.create_project("kept")
    store.engine._across._timeout = 0.3  # type: ignore[union-attr]  # 30 s in service
    holder = os.open(tmp_path / "prodloop.db-writelock", os.O_RDONLY)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        with pytest.raises(StoreError, match="database is locked"):
            store.create_project("late")
        fcntl.flock(holder, fcntl.LOCK_UN)
        store.create_project("after")
        assert sorted(p.name for p in store.list_projects()) == ["after", "kept"]
    finally:
        os.close(holder)
        store.close()


def test_a_writer_waiting_for_the_lock_when_the_store_closes_gives_up(tmp_path: Path) -> None:
    """The lock's descriptor number may name another file once closed: a waiting writer must not take that."""
    import threading

    store = Store(tmp_path / "prodloop.db")
    holder = os.open(tmp_path / "prodloop.db-writelock", os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    outcome: list[object] = []

    def write() -> None:
        try:
            store.create_project("late")
            outcome.append("written")
        except StoreError as exc:
            outcome.append(str(exc))

    writer = threading.Thread(target=write)
    writer.start()
    try:
        time.sleep(0.3)  # the writer is polling for the lock
        store.engine._across.close()  # type: ignore[union-attr]
        writer.join(10)
    finally:
        os.close(holder)
        store.close()
    assert len(outcome) == 1 and "closed" in str(outcome[0])
