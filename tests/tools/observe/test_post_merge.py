"""The closing stage against scenarios with a known truth (tests/post_merge_sim.py: real git merges and deploy
records, real pipeline and store, injected clock): every verdict as its truth, the andon cord within five simulated
minutes of a 10x deploy and never on deploys that change nothing in production, the stopping conditions."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from prodloop.server.errors import BudgetExhausted, InvalidArgument, LineageHalted, Quarantined
from prodloop.server.settings import PostMergeSettings
from prodloop.server.store import lineage, policy
from prodloop.tools import budget
from prodloop.tools.observe.andon import andon_status, release, require_work_allowed
from prodloop.tools.observe.lineage_status import post_merge_status
from prodloop.tools.observe.post_merge import judge
from prodloop.tools.observe.triage import require_clearance
from tests.post_merge_sim import DAY, HOUR, START, Sim, declining

MINUTE = 60.0


def _fix_deployed(s: Sim, before: Callable[[float], float], *, hours_before: float = 72) -> int:
    """Traffic before, the fix's PR merged and deployed as shop@1.1.0; returns the PR's id."""
    s.traffic(START + hours_before * HOUR, before)
    pr = s.open_fix_pr()
    s.traffic(s.now + HOUR, before)
    s.merge(pr)
    s.deploy("shop@1.1.0")
    return pr.id


def test_a_working_fix_is_fixed_resolves_the_issue_and_the_provenance_record_gets_the_verdict(
    sim: Callable[..., Sim],
) -> None:
    s = sim()
    _fix_deployed(s, lambda t: 20.0)
    verdict, step = s.until_verdict(lambda t: 0.0, 24)
    assert verdict == "fixed", step
    assert step.judgement.ratio_high <= 0.25 and step.judgement.metric == "per_hour"
    assert step.judgement.events_before > 1000 and step.merged_how == "merge"
    issue = s.ctx.store.get_issue(s.issue_id())
    assert issue.status == "resolved" and issue.resolved_in == "shop@1.1.0"
    records, _ = policy.provenance_records(s.ctx.store)
    assert records[0]["verdict"]["verdict"] == "fixed" and records[0]["verdict"]["deploy"] == "shop@1.1.0"
    # Seen again in a later release: regressed, reopened.
    s.traffic(s.now + HOUR, lambda t: 20.0, release="shop@1.2.0")
    step = s.watch().lineages[-1]
    assert step.verdict == "regressed"
    assert s.ctx.store.get_issue(s.issue_id()).status == "unresolved"


def test_a_fix_with_no_effect_reopens_and_two_in_a_row_halt_the_lineage_and_escalate(sim: Callable[..., Sim]) -> None:
    s = sim()
    _fix_deployed(s, lambda t: 20.0)
    verdict, step = s.until_verdict(lambda t: 20.0, 48)
    assert verdict == "no_effect", step
    assert step.judgement.ratio_low >= 0.5
    state = lineage.lineage(s.ctx.store, s.issue_id())
    assert state.no_effect_streak == 1 and state.halted_at is None
    # Another iteration, no effect again: the lineage halts, a person is asked, agent work is refused.
    pr = s.open_fix_pr({"shop/pricing.py": "# still wrong\n"})
    s.merge(pr)
    s.deploy("shop@1.2.0")
    verdict, _ = s.until_verdict(lambda t: 20.0, 48, release="shop@1.2.0")
    assert verdict == "no_effect"
    state = lineage.lineage(s.ctx.store, s.issue_id())
    assert state.no_effect_streak == 2 and state.halted_why and "2 consecutive" in state.halted_why
    assert [e.kind for e in policy.escalations(s.ctx.store, issue_id=s.issue_id(), open_only=True)] == ["no-effect"]
    with pytest.raises(LineageHalted, match="prodloop budget reset"):
        require_clearance(s.ctx.store, s.ctx.git(), s.ctx.settings, s.clock, s.issue_id(), action="run_candidate_test")
    # Only a person resets it, and the reset is kept with who and why.
    with pytest.raises(InvalidArgument, match="reason"):
        budget.reset(s.ctx.store, s.ctx.settings.budgets, s.clock, s.issue_id(), who="ana", why=" ")
    budget.reset(s.ctx.store, s.ctx.settings.budgets, s.clock, s.issue_id(), who="ana", why="root cause found")
    require_clearance(s.ctx.store, s.ctx.git(), s.ctx.settings, s.clock, s.issue_id(), action="run_candidate_test")
    assert lineage.resets(s.ctx.store, s.issue_id())[0]["before"]["no_effect_streak"] == 2
    assert not policy.escalations(s.ctx.store, issue_id=s.issue_id(), open_only=True)


def test_a_decline_that_began_before_the_deploy_is_not_the_fix_working(sim: Callable[..., Sim]) -> None:
    s = sim()
    fading = declining(START, 40.0, 24)
    _fix_deployed(s, fading)
    verdicts = set()
    for _ in range(48):
        s.traffic(s.now + HOUR, fading, release="shop@1.1.0")
        step = s.watch().lineages[-1]
        verdicts.add(step.verdict)
        if step.verdict == "no_effect":
            break
    assert "fixed" not in verdicts
    assert step.verdict == "no_effect" and step.judgement.trend_significant and step.judgement.trend_per_day < 0.6


def test_low_volume_keeps_watching_and_says_how_much_more_traffic_a_verdict_needs(sim: Callable[..., Sim]) -> None:
    s = sim()
    _fix_deployed(s, lambda t: 0.25)
    verdict, step = s.until_verdict(lambda t: 0.0, 24)
    assert verdict == "watching"
    assert "more hours at the current traffic" in step.judgement.needed
    assert s.ctx.store.get_issue(s.issue_id()).status == "unresolved"


def test_a_squash_or_a_rebase_merge_is_found_and_a_deploy_without_the_merge_is_not_the_fix(
    sim: Callable[..., Sim],
) -> None:
    s = sim()
    s.traffic(START + DAY, lambda t: 5.0)
    squashed, rebased = s.open_fix_pr(), s.open_fix_pr({"shop/auth.py": "# other\n"})
    s.deploy("shop@1.0.1")  # before either merge: contains neither
    s.merge(squashed, how="squash")
    s.merge(rebased, how="rebase")
    steps = {st.pull_request: st for st in s.watch().lineages}
    assert steps[squashed.branch].merged_how == "trailer" and steps[rebased.branch].merged_how == "trailer"
    assert {st.stage for st in steps.values()} == {"merged"}
    rewritten = s.open_fix_pr({"shop/loyalty.py": "# loyalty fixed\n"})
    s.merge(rewritten, how="rewritten")  # no trailer left: found by its patch id
    assert s.watch().lineages[-1].merged_how == "patch"
    s.deploy("shop@1.1.0")
    assert {st.stage for st in s.watch().lineages} == {"deployed"}
    assert {st.deploy for st in s.watch().lineages} == {"shop@1.1.0"}


def test_an_agent_recorded_deploy_is_no_evidence_for_a_verdict_or_a_cord(sim: Callable[..., Sim]) -> None:
    s = sim()
    s.traffic(START + DAY, lambda t: 20.0)
    pr = s.open_fix_pr()
    s.merge(pr)
    s.ctx.store.record_deploy(release="shop@9", commit_sha=s.git.git("rev-parse", "HEAD"), environment="production",
                              deployed_at=s.now, source="agent")  # fmt: skip
    s.traffic(s.now + 2 * HOUR, lambda t: 200.0, release="shop@9")
    report = s.watch()
    assert report.lineages[0].stage == "merged" and not report.cords_pulled


def test_a_deploy_that_makes_its_paths_worse_pulls_the_cord_within_five_minutes_and_quarantines_them(
    sim: Callable[..., Sim],
) -> None:
    s = sim(andon={"propose_revert": False})
    s.traffic(START + DAY, lambda t: 60.0)
    bad = s.change("shop/pricing.py", FIXED_BUT_WORSE)
    s.deploy("shop@1.1.0", bad)
    minutes = None
    for minute in range(1, 31):
        s.traffic(s.now + MINUTE, lambda t: 600.0, release="shop@1.1.0", step=MINUTE)
        report = s.watch()
        if report.cords_pulled:
            minutes = minute
            break
    assert minutes is not None and minutes <= 5
    assert report.exit_code == 6
    cord = report.cords_pulled[0]
    assert cord.quarantined_paths == ["shop/pricing.py"] and cord.evidence[0]["kind"] == "issue_rate"
    assert cord.blast_radius["users"] > 0 and cord.blast_radius["issues"] == [s.issue_id()]
    # Agent work touching the path is refused, and says who releases it.
    with pytest.raises(Quarantined, match=f"prodloop andon release {cord.id}"):
        require_work_allowed(s.ctx.store, s.ctx.settings, s.clock, s.issue_id(), action="run_candidate_test")
    other = s.template("zero_rate")
    other_issue = s.ctx.store.get_event(other.event_id).issue_id
    require_work_allowed(s.ctx.store, s.ctx.settings, s.clock, other_issue, action="open_pr")  # loyalty.py: free
    with pytest.raises(Quarantined):  # ... unless the work changes the quarantined path
        require_work_allowed(s.ctx.store, s.ctx.settings, s.clock, other_issue, action="open_pr",
                             paths=["shop/pricing.py"])  # fmt: skip
    assert [e.kind for e in policy.escalations(s.ctx.store, open_only=True)] == ["andon"]
    assert post_merge_status(s.ctx.store, s.ctx.git(), s.ctx.settings, s.clock, s.issue_id()).quarantined
    # Pulled once per deploy; only a person releases it.
    s.traffic(s.now + MINUTE, lambda t: 600.0, release="shop@1.1.0")
    assert not s.watch().cords_pulled
    with pytest.raises(InvalidArgument):
        release(s.ctx.store, s.clock, cord.id, who="", why="x")
    done = release(s.ctx.store, s.clock, cord.id, who="ana", why="rolled back by hand")
    assert not done.active and done.released_by == "ana"
    require_work_allowed(s.ctx.store, s.ctx.settings, s.clock, s.issue_id(), action="run_candidate_test")
    assert not andon_status(s.ctx.store).active and not policy.escalations(s.ctx.store, open_only=True)


def test_a_new_issue_in_a_changed_file_pulls_the_cord(sim: Callable[..., Sim]) -> None:
    s = sim(andon={"propose_revert": False})
    s.traffic(START + DAY, lambda t: 20.0)
    s.deploy("shop@1.1.0", s.change("shop/loyalty.py", "# loyalty rewritten\n"))
    s.traffic(s.now + 10 * MINUTE, lambda t: 60.0, crash="zero_rate", release="shop@1.1.0", step=MINUTE)
    cords = s.watch().cords_pulled
    assert cords and cords[0].evidence[0]["kind"] == "new_issue"
    assert cords[0].quarantined_paths == ["shop/loyalty.py"]


@pytest.mark.parametrize("changed", ["shop/auth.py", "shop/pricing.py"])
def test_no_cord_for_deploys_that_change_nothing_in_production(sim: Callable[..., Sim], changed: str) -> None:
    """Ten deploys a day apart, each changing a file (the issue's own file, or another), the traffic unchanged and
    overdispersed: checked every five minutes for an hour, then hourly, no cord."""
    s = sim(andon={"propose_revert": False}, seed=7)
    rate = lambda t: 30.0  # noqa: E731
    s.traffic(START + DAY, rate, overdispersion=0.1)
    for n in range(10):
        s.deploy(f"shop@1.0.{n + 1}", s.change(changed, f"# revision {n}\n" + ("x = 1\n" * n)))
        for _ in range(12):
            s.traffic(s.now + 5 * MINUTE, rate, overdispersion=0.1, release=f"shop@1.0.{n + 1}")
            assert not s.watch().cords_pulled
        for _ in range(23):
            s.traffic(s.now + HOUR, rate, overdispersion=0.1, release=f"shop@1.0.{n + 1}")
            assert not s.watch().cords_pulled


def test_reported_cost_exhausts_the_budget_escalates_and_only_a_person_resets_it(sim: Callable[..., Sim]) -> None:
    s = sim(budgets={"max_cost_usd": 1.0})
    s.traffic(START + HOUR, lambda t: 5.0)
    issue = s.issue_id()
    status = budget.report_cost(s.ctx.store, s.ctx.settings.budgets, s.clock, issue, tokens=1000, cost_usd=0.4,
                                reporter="claude-code 2.1")  # fmt: skip
    assert not status.exhausted and status.cost_usd_used == 0.4
    status = budget.report_cost(s.ctx.store, s.ctx.settings.budgets, s.clock, issue, tokens=1000, cost_usd=0.7,
                                reporter="claude-code 2.1")  # fmt: skip
    assert status.exhausted and status.tokens_used == 2000
    assert [e.kind for e in policy.escalations(s.ctx.store, issue_id=issue, open_only=True)] == ["cost"]
    with pytest.raises(BudgetExhausted, match="cost budget"):
        require_work_allowed(s.ctx.store, s.ctx.settings, s.clock, issue, action="run_candidate_test")
    budget.reset(s.ctx.store, s.ctx.settings.budgets, s.clock, issue, who="ana", why="worth another try")
    require_work_allowed(s.ctx.store, s.ctx.settings, s.clock, issue, action="run_candidate_test")
    assert lineage.resets(s.ctx.store, issue)[0]["before"]["cost_usd"] == pytest.approx(1.1)


def test_the_verdict_statistics_on_their_own() -> None:
    cfg = PostMergeSettings()
    flat = np.full(72, 10.0)
    ones = np.ones(72)
    gone = judge(flat, ones, 0, np.ones(3), 3.0, cfg)
    assert gone.verdict == "fixed" and gone.p_value < 1e-10
    same = judge(flat, ones, 30, np.ones(3), 3.0, cfg)
    assert same.verdict == "no_effect" and 0.5 <= same.ratio_low <= 1 <= same.ratio_high
    early = judge(flat, ones, 0, np.array([0.1]), 0.1, cfg)  # six minutes: one event expected, none seen
    assert early.verdict == "watching" and early.needed
    # A rate halving daily before the deploy: fewer events after is what the trend predicts, not the fix.
    halving = np.round(40 * 0.5 ** (np.arange(72) / 24))
    follows = judge(halving, ones, int(halving[-1] * 24 * 0.7), np.ones(24), 24.0, cfg)
    assert follows.trend_significant and follows.trend_per_day < 0.7 and follows.verdict != "fixed"
    # Sessions as the denominator: twice the traffic after, twice the events: no change, not a rise.
    doubled = judge(flat, ones * 100, 60, np.full(3, 200.0), 3.0, cfg, metric="per_session")
    assert doubled.verdict == "no_effect" and doubled.ratio == pytest.approx(1.0)


FIXED_BUT_WORSE = (
    '"""Prices."""\n\nPRICES = {"apple": 30}\n\n\n'
    'def line_total(item):\n    return PRICES[item["sku"]] * item["qty"]\n\n\n'
    'def cart_total(cart):\n    return sum(line_total(item) for item in cart["items"])\n'
)


def test_a_staging_deploy_is_judged_on_staging_events_only(sim: Callable[..., Sim]) -> None:
    s = sim(andon={"propose_revert": False})
    s.traffic(START + DAY, lambda t: 60.0)
    s.ctx.store.record_deploy(release="shop@s1", commit_sha=s.service.commit, environment="staging",
                              deployed_at=START, source="operator")  # fmt: skip
    bad = s.change("shop/pricing.py", FIXED_BUT_WORSE)
    s.ctx.store.record_deploy(release="shop@s2", commit_sha=bad, environment="staging", deployed_at=s.now,
                              source="operator")  # fmt: skip
    s.traffic(s.now + 10 * MINUTE, lambda t: 600.0, step=MINUTE)  # production's events (the template's environment)
    assert not s.watch().cords_pulled


def test_a_verified_github_merge_hook_records_the_merge_of_prodloops_pr_and_runs_a_pass(
    sim: Callable[..., Sim],
) -> None:
    from prodloop.server.background import BackgroundWatch

    s = sim(post_merge={"interval_seconds": 3600})
    s.traffic(START + DAY, lambda t: 5.0)
    pr = s.open_fix_pr()
    with s.ctx.store.transaction() as conn:  # opened on GitHub as #7
        conn.execute("UPDATE pull_requests SET mode = 'github', number = 7, url = 'https://x/pull/7' WHERE id = ?",
                     (pr.id,))  # fmt: skip
    merged = s.merge(pr)
    watch = BackgroundWatch(s.ctx)
    watch.start()
    try:
        watch.on_merge(8, merged, s.now)  # not prodloop's: nothing recorded
        assert lineage.merges(s.ctx.store) == {}
        watch.on_merge(7, merged, s.now)
        assert lineage.merges(s.ctx.store)[pr.id].how == "webhook"
        deadline = time.monotonic() + 20
        while watch.passes == 0:  # the hook ran a pass at once, not an hour later
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        watch.stop()
    assert s.watch().lineages[0].merged_how == "webhook"


def test_the_cord_proposes_a_revert_of_the_deploy_pushed_as_a_branch_with_the_blast_radius(
    sim: Callable[..., Sim], tmp_path: Path
) -> None:
    import subprocess

    s = sim()
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    s.git.git("remote", "add", "origin", str(remote))
    s.traffic(START + DAY, lambda t: 60.0)
    bad = s.change("shop/pricing.py", FIXED_BUT_WORSE, "pricing: drop pears")
    s.git.git("push", "-q", "origin", "main")
    s.deploy("shop@1.1.0", bad)
    s.traffic(s.now + 5 * MINUTE, lambda t: 600.0, release="shop@1.1.0", step=MINUTE)
    (cord,) = s.watch().cords_pulled
    revert = cord.revert or {}
    assert "error" not in revert, revert
    assert revert["branch"] == "prodloop/revert-1-shop-1.1.0" and revert["mode"] == "local"
    pushed = subprocess.run(["git", "-C", str(remote), "show", f"{revert['branch']}:shop/pricing.py"],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert '"pear": 45' in pushed  # the deploy's change undone on the branch
    description = Path(revert["description_path"]).read_text()
    assert "andon cord 1" in description and "Blast radius" in description and "`shop/pricing.py`" in description


def test_github_says_merged_and_the_author_of_an_attributed_change_is_told_once(
    sim: Callable[..., Sim],
) -> None:
    from tests.fakes.github_api import FakeGitHub

    token = "ghp_" + "t" * 36
    with FakeGitHub(token=token) as fake:
        s = sim(github_token=token, github_base_url=fake.base_url, github_repo="acme/shop",
                post_merge={"notify_authors": True}, andon={"propose_revert": False})  # fmt: skip
        s.traffic(START + DAY, lambda t: 5.0)
        pr = s.open_fix_pr()
        number = fake.add_pull(pr.branch)
        with s.ctx.store.transaction() as conn:
            conn.execute("UPDATE pull_requests SET mode = 'github', number = ? WHERE id = ?", (number, pr.id))
        assert s.watch().lineages[0].stage == "pr_open"
        merged = s.merge(pr)
        fake.merge_pull(number, merged)
        assert s.watch().lineages[0].merged_how == "github"
        # Triage attributed the issue to a commit: its PR hears about it, once, with the production text fenced.
        culprit = s.change("shop/pricing.py", FIXED_BUT_WORSE, "pricing: drop pears")
        lineage.attribute(s.ctx.store, s.issue_id(), deploy_id=None, commit_sha=culprit, author="Bo Coder",
                          minutes_after=12.0, at=s.now)  # fmt: skip
        fake.link_commit(culprit, number)
        first = s.watch().notified
        assert first and first[0]["pull_request"] == number
        (body,) = fake.comments[number]
        assert "started 12 minutes after the deploy" in body and "Bo Coder" in body and "```text" in body
        assert not s.watch().notified and len(fake.comments[number]) == 1
        assert token not in body
        # A deploy that makes things worse: the cord's escalation is filed on GitHub too.
        s.deploy("shop@1.3.0", culprit)
        s.traffic(s.now + 5 * MINUTE, lambda t: 600.0, release="shop@1.3.0", step=MINUTE)
        (cord,) = s.watch().cords_pulled
        filed = fake.issues[cord.escalation["number"]]
        assert "andon" in [label["name"] if isinstance(label, dict) else label for label in filed["labels"]]
        assert "Blast radius" in filed["body"] and token not in filed["body"]


def test_metrics_measure_the_loop_from_what_happened(sim: Callable[..., Sim]) -> None:
    from prodloop.tools.observe.metrics import metrics

    s = sim()
    empty = metrics(s.ctx.store)
    assert empty.production_to_test.count == 0 and empty.regression_recurrence is None and empty.flake_rate is None
    _fix_deployed(s, lambda t: 20.0, hours_before=2)
    s.until_verdict(lambda t: 0.0, 24)
    done = metrics(s.ctx.store)
    # The first event was at START; the PR merged 3 h later (2 h of traffic, the PR, an hour): latency ~3 h.
    assert done.production_to_test.count == 1 and 2.9 <= done.production_to_test.p50_hours <= 3.1
    assert done.production_to_test.under_one_hour == 0.0
    assert done.fixed == 1 and done.time_to_restore.p50_hours > done.production_to_test.p50_hours
    assert done.regression_recurrence == 0.0 and done.no_effect_share == 0.0
    s.traffic(s.now + HOUR, lambda t: 20.0, release="shop@1.2.0")
    s.watch()
    assert metrics(s.ctx.store).regression_recurrence == 1.0


def test_post_merge_status_follows_only_the_issue_asked_about(sim: Callable[..., Sim]) -> None:
    s = sim()
    s.traffic(START + DAY, lambda t: 10.0)
    s.traffic(s.now + DAY, lambda t: 10.0, crash="zero_rate")
    first = s.open_fix_pr()
    second = s.open_fix_pr({"shop/loyalty.py": "# fixed\n"}, crash="zero_rate")
    s.merge(first)
    s.merge(second)
    s.deploy("shop@1.1.0")
    s.traffic(s.now + HOUR, lambda t: 0.0, release="shop@1.1.0")
    status = post_merge_status(s.ctx.store, s.ctx.git(), s.ctx.settings, s.clock, second.issue_id)
    assert [p.pull_request for p in status.pull_requests] == [second.branch]
    assert lineage.verdicts(s.ctx.store, issue_id=first.issue_id) == []  # the other issue was not judged
    assert lineage.verdicts(s.ctx.store, issue_id=second.issue_id)
