"""What the closing stage must not be talked into (found by a review that attacked it): forged sessions, a step down
before the deploy, silence, pruned events, a mention of the receipt, a stranger's webhook, one user's events, an
unknown commit, dot-paths, and a repository's settings. Each test failed before its fix."""

from __future__ import annotations

import dataclasses
import json
import math
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from prodloop.server.errors import ConfigError, Quarantined
from prodloop.server.ingest.pipeline import EventProcessor
from prodloop.server.settings import load_settings
from prodloop.server.store import lineage, policy
from prodloop.tools.observe.andon import require_unquarantined
from tests.post_merge_sim import HOUR, START, Sim


def _sessions(s: Sim, started: int, release: str = "shop@1.0.0", aggregates: int = 1) -> None:
    """A `sessions` envelope item through the real ingest parser, in the clock's hour."""
    item = json.dumps({"attrs": {"release": release, "environment": "production"},
                       "aggregates": [{"started": s.now, "exited": started}] * aggregates}).encode()  # fmt: skip
    health = EventProcessor(s.ctx.settings, s.clock).health(
        [("sessions", item)], project_id=s.project.id, user_salt=s.project.public_key
    )
    s.ctx.store.write_events([], [health])


def _merged_and_deployed(s: Sim, rate: Callable[[float], float]) -> None:
    pr = s.open_fix_pr()
    s.traffic(s.now + HOUR, rate)
    s.merge(pr)
    s.deploy("shop@1.1.0")


def test_a_forged_flood_of_sessions_does_not_make_a_fix(sim: Callable[..., Sim]) -> None:
    s = sim()
    s.ctx.store.record_deploy(release="shop@1.1.0", commit_sha=s.service.commit, environment="staging",
                              deployed_at=START - HOUR, source="operator")  # fmt: skip
    for _ in range(72):
        s.traffic(s.now + HOUR, lambda t: 20.0)
        _sessions(s, 1000)
    _merged_and_deployed(s, lambda t: 20.0)
    s.traffic(s.now + HOUR / 2, lambda t: 20.0, release="shop@1.1.0")
    _sessions(s, 1000, release="shop@1.1.0")
    _sessions(s, 100_000, release="anything", aggregates=4)  # a DSN holder claims 400k sessions of any release
    _sessions(s, 100_000, release="shop@1.1.0", aggregates=4)  # ... or of a real one
    step = s.watch().lineages[-1]
    assert step.verdict != "fixed", step.judgement
    assert s.ctx.store.get_issue(s.issue_id()).status == "unresolved"


def test_a_step_down_just_before_the_deploy_is_not_the_fix(sim: Callable[..., Sim]) -> None:
    s = sim()
    s.traffic(START + 60 * HOUR, lambda t: 20.0)
    s.traffic(s.now + 11 * HOUR, lambda t: 1.0)
    _merged_and_deployed(s, lambda t: 1.0)
    _, step = s.until_verdict(lambda t: 1.0, 72)
    assert step.verdict != "fixed", step.judgement


def test_silence_after_a_levelled_off_decline_is_never_a_no_effect_iteration(sim: Callable[..., Sim]) -> None:
    s = sim()
    rate = lambda t: 2.0 + 30.0 * math.exp(-(t - START) / (12 * HOUR))  # noqa: E731
    s.traffic(START + 72 * HOUR, rate)
    _merged_and_deployed(s, rate)
    _, step = s.until_verdict(lambda t: 0.0, 200)
    assert step.verdict == "fixed", step.judgement  # 2/h -> 0 for a day and more is a fix


def test_an_upgraded_store_does_not_judge_an_old_fix_against_a_later_deploy(sim: Callable[..., Sim]) -> None:
    s = sim()
    s.traffic(START + 72 * HOUR, lambda t: 20.0)
    pr = s.open_fix_pr()
    s.merge(pr)
    old = s.deploy("shop@1.1.0")
    with s.ctx.store.transaction() as conn:
        conn.execute("UPDATE deploys SET source = 'unknown' WHERE id = ?", (old,))  # what migration 13 left
    s.traffic(s.now + 5 * 24 * HOUR, lambda t: 0.0, release="shop@1.1.0")
    s.change("README.md", "x\n", "unrelated")
    s.deploy("shop@1.2.0")
    _, step = s.until_verdict(lambda t: 0.0, 10, release="shop@1.2.0")
    assert step.stage == "merged" and step.verdict is None
    assert lineage.lineage(s.ctx.store, s.issue_id()).no_effect_streak == 0


