"""query_reliability_history over a real repository, a real store and real sentry-sdk events: what production says
about a file, a folder and a function, and what followed the deploys that changed them."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from prodloop.server.clock import FixedClock
from prodloop.server.context import AppContext
from prodloop.server.errors import InvalidArgument
from prodloop.server.ingest.importer import import_events
from prodloop.server.mcp_app import build_mcp
from prodloop.server.settings import load_settings
from prodloop.server.store.records import Health, SessionCounts, TransactionSample
from prodloop.tools.engine.git_repo import GitRepo
from prodloop.tools.locate.code_path import map_code_path
from prodloop.tools.observe.reliability import query_reliability_history
from tests.sample_service import SampleService

HOUR, DAY = 3600.0, 86400.0


@pytest.fixture
def history_ctx(tmp_path: Path) -> Iterator[AppContext]:
    service = SampleService(tmp_path / "shop")
    event = service.event("unknown_sku")
    changed = service.git.commit(
        {"shop/pricing.py": '"""Prices."""\n\nPRICES = {"apple": 30, "pear": 45, "plum": 12}\n\n\n'
         "def line_total(item):\n    return PRICES[item[\"sku\"]] * item[\"qty\"]\n\n\n"
         "def cart_total(cart):\n    return sum(line_total(item) for item in cart[\"items\"])\n"},
        "pricing: add plums", author="Bo Coder",
    )  # fmt: skip
    # The fixture's commits are dated from 1_780_000_000 on, an hour apart: "now" is twelve days later.
    now = 1_780_000_000.0 + 12 * DAY
    ctx = AppContext.open(load_settings(repo=service.root, data_dir=tmp_path / "data"), clock=FixedClock(at=now))
    first, second = now - 10 * DAY, now - 5 * DAY
    ctx.store.record_deploy(
        release="shop@1.0.0", commit_sha=service.commit, environment="production", deployed_at=first
    )
    ctx.store.record_deploy(release="shop@1.1.0", commit_sha=changed, environment="production", deployed_at=second)
    project = ctx.store.create_project("shop")
    events: list[tuple[str, dict[str, Any]]] = []
    for n, at in enumerate((second + HOUR, second + 25 * HOUR)):
        copy_ = copy.deepcopy(event)
        copy_.update(event_id=f"{n + 1:032x}", timestamp=at, release="shop@1.1.0", transaction="/cart")
        events.append((f"e{n}", copy_))
    import_events(ctx, project, events, source="test")
    hour = int((second + HOUR) // 3600)
    ctx.store.write_events([], [Health(
        sessions=[SessionCounts(project.id, "shop@1.1.0", "production", hour, started=20, errored=3, crashed=2)],
        transactions=[TransactionSample(project.id, "/cart", "shop@1.1.0", "production", hour, failed, ms)
                      for failed, ms in ((False, 40.0), (False, 60.0), (True, 900.0), (False, 50.0))],
    )])  # fmt: skip
    yield ctx
    ctx.close()


def _history(ctx: AppContext, path: str, **kwargs: Any) -> Any:
    return query_reliability_history(ctx.store, ctx.git(), ctx.settings, ctx.clock, path=path, **kwargs)


def test_a_file_shows_its_issues_releases_transactions_deploys_churn_importers_and_tests(
    history_ctx: AppContext,
) -> None:
    h = _history(history_ctx, "shop/pricing.py")
    assert (h.kind, h.issues_total, h.events, h.events_share) == ("file", 1, 2, 1.0)
    assert h.issues[0].title.startswith("KeyError")
    assert sum(d.events for d in h.events_per_day) == 2
    assert [(r.release, r.sessions, r.crash_free_rate) for r in h.releases] == [("shop@1.1.0", 20, 0.9)]
    assert [(t.name, t.count, t.failure_rate) for t in h.transactions] == [("/cart", 4, 0.25)]
    assert 800 <= (h.transactions[0].p95_ms or 0) <= 1000
    # The second deploy changed pricing.py and the KeyError issue appeared an hour later: a change failure,
    # restored when its events stopped, 25 hours after the deploy. The first deploy has nothing to diff against.
    assert [(d.release, d.commits_touching, d.failed, d.restored_after_hours) for d in h.deploys] == [
        ("shop@1.1.0", 1, True, 25.0)
    ]
    assert (h.delivery.deploys_touching, h.delivery.change_failure_rate) == (1, 1.0)
    assert h.delivery.median_time_to_restore_hours == 25.0
    assert any("no earlier deploy" in n for n in h.notes)
    assert (h.churn.commits, sorted(h.churn.authors)) == (2, ["Ada Dev", "Bo Coder"])
    assert h.blast_radius.importers == ["shop.checkout", "tests.test_pricing"]
    assert h.tests.related_tests == ["tests/test_pricing.py"]
    assert (h.tier.tier, len(h.tier.reasons)) == (2, 1) and "100% of the window" in h.tier.reasons[0]


def test_an_issue_that_came_back_after_its_fix_shows_and_map_code_path_gives_each_files_tier(
    history_ctx: AppContext, service: SampleService
) -> None:
    ctx = history_ctx
    code_path = map_code_path(ctx.store, ctx.git(), issue_id=1, reliability=ctx.settings.reliability)
    assert [(f.path, f.tier) for f in code_path.reliability] == [("shop/pricing.py", 2)]
    assert code_path.reliability[0].reasons == ["100% of the window's error events (tier 2 from 25%)"]
    calm = ctx.settings.reliability.model_copy(update={"tier2_users": 10_000, "tier2_importers": 5})
    clock = ctx.clock
    assert isinstance(clock, FixedClock)
    clock.at -= 2 * HOUR  # resolved two hours ago, seen again an hour later in the release said to fix it
    ctx.store.set_status(1, "resolved", in_release="shop@1.2.0")
    clock.at += 2 * HOUR
    back = copy.deepcopy(service.event("unknown_sku"))
    back.update(event_id=f"{99:032x}", timestamp=ctx.clock.now() - HOUR, release="shop@1.2.0")
    import_events(ctx, ctx.store.list_projects()[0], [("back", back)], source="test")
    h = _history(ctx, "shop/pricing.py")
    assert [(i.status, i.regressions) for i in h.issues] == [("unresolved", 1)]
    assert "its issues came back 1 time(s) after being resolved" in h.tier.reasons
    again = map_code_path(ctx.store, ctx.git(), issue_id=1, reliability=calm).reliability
    assert [(f.tier, f.reasons[1:]) for f in again] == [(2, ["its issues came back 1 time(s) after being resolved"])]


def test_a_folder_rolls_its_files_up_and_a_function_narrows_to_its_frames(history_ctx: AppContext) -> None:
    folder = _history(history_ctx, "shop/")
    assert (folder.kind, folder.issues_total, folder.events) == ("folder", 1, 2)
    assert folder.blast_radius.importers == ["tests.test_pricing"]  # shop.checkout is inside the folder
    assert _history(history_ctx, "shop/pricing.py::line_total").issues_total == 1
    assert _history(history_ctx, "shop/auth.py").issues_total == 0
    assert _history(history_ctx, "shop/pricing.py::_audit").issues_total == 0
    old = _history(history_ctx, "shop/pricing.py", days=1)  # the events are older than a day
    assert (old.issues_total, old.events, old.tier.tier) == (0, 0, 1)


@pytest.mark.parametrize("bad", ["../etc/passwd", "-rf", "/etc/passwd", "shop/nothing.py", "shop/pricing.py::a b"])
def test_a_path_outside_the_repository_or_unknown_is_a_clear_error(history_ctx: AppContext, bad: str) -> None:
    with pytest.raises(InvalidArgument, match="path"):
        _history(history_ctx, bad)


@pytest.mark.anyio
async def test_the_tool_answers_over_mcp(history_ctx: AppContext, anyio_backend: str) -> None:
    async with Client(build_mcp(history_ctx)) as client:
        result = await client.call_tool("query_reliability_history", {"path": "shop/pricing.py", "days": 30})
        with pytest.raises(MCPError, match=r"argument path: \.\./secrets is not a path inside the repository"):
            await client.call_tool("query_reliability_history", {"path": "../secrets"})
    assert result.structured_content is not None and result.structured_content["tier"]["tier"] == 2
    assert json.loads(result.content[0].text)["issues_total"] == 1  # type: ignore[union-attr]


def test_the_cli_prints_the_history_and_json(history_ctx: AppContext) -> None:
    settings = history_ctx.settings
    # The CLI runs on the system clock: a year's window holds the fixture's dates.
    command = [sys.executable, "-m", "prodloop.server.cli", "reliability", "shop/pricing.py", "--days", "365", "--repo",
               str(settings.repo), "--data-dir", str(settings.resolved_data_dir)]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRODLOOP_")}
    printed = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=120, env=env)
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout)["delivery"]["change_failure_rate"] == 1.0
    table = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert "tier 2" in table.stdout and "change failure rate 100%" in table.stdout, table.stdout
    refused = subprocess.run([*command[:4], "../x", *command[5:]], capture_output=True, text=True, env=env)
    assert refused.returncode != 0 and "not a path inside the repository" in refused.stderr


def test_a_rollback_between_deploys_counts_the_commits_each_deploy_brought(tmp_path: Path) -> None:
    """Deploys C3, then a rollback to C1, then C5: the last brings C2..C5 again (three touch the file)."""
    from tests.repos import new_repo

    fixture = new_repo(tmp_path / "r")
    shas = [fixture.commit({"app.py": f"x = {n}\n", "other.py": f"y = {n % 2}\n"}, f"c{n}") for n in range(1, 6)]
    repo = GitRepo(fixture.root)
    c1, _, c3, _, c5 = shas
    assert repo.touching_per_range([(c3, c1), (c1, c5)], ("app.py",)) == [0, 4]
    assert repo.touching_per_range([(c1, c3), (c3, c1), (c1, c5)], ("other.py",)) == [2, 0, 4]
    assert repo.touching_per_range([(c1, c5)], ("*.py",)) == [0]  # a path, never a pattern


def test_the_repositorys_files_are_ranked_by_tier_then_events(history_ctx: AppContext) -> None:
    from prodloop.tools.observe.reliability import rank_modules

    ranked = rank_modules(history_ctx.store, history_ctx.git(), history_ctx.settings, history_ctx.clock, days=30)
    assert [(m.path, m.tier, m.issues, m.events, m.change_failure_rate) for m in ranked][:1] == [
        ("shop/pricing.py", 2, 1, 2, 1.0)
    ]
    assert all(m.path.endswith(".py") for m in ranked)
    settings = history_ctx.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRODLOOP_")}
    command = [sys.executable, "-m", "prodloop.server.cli", "reliability", "--days", "365", "--json", "--repo",
               str(settings.repo), "--data-dir", str(settings.resolved_data_dir)]  # fmt: skip
    printed = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout)[0]["path"] == "shop/pricing.py"
