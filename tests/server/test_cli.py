"""The `prodloop` command as a user runs it: real subprocesses, real files."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prodloop.server.auth import ensure_token
from prodloop.server.store import Store
from tests.conftest import make_event


def _run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PRODLOOP_")}, **(env or {})}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "prodloop.server.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_init_creates_the_store_and_prints_dsn_and_agent_setup(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    done = _run("init", "--repo", str(tmp_path), "--project", "shop", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    store = Store(tmp_path / ".prodloop" / "prodloop.db")
    project = store.project_by_name("shop")
    store.close()
    assert project is not None
    assert f"http://{project.public_key}@127.0.0.1:8765/{project.id}" in done.stdout
    assert f"claude mcp add prodloop -- prodloop serve --repo {tmp_path}" in done.stdout
    assert "sdk_capture.py into the service as prodloop_capture.py" in done.stdout
    snippet = json.loads(done.stdout[done.stdout.index("{") :])
    assert snippet["mcpServers"]["prodloop"]["args"] == ["serve", "--repo", str(tmp_path)]
    status = subprocess.run(["git", "-C", str(tmp_path), "status", "--porcelain"], capture_output=True, text=True)
    assert ".prodloop" not in status.stdout  # the store and tokens can never be committed by accident
    again = _run("init", "--repo", str(tmp_path), "--project", "shop", cwd=tmp_path)
    assert project.public_key in again.stdout  # idempotent: same project, same key


def test_ingest_imports_json_array_and_json_lines_and_names_bad_lines(tmp_path: Path) -> None:
    one, two, three = make_event(), make_event(), make_event()
    (tmp_path / "a.json").write_text(json.dumps([one, two]))
    (tmp_path / "b.jsonl").write_text(json.dumps(three) + "\n" + json.dumps({"event_id": "nothex"}) + "\n")
    done = _run("ingest", str(tmp_path / "a.json"), str(tmp_path / "b.jsonl"), "--repo", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 1
    assert "a.json: 2 stored, 0 already held, 0 refused" in done.stderr
    assert "b.jsonl: 1 stored, 0 already held, 1 refused" in done.stderr
    assert "line 2 has an invalid event_id" in done.stderr
    repeat = _run("ingest", str(tmp_path / "a.json"), "--repo", str(tmp_path), cwd=tmp_path)
    assert "0 stored, 2 already held" in repeat.stderr
    issues = _run("issues", "--repo", str(tmp_path), cwd=tmp_path)
    assert "KeyError: 'sku'" in issues.stdout
    assert "1 issues" in issues.stdout


def test_ingest_of_a_broken_file_stores_nothing_and_says_where(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text(json.dumps(make_event()) + "\n{not json\n")
    done = _run("ingest", str(tmp_path / "bad.jsonl"), "--repo", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2
    assert "bad.jsonl (line 2): is not valid JSON" in done.stderr
    store = Store(tmp_path / ".prodloop" / "prodloop.db")
    assert store.count_events() == 0
    store.close()


def test_resolve_and_prune_from_the_command_line(tmp_path: Path) -> None:
    now = time.time()
    events = [make_event(timestamp=now - 100 * 86400, release="shop@1"), make_event(timestamp=now, release="shop@1")]
    (tmp_path / "e.json").write_text(json.dumps(events))
    assert _run("ingest", str(tmp_path / "e.json"), "--repo", str(tmp_path), cwd=tmp_path).returncode == 0
    done = _run("resolve", "1", "--in-release", "shop@2", "--repo", str(tmp_path), cwd=tmp_path)
    assert (done.returncode, done.stdout.strip()) == (0, "issue 1 is resolved in shop@2"), done.stderr
    missing = _run("resolve", "7", "--repo", str(tmp_path), cwd=tmp_path)
    assert missing.returncode == 2 and "no issue with id 7" in missing.stderr
    pruned = _run("prune", "--repo", str(tmp_path), cwd=tmp_path)
    assert pruned.returncode == 0, pruned.stderr
    # The 100-day-old event is past event_days (90); its hour folded into its day (older than 14 days).
    assert "1 issue hour rows folded into days" in pruned.stdout and "and 1 events removed" in pruned.stdout
    store = Store(tmp_path / ".prodloop" / "prodloop.db")
    assert (store.count_events(), store.get_issue(1).status, store.get_issue(1).event_count) == (1, "resolved", 2)
    store.close()


def test_triage_then_a_persons_decisions_and_how_often_they_agreed(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "e.json").write_text(json.dumps([make_event(timestamp=time.time() - 3600)]))
    assert _run("ingest", str(tmp_path / "e.json"), "--repo", str(tmp_path), cwd=tmp_path).returncode == 0
    early = _run("triage", "approve", "1", "--by", "Ada", "--repo", str(tmp_path), cwd=tmp_path)
    assert early.returncode == 2 and "run prodloop triage first" in early.stderr
    table = _run("triage", "--repo", str(tmp_path), cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "observation" in table.stdout and "volume: 1 events since onset (needs 10)" in table.stdout
    assert "mode approve: 0 actionable, 1 observations" in table.stdout
    report = json.loads(_run("triage", "--json", "--repo", str(tmp_path), cwd=tmp_path).stdout)
    assert [s["classification"] for s in report["signals"]] == ["observation"]
    nameless = _run("triage", "approve", "1", "--by", " ", "--repo", str(tmp_path), cwd=tmp_path)
    assert nameless.returncode == 2 and "needs the name of the person" in nameless.stderr
    done = _run("triage", "reject", "1", "--by", "Ada", "--why", "one event", "--repo", str(tmp_path), cwd=tmp_path)
    assert done.stdout.strip() == "issue 1 rejected by Ada (triage said observation)", done.stderr
    agreed = _run("triage", "report", "--repo", str(tmp_path), cwd=tmp_path)
    assert "1 decisions; people agreed with triage in 1 (100%)" in agreed.stdout


def test_mcp_token_is_created_once_with_owner_only_permissions(tmp_path: Path) -> None:
    token, created = ensure_token(tmp_path)
    again, created_again = ensure_token(tmp_path)
    assert (created, created_again) == (True, False)
    assert token == again
    assert stat.S_IMODE((tmp_path / "mcp-token").stat().st_mode) == 0o600


def test_deploy_record_resolves_the_commit_and_refuses_unknown_ones(tmp_path: Path) -> None:
    from tests.repos import new_repo

    repo = new_repo(tmp_path)
    sha = repo.commit({"app.py": "x = 1\n"}, "c1")
    repo.tag("v1")
    done = _run("deploy", "record", "--release", "app@1", "--commit", "v1", "--time", "2026-11-22T10:00:00Z",
                "--repo", str(tmp_path), cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"app@1 = {sha[:12]} to production at 2026-11-22T10:00:00Z" in done.stdout
    bad = _run("deploy", "record", "--release", "x", "--commit", "nope", "--repo", str(tmp_path), cwd=tmp_path)
    assert bad.returncode == 2
    assert "nope names no commit" in bad.stderr
    bad_time = _run("deploy", "record", "--release", "x", "--commit", "v1", "--time", "yesterday",
                    "--repo", str(tmp_path), cwd=tmp_path)  # fmt: skip
    assert bad_time.returncode == 2
    assert "not an ISO 8601 time" in bad_time.stderr


def test_loop_exit_codes_say_what_is_needed(tmp_path: Path) -> None:
    from prodloop.server.context import AppContext
    from prodloop.server.ingest.importer import import_events
    from prodloop.server.settings import load_settings
    from tests.sample_service import SampleService

    service = SampleService(tmp_path / "shop")
    ctx = AppContext.open(load_settings(repo=service.root, data_dir=tmp_path / "data"))
    import_events(ctx, ctx.store.create_project("shop"), [("e", service.event("unknown_sku"))], source="test")
    ctx.close()
    args = ("loop", "--issue", "1", "--repo", str(service.root), "--data-dir", str(tmp_path / "data"))
    gated = _run(*args, "--json", cwd=tmp_path)  # triage.mode approve (the default): a person has not approved
    assert gated.returncode == 5 and "prodloop triage approve 1" in json.loads(gated.stdout)[0]["needed"]
    triage_off = {"PRODLOOP_TRIAGE__MODE": "off"}
    needs = _run(*args, "--json", cwd=tmp_path, env=triage_off)
    assert needs.returncode == 3, needs.stderr
    (report,) = json.loads(needs.stdout)
    assert report["outcome"] == "needs_agent"
    assert "change the code in the working tree to fix it" in report["needed"]
    assert "def test_line_total_does_not_raise_keyerror_issue_1" in report["test_code"]
    assert [s["name"] for s in report["steps"]][:2] == ["map_code_path", "synthesize_regression_test"]
    (tmp_path / "shop" / "pyproject.toml").write_text("[tool.prodloop.budgets]\nmax_synthesis_attempts = 1\n")
    exhausted = _run(*args, cwd=tmp_path, env=triage_off)
    assert exhausted.returncode == 4
    assert "budget of issue 1 is exhausted" in exhausted.stderr
    assert "synthesis budget: 1 of 1 synthesis attempts used" in exhausted.stderr
    assert _run("loop", "--repo", str(service.root), cwd=tmp_path).returncode == 2


def test_serve_http_prints_the_token_once_and_guards_mcp_with_it(tmp_path: Path) -> None:
    import socket
    import time
    import urllib.error
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRODLOOP_")}
    cmd = [sys.executable, "-m", "prodloop.server.cli", "serve", "--http", "--repo", str(tmp_path), "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                    assert json.loads(resp.read())["status"] == "ok"
                break
            except OSError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        token = (tmp_path / ".prodloop" / "mcp-token").read_text().strip()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/mcp", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 401
        refused.value.close()
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    assert stderr.count(token) == 1  # shown once, on the terminal only
    assert stat.S_IMODE((tmp_path / ".prodloop" / "mcp-token").stat().st_mode) == 0o600


def test_doctor_says_what_is_missing_and_how_to_fix_it(tmp_path: Path) -> None:
    from tests.sample_service import SampleService

    service = SampleService(tmp_path / "shop")
    args = ("doctor", "--repo", "shop", "--data-dir", str(tmp_path / "data"))
    ready = _run(*args, cwd=tmp_path)  # a relative --repo works too
    assert ready.returncode == 0, ready.stdout
    assert f"✓ repository: {service.root}" in ready.stdout
    assert "✓ pytest: pytest" in ready.stdout
    assert "✓ mutmut:" in ready.stdout
    broken = _run(*args, cwd=tmp_path, env={"PRODLOOP_SERVICE_PYTHON": str(tmp_path / "no-venv" / "python")})
    assert broken.returncode == 1
    assert "✗ service interpreter" in broken.stdout
    assert "fix: create the service's venv" in broken.stdout


def test_a_sort_key_is_a_known_column_never_sql(tmp_path: Path) -> None:
    from prodloop.server.errors import InvalidArgument
    from prodloop.server.store import Store
    from tests.sample_service import SampleService

    service = SampleService(tmp_path / "shop")
    args = ("issues", "--repo", str(service.root), "--data-dir", str(tmp_path / "data"))
    assert _run(*args, "--order-by", "event_count", cwd=tmp_path).returncode == 0
    hostile = _run(*args, "--order-by", "event_count; DROP TABLE issues; --", cwd=tmp_path)
    assert hostile.returncode == 2 and "is not a sort key" in hostile.stderr + hostile.stdout
    store = Store(tmp_path / "data" / "prodloop.db")
    try:
        with pytest.raises(InvalidArgument, match="is not a sort key; use one of last_seen"):
            store.list_issues(order="id DESC; DROP TABLE issues; --")  # type: ignore[arg-type]
        assert store.list_issues()[1] == 0  # the table is still there
    finally:
        store.close()


def test_watch_exit_codes_and_only_a_person_releases_a_cord_or_resets_a_budget(tmp_path: Path) -> None:
    """`prodloop watch` on a store filled by the scenario simulator up to the real clock: a deployed fix judged
    fixed and a bad deploy's cord (exit 6); `andon release` and `budget reset` need who and why."""
    import time

    from tests.post_merge_sim import HOUR, Sim

    now = time.time()
    sim = Sim(tmp_path / "shop", tmp_path / "data", start=now - 31 * HOUR)
    sim.traffic(now - 7 * HOUR, lambda t: 20.0)
    sim.merge(sim.open_fix_pr())
    sim.deploy("shop@1.1.0")
    sim.traffic(now - 0.5 * HOUR, lambda t: 0.0, release="shop@1.1.0")
    sim.deploy("shop@1.2.0", sim.change("shop/loyalty.py", "# rewritten\n"))
    sim.traffic(now, lambda t: 60.0, crash="zero_rate", release="shop@1.2.0", step=60.0)
    sim.close()
    where = ("--repo", str(sim.root), "--data-dir", str(tmp_path / "data"))
    watched = _run("watch", "--json", *where, cwd=tmp_path)
    assert watched.returncode == 6, watched.stderr
    report = json.loads(watched.stdout)
    assert report["lineages"][0]["verdict"] == "fixed" and report["cords_pulled"][0]["id"] == 1
    status = json.loads(_run("andon", "status", *where, cwd=tmp_path).stdout)
    assert status["quarantined_paths"] == ["shop/loyalty.py"]
    stopped = _run("loop", "--issue", "2", "--json", *where, cwd=tmp_path, env={"PRODLOOP_TRIAGE__MODE": "off"})
    assert stopped.returncode == 6, stopped.stderr  # the crash in loyalty.py is quarantined: the loop stops
    assert "prodloop andon release 1" in json.loads(stopped.stdout)[0]["needed"]
    refused = _run("andon", "release", "1", "--by", "ana", *where, cwd=tmp_path)
    assert refused.returncode == 2 and "--why" in refused.stderr
    released = _run("andon", "release", "1", "--by", "ana", "--why", "reverted by hand", *where, cwd=tmp_path)
    assert released.returncode == 0 and "released by ana" in released.stdout
    assert _run("watch", *where, cwd=tmp_path).returncode == 0
    assert _run("budget", "reset", "1", *where, cwd=tmp_path).returncode == 2  # --by and --why are required
    reset = _run("budget", "reset", "1", "--by", "ana", "--why", "new approach", *where, cwd=tmp_path)
    assert reset.returncode == 0 and '"runs_used": 0' in reset.stdout
