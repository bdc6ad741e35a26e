"""`prodloop store copy`: a SQLite store into an empty PostgreSQL one, whole or not at all; `prodloop migrate`."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from prodloop.server.errors import InvalidArgument, StoreError
from prodloop.server.store import Store, lineage, policy
from prodloop.server.store.copy import copy_store
from tests import pg
from tests.conftest import make_event


@pytest.fixture
def target() -> Iterator[str]:
    url = pg.create_database()
    yield url
    pg.drop_database(url)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PRODLOOP_")}, "COLUMNS": "300"}
    return subprocess.run(
        [sys.executable, "-m", "prodloop.server.cli", *args], cwd=cwd, capture_output=True, text=True, env=env,
        timeout=120,
    )  # fmt: skip


def _filled(repo: Path) -> Path:
    """A SQLite store as a user's would be: events ingested by the command line, a deploy, a resolution, a PR
    slot and its provenance, a budget reservation."""
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    events = [make_event(user={"id": f"u{i % 3}"}, release=f"shop@{i % 2}") for i in range(5)]
    events += [make_event(exception={"values": [{"type": "ValueError", "value": f"bad {i}"}]}) for i in range(3)]
    (repo / "events.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\n")
    done = _cli("ingest", str(repo / "events.jsonl"), "--repo", str(repo), cwd=repo)
    assert done.returncode == 0, done.stderr
    path = repo / ".prodloop" / "prodloop.db"
    store = Store(path)
    deploy = store.record_deploy(release="shop@1", commit_sha="a" * 40, environment="production", deployed_at=1.0e9)
    issue = store.list_issues()[0][0]
    store.set_status(issue.id, "resolved", in_release="shop@2")
    policy.reserve_run(store, issue.id, max_runs=5, max_cpu_seconds=60.0, max_synthesis=3)
    cord = lineage.pull_cord(
        store, deploy_id=deploy, release="shop@1", environment="production", commit_sha="a" * 40,
        previous_commit=None, paths=["shop/cart.py"], evidence=[{"kind": "issue_rate"}], blast_radius={}, at=1.1e9,
    )  # fmt: skip
    assert cord is not None
    store.close()
    return path


def _rows(store: Store) -> dict[str, list[tuple[object, ...]]]:
    conn = store.reader()
    names = ["projects", "issues", "events", "issue_users", "issue_hourly", "issue_releases", "issue_frames",
             "deploys", "budgets", "andon_cords", "escalations", "issue_counts"]  # fmt: skip
    return {n: sorted(tuple(r) for r in conn.execute(f"SELECT * FROM {n}")) for n in names}


def test_a_sqlite_store_copies_whole_and_the_copy_goes_on_from_its_largest_ids(tmp_path: Path, target: str) -> None:
    path = _filled(tmp_path)
    done = _cli("store", "copy", "--from", str(path), "--to", target, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "events: 8 rows" in done.stdout and "set PRODLOOP_DATABASE_URL" in done.stdout
    source, copy = Store(path), Store(target)
    try:
        assert _rows(copy) == _rows(source)  # every row, every value (floats and the kept issue counts included)
        assert copy.list_issues(order="event_count") == source.list_issues(order="event_count")
        event = source.list_issues()[0][0]
        assert copy.latest_event(event.id) == source.latest_event(event.id)
        new = copy.create_project("after-the-copy")  # identity columns continue past the copied ids
        assert new.id == max(p.id for p in source.list_projects()) + 1
        assert copy.record_deploy(release="x", commit_sha="b" * 40, environment="e", deployed_at=1.0) == 2
        conn = copy.reader()
        conn.execute(
            "INSERT INTO issues (project_id, fingerprint, title, first_seen, last_seen) VALUES (?, 'new', 't', 1, 1)",
            (new.id,),
        )  # the counts' triggers are on again after the copy
        counts = conn.execute("SELECT sum(n) FROM issue_counts").fetchone()[0]
        assert counts == conn.execute("SELECT count(*) FROM issues").fetchone()[0] == len(_rows(source)["issues"]) + 1
    finally:
        source.close()
        copy.close()


def test_a_target_holding_rows_is_refused_and_left_as_it_was(tmp_path: Path, target: str) -> None:
    path = _filled(tmp_path)
    store = Store(target)
    store.create_project("already-here")
    store.close()
    with pytest.raises(InvalidArgument, match=r"already holds rows .in projects.*empty database"):
        copy_store(path, target)
    store = Store(target)
    assert [p.name for p in store.list_projects()] == ["already-here"]
    assert store.count_events() == 0
    store.close()


def test_a_value_postgres_refuses_rolls_the_whole_copy_back_and_names_it(tmp_path: Path, target: str) -> None:
    path = _filled(tmp_path)
    raw = sqlite3.connect(path)
    raw.execute("UPDATE events SET received = 'yesterday' WHERE id = 3")  # SQLite keeps text in a REAL column
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match=r"(?s)store write failed .*yesterday.*COPY events, line 3, column received"):
        copy_store(path, target)
    store = Store(target)
    assert store.list_projects() == [] and store.count_events() == 0  # nothing half-copied
    store.close()


def test_migrate_says_the_engine_and_version_and_never_the_password(tmp_path: Path, target: str) -> None:
    with_password = target.replace("postgresql://postgres@", "postgresql://postgres:hunter2-secret@")
    done = _cli("migrate", "--database-url", with_password, "--repo", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr  # trust auth: the password is not checked, only carried
    assert "postgres store postgresql://postgres@127.0.0.1:5432/" in done.stdout
    assert "schema version" in done.stdout
    assert "hunter2" not in done.stdout + done.stderr
    for url in ("postgresql://nobody:hunter2-secret@127.0.0.1:1,127.0.0.1:2/x", "postgresql://n:hunter2%zz@h/x"):
        odd = _cli("migrate", "--database-url", url, cwd=tmp_path)  # libpq's URL forms: a clear error, no secret
        assert odd.returncode != 0 and "store open failed for postgresql://n" in odd.stderr, odd.stderr
        assert "hunter2" not in odd.stdout + odd.stderr and "Traceback" not in odd.stderr
    broken = _cli("migrate", "--database-url", "postgresql://nobody:hunter2-secret@127.0.0.1:1/x", cwd=tmp_path)
    assert broken.returncode != 0
    assert "store open failed for postgresql://nobody@127.0.0.1:1/x" in broken.stderr
    assert "hunter2" not in broken.stdout + broken.stderr