def test_pruned_raw_events_do_not_turn_a_partial_fix_into_fixed(sim: Callable[..., Sim]) -> None:
    s = sim(retention={"event_days": 2}, post_merge={"max_watch_hours": 24 * 12})
    s.traffic(START + 72 * HOUR, lambda t: 2.0)
    _merged_and_deployed(s, lambda t: 2.0)
    for h in range(24 * 8):
        s.traffic(s.now + HOUR, lambda t: 0.7, release="shop@1.1.0")
        if h % 24 == 0:
            s.ctx.apply_retention()
        step = s.watch().lineages[-1]
        assert step.verdict != "fixed", (h, step.judgement)
        if step.verdict == "no_effect":
            break


def test_a_commit_that_mentions_the_receipt_line_is_not_the_merge(sim: Callable[..., Sim]) -> None:
    s = sim()
    s.traffic(START + 24 * HOUR, lambda t: 5.0)
    pr = s.open_fix_pr()
    s.change("README.md", "notes\n", f"Docs. Closing the bot PR unmerged (Prodloop-Receipt: {pr.receipt_id}).")
    s.deploy("shop@1.1.0")
    assert s.watch().lineages[-1].stage == "pr_open"


def test_a_merge_hook_for_a_commit_this_repository_lacks_is_not_recorded(sim: Callable[..., Sim]) -> None:
    from prodloop.server.background import BackgroundWatch

    s = sim()
    s.traffic(START + 24 * HOUR, lambda t: 5.0)
    pr = s.open_fix_pr()
    with s.ctx.store.transaction() as conn:
        conn.execute("UPDATE pull_requests SET mode = 'github', number = 12 WHERE id = ?", (pr.id,))
    BackgroundWatch(s.ctx).on_merge(12, "f" * 40, s.now)  # another repository's PR #12
    assert lineage.merges(s.ctx.store) == {}
    s.merge(pr)
    s.deploy("shop@1.1.0")
    assert s.watch().lineages[-1].stage == "deployed"


def test_a_few_events_of_one_user_do_not_pull_the_cord(sim: Callable[..., Sim]) -> None:
    s = sim(andon={"propose_revert": False})
    s.traffic(START + 24 * HOUR, lambda t: 1.0)
    s.deploy("shop@1.1.0", s.change("shop/pricing.py", "# refactor\n", "refactor pricing"))
    base = s.template("unknown_sku")
    s.clock.at = s.now + 120
    s.ctx.store.write_events([dataclasses.replace(base, event_id=uuid.uuid4().hex, timestamp=s.now - 100 + i,
                                                  received=s.now, release="shop@1.1.0", user_hash="attacker")
                              for i in range(8)])  # fmt: skip
    assert not s.watch().cords_pulled


def test_a_deploy_of_a_commit_not_here_is_reported_and_escalated_never_silent(sim: Callable[..., Sim]) -> None:
    s = sim(andon={"propose_revert": False})
    s.traffic(START + 24 * HOUR, lambda t: 1.0)
    s.deploy("shop@1.3.0", "c" * 40)
    s.traffic(s.now + HOUR, lambda t: 50.0, crash="zero_rate", release="shop@1.3.0")
    report = s.watch()
    assert report.outcome == "unchecked" and report.exit_code == 5 and report.unchecked_deploys
    assert [e.kind for e in policy.escalations(s.ctx.store, open_only=True)] == ["andon-unchecked"]


def test_a_quarantined_dot_path_is_refused(sim: Callable[..., Sim]) -> None:
    s = sim()
    deploy = s.deploy("shop@1.2.0")
    lineage.pull_cord(s.ctx.store, deploy_id=deploy, release="shop@1.2.0", environment="production",
                      commit_sha="a" * 40, previous_commit="b" * 40,
                      paths=[".github/workflows/deploy.yml", ".config/settings.py"], evidence=[], blast_radius={},
                      at=s.now)  # fmt: skip
    for path in (".github/workflows/deploy.yml", "./.config/settings.py", ".config//settings.py"):
        with pytest.raises(Quarantined):
            require_unquarantined(s.ctx.store, action="open_pr", paths=[path])
    require_unquarantined(s.ctx.store, action="open_pr", paths=["github/workflows/deploy.yml"])


@pytest.mark.parametrize(
    "table",
    [
        "[tool.prodloop.post_merge]\ninterval_seconds = 1e10\n",
        "[tool.prodloop.post_merge]\nno_effect_share = 0.99\n",
        "[tool.prodloop.post_merge]\nmax_watch_hours = 1e12\n",
        "[tool.prodloop.triage]\ninterval_seconds = 1e10\n",
        "[tool.prodloop.andon]\nmin_users = 50\n",
    ],
)
def test_a_repository_cannot_switch_the_watch_or_the_halt_off(tmp_path: Path, table: str) -> None:
    (tmp_path / "pyproject.toml").write_text(table)
    with pytest.raises(ConfigError):
        load_settings(repo=tmp_path)
