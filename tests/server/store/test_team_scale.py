"""Several prodloop processes on one PostgreSQL store, as a team runs them: a `serve --http` process and a
`serve-ingest --processes 2` (two ingest workers on one port) taking real sentry-sdk traffic, a headless `prodloop
loop` working an issue, and agents racing for one issue's budget and PR slots, all at once. Nothing acknowledged is
lost, every counter adds up, no reservation is granted twice, and every process finishes (a deadlock would leave one
waiting until its timeout: a failure)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from prodloop.server.store import Store
from tests import pg
from tests.conftest import envelope_bytes, post
from tests.sample_service import SampleService

SENDER = textwrap.dedent(
    """
    import json, sys
    import sentry_sdk

    dsn, count, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    sentry_sdk.init(dsn=dsn, release="shop@1.0.0", transport_queue_size=10_000, default_integrations=False)

    def parse_quantity(text):
        return int(text)

    def apply_coupon(cart, code):
        return cart["coupons"][code]

    def ship_to(address):
        return address.country.upper()

    ids = []
    for i in range(count):
        sentry_sdk.set_user({"id": f"{tag}-{i % 7}"})
        try:
            [lambda: parse_quantity(f"x{i}"), lambda: apply_coupon({"coupons": {}}, f"c{i}"),
             lambda: ship_to(None)][i % 3]()
        except Exception as exc:
            ids.append(sentry_sdk.capture_exception(exc))
    sentry_sdk.flush(timeout=120)
    print(json.dumps(ids))
    """
)

AGENT = textwrap.dedent(
    """
    import json, sys
    from prodloop.server.store import Store, policy

    url, issue, receipt = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    store = Store(url)
    runs = sum(policy.reserve_run(store, issue, max_runs=12, max_cpu_seconds=1e6, max_synthesis=9)[1]
               for _ in range(10))
    slots = [policy.reserve_pull_request(store, issue, receipt, max_per_issue=3, max_per_day=1000,
                                         now=2.0e9)[0] for _ in range(5)]
    store.close()
    print(json.dumps({"runs": runs, "slots": [s for s in slots if s is not None]}))
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"prodloop serve --http on {port} did not listen within 60 s")


@pytest.fixture
def team(tmp_path: Path) -> Iterator[tuple[SampleService, dict[str, str], str]]:
    url = pg.create_database()
    service = SampleService(tmp_path / "shop")
    remote = tmp_path / "origin.git"  # where the loop pushes its PR branch
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    service.git.git("remote", "add", "origin", str(remote))
    service.git.git("push", "-q", "origin", "main")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PRODLOOP_")},
        "PRODLOOP_DATABASE_URL": url, "PRODLOOP_TRIAGE__MODE": "off", "PRODLOOP_INGEST_RATE_LIMIT": "0",
        "PRODLOOP_MCP_TOKEN": "team-token-0123456789abcdef", "COLUMNS": "300",
    }  # fmt: skip
    yield service, env, url
    pg.drop_database(url)


def test_two_servers_a_loop_and_racing_agents_share_one_postgres_store(
    team: tuple[SampleService, dict[str, str], str],
) -> None:
    service, env, url = team
    cli = [sys.executable, "-m", "prodloop.server.cli"]
    init = subprocess.run([*cli, "init", "--repo", str(service.root), "--project", "shop"], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert init.returncode == 0, init.stderr
    store = Store(url)
    project = store.project_by_name("shop")
    assert project is not None
    ports = [_free_port(), _free_port()]
    commands = [
        [*cli, "serve", "--http", "--repo", str(service.root), "--port", str(ports[0])],
        [*cli, "serve-ingest", "--repo", str(service.root), "--port", str(ports[1]), "--processes", "2"],
    ]
    servers = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for command in commands
    ]
    try:
        for port, proc in zip(ports, servers, strict=True):
            _wait_for(port, proc)
        dsns = [f"http://{project.public_key}@127.0.0.1:{port}/{project.id}" for port in ports]
        # Issue 1: the sample service's real crash, which the loop works on.
        crash = service.event("unknown_sku")
        assert post(f"http://127.0.0.1:{ports[0]}/api/{project.id}/envelope/",
                    envelope_bytes(crash, dsn=dsns[0])).status == 200  # fmt: skip
        # The agents' issue, and a receipt their PR slots name.
        assert post(f"http://127.0.0.1:{ports[1]}/api/{project.id}/envelope/",
                    envelope_bytes(service.event("zero_divisor"), dsn=dsns[1])).status == 200  # fmt: skip
        agents_issue = max(i.id for i in store.list_issues()[0])
        with store.transaction() as conn:
            conn.execute(
                "INSERT INTO receipts (id, issue_id, event_id, commit_sha, test_path, test_name, test_code,"
                " test_sha256, fix_diff, fix_sha256, passed, gates, cpu_seconds, created_at)"
                " VALUES ('r-agents', ?, 'e', 'c', 'p', 'n', 'code', 's', 'd', 'f', 1, '[]', 0, 0)",
                (agents_issue,),
            )
        (service.root / "shop" / "pricing.py").write_text(
            (service.root / "shop" / "pricing.py")
            .read_text()
            .replace('PRICES[item["sku"]]', 'PRICES.get(item["sku"], 0)')
        )  # the agent's fix, in the working tree the loop proves it from

        senders = [
            subprocess.Popen(
                [sys.executable, "-c", SENDER, dsn, "150", f"s{n}"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for n, dsn in enumerate(dsns)
        ]
        agents = [
            subprocess.Popen(
                [sys.executable, "-c", AGENT, url, str(agents_issue), "r-agents"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        loop = subprocess.Popen([*cli, "loop", "--issue", "1", "--repo", str(service.root), "--json"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        sent = [json.loads(p.communicate(timeout=300)[0]) for p in senders]
        granted = [json.loads(p.communicate(timeout=300)[0]) for p in agents]
        loop_out, loop_err = loop.communicate(timeout=600)
    finally:
        for proc in servers:
            proc.terminate()
        for proc in servers:
            proc.communicate(timeout=60)
    assert servers[1].returncode == 0  # serve-ingest stopped cleanly, its workers with it

    # Nothing acknowledged is lost, nothing stored twice, and the issues' counters add up across all three writers.
    conn = store.reader()
    stored = {row[0] for row in conn.execute("SELECT event_id FROM events")}
    ids = [i for batch in sent for i in batch]
    assert len(ids) == 300 and None not in ids
    assert set(ids) <= stored
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 302
    assert conn.execute("SELECT sum(event_count) FROM issues").fetchone()[0] == 302
    per_issue = dict(conn.execute("SELECT issue_id, count(*) FROM events GROUP BY issue_id").fetchall())
    assert per_issue == dict(conn.execute("SELECT id, event_count FROM issues").fetchall())
    users = dict(conn.execute("SELECT issue_id, count(*) FROM issue_users GROUP BY issue_id").fetchall())
    assert users == {i: n for i, n in conn.execute("SELECT id, user_count FROM issues") if n}
    assert conn.execute("SELECT sum(n) FROM issue_counts").fetchone()[0] == len(per_issue)
    # No reservation granted twice: 12 runs and 3 PR slots in all, whoever asked.
    assert sum(g["runs"] for g in granted) == 12
    slots = [s for g in granted for s in g["slots"]]
    assert len(slots) == len(set(slots)) == 3
    budget = conn.execute("SELECT runs FROM budgets WHERE issue_id = ?", (agents_issue,)).fetchone()
    assert budget[0] == 12
    # The loop worked its issue to a PR on the same store meanwhile.
    assert loop.returncode == 0, (loop_out[-3000:], loop_err[-3000:])
    (report,) = json.loads(loop_out)
    assert report["outcome"] == "pr_opened"
    assert (
        conn.execute("SELECT count(*) FROM pull_requests WHERE issue_id = 1 AND mode != 'pending'").fetchone()[0] == 1
    )
    store.close()
