"""Triage against scenarios with a known truth: real ingest processing and store, an injected clock, real git
commits and deploy records. Prints the confusion table of (expected, got) classification and cause."""

from __future__ import annotations

import copy
import json
import random
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from prodloop.server.clock import FixedClock
from prodloop.server.context import AppContext
from prodloop.server.errors import NotFoundError, TriageRefused
from prodloop.server.ingest.importer import import_events
from prodloop.server.settings import load_settings
from prodloop.server.store import lineage, signals
from prodloop.tools.observe.triage import onset_of, require_clearance, triage_signals
from tests.sample_service import SampleService

HOUR, DAY = 3600.0, 86400.0
NOW = 1_780_000_000.0 + 14 * DAY
PRICING_V2 = (
    '"""Prices."""\n\nPRICES = {"apple": 30, "pear": 45, "plum": 12}\n\n\n'
    'def line_total(item):\n    return PRICES[item["sku"]] * item["qty"]\n\n\n'
    'def cart_total(cart):\n    return sum(line_total(item) for item in cart["items"])\n'
)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> tuple[SampleService, str, dict[str, Any]]:
    service = SampleService(tmp_path_factory.mktemp("triage") / "shop")
    changed = service.git.commit({"shop/pricing.py": PRICING_V2}, "pricing: add plums", author="Bo Coder")
    service.git.tag("v1.1.0")  # the operator's release tag: shop@1.1.0 is anchored in the repository
    return service, changed, service.event("unknown_sku")


@pytest.fixture
def scenario(shop: tuple[SampleService, str, dict[str, Any]], tmp_path: Path) -> Iterator[Callable[..., AppContext]]:
    service, changed, event = shop
    opened: list[AppContext] = []

    def build(name: str, **settings: Any) -> AppContext:
        settings["triage"] = {"mode": "approve", **settings.get("triage", {})}  # the default, not the suite's off
        ctx = AppContext.open(
            load_settings(repo=service.root, data_dir=tmp_path / name, **settings), clock=FixedClock(at=NOW)
        )
        opened.append(ctx)
        ctx.store.create_project("shop")
        return ctx

    build.service = service  # type: ignore[attr-defined]
    build.changed = changed  # type: ignore[attr-defined]
    build.event = event  # type: ignore[attr-defined]
    yield build
    for ctx in opened:
        ctx.close()


def _send(ctx: AppContext, base: dict[str, Any], times: list[float], **fields: Any) -> None:
    raws = []
    users = fields.pop("users", 20)
    tenant = fields.pop("tenant", None)
    for n, at in enumerate(times):
        raw = copy.deepcopy(base)
        raw.update(event_id=uuid.uuid4().hex, timestamp=at, user={"id": f"u{n % users}"}, **fields)
        if tenant is not None:
            raw["tags"] = {**(raw.get("tags") or {}), "tenant": tenant(n) if callable(tenant) else tenant}
        raws.append((f"e{n}", raw))
    import_events(ctx, ctx.store.list_projects()[0], raws, source="test")


def _spread(start: float, end: float, count: int, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return sorted(start + rng.random() * (end - start) for _ in range(count))


def _deploys(ctx: AppContext, build: Any, at: float) -> None:
    ctx.store.record_deploy(release="shop@1.0.0", commit_sha=build.service.commit, environment="production",
                            deployed_at=NOW - 10 * DAY)  # fmt: skip
    ctx.store.record_deploy(release="shop@1.1.0", commit_sha=build.changed, environment="production", deployed_at=at)


def _outage(event: dict[str, Any]) -> dict[str, Any]:
    """The same crash, but a connection error raised inside a library."""
    out = copy.deepcopy(event)
    last = out["exception"]["values"][-1]
    last.update(type="ConnectionError", value="HTTPSConnectionPool: Max retries exceeded")
    last["stacktrace"]["frames"].append(
        {"filename": "urllib3/connectionpool.py", "module": "urllib3.connectionpool", "function": "urlopen",
         "lineno": 802, "in_app": False, "abs_path": "/venv/lib/urllib3/connectionpool.py"}
    )  # fmt: skip
    return out


def _with_library_frame(event: dict[str, Any], module: str) -> dict[str, Any]:
    out = copy.deepcopy(event)
    out["exception"]["values"][-1]["stacktrace"]["frames"].insert(
        0, {"filename": f"{module}/api.py", "module": f"{module}.api", "function": "call", "lineno": 9,
            "in_app": False}
    )  # fmt: skip
    return out


def test_scenarios_are_classified_and_attributed_as_their_truth(scenario: Callable[..., AppContext]) -> None:
    build: Any = scenario
    results: list[tuple[str, tuple[str, str | None], tuple[str, str | None]]] = []

    def judge(name: str, ctx: AppContext, expected: tuple[str, str | None]) -> None:
        report = triage_signals(ctx.store, ctx.git(), ctx.settings, ctx.clock)
        (signal,) = report.signals
        got = (signal.classification, signal.attribution[0].cause if signal.attribution else None)
        results.append((name, expected, got))

    # 1. A spike right after a deploy that changed the crash path: actionable, the deploy to blame.
    ctx = build("deploy")
    _deploys(ctx, build, NOW - 6 * HOUR)
    _send(ctx, build.event, _spread(NOW - 5.5 * HOUR, NOW, 40), release="shop@1.1.0")
    judge("spike after deploy", ctx, ("actionable", "deploy"))
    who = lineage.attribution(ctx.store, 1)  # the commit that changed the crash path, and its author, are kept
    assert who is not None and who["commit"] == build.changed and who["author"] == "Bo Coder"
    assert 25 <= who["minutes_after"] <= 35
    # 2. The same spike, but one tenant only while another on the same release is fine: their configuration.
    ctx = build("tenant")
    _deploys(ctx, build, NOW - 6 * HOUR)
    _send(ctx, build.event, _spread(NOW - 5.5 * HOUR, NOW, 40), release="shop@1.1.0", tenant="acme")
    other = copy.deepcopy(build.event)
    other["exception"]["values"][-1].update(type="ValueError", value="an unrelated one")
    _send(ctx, other, _spread(NOW - 5 * HOUR, NOW, 12, seed=3), release="shop@1.1.0", tenant="globex")
    report = triage_signals(ctx.store, ctx.git(), ctx.settings, ctx.clock, issue_id=1)
    (signal,) = report.signals
    results.append(("one tenant only", ("observation", "user_configuration"),
                    (signal.classification, signal.attribution[0].cause)))  # fmt: skip
    # 3. A dependency bump between two releases, its package in the stack, no deploy record.
    ctx = build("dependency")
    base = _with_library_frame(build.event, "requests")
    _send(ctx, {**base, "modules": {"requests": "2.31.0", "flask": "3.0.0"}}, [NOW - 8 * DAY], release="shop@1.0.0")
    _send(ctx, {**base, "modules": {"requests": "2.32.0", "flask": "3.0.0"}},
          _spread(NOW - 7 * HOUR, NOW, 40), release="shop@1.1.0")  # fmt: skip
    judge("dependency bump", ctx, ("actionable", "dependency"))
    # 4. A slow decline already under way, with a deploy in it: nothing rose, so nothing to act on.
    ctx = build("decline")
    _deploys(ctx, build, NOW - 3 * DAY)
    rng = random.Random(4)
    times = [t for t in _spread(NOW - 13 * DAY, NOW, 300) if rng.random() < 1 - (t - NOW + 13 * DAY) / (14 * DAY)]
    _send(ctx, build.event, times, release="shop@1.1.0")
    judge("slow decline", ctx, ("observation", None))  # nothing rose: nothing to attribute
    # 5. Noise at low volume: three events over two weeks, one after a deploy.
    ctx = build("noise")
    _deploys(ctx, build, NOW - 6 * HOUR)
    _send(ctx, build.event, [NOW - 9 * DAY, NOW - 4 * DAY, NOW - 2 * HOUR], release="shop@1.1.0")
    judge("low-volume noise", ctx, ("observation", None))
    # 6. An external outage: connection errors raised in a library, across releases, many users.
    ctx = build("outage")
    outage = _outage(build.event)
    _send(ctx, outage, _spread(NOW - 4 * HOUR, NOW, 30), release="shop@1.0.0")
    _send(ctx, outage, _spread(NOW - 4 * HOUR, NOW, 30, seed=2), release="shop@1.1.0")
    judge("external outage", ctx, ("observation", "external_service"))

    print(f"\n  {'scenario':<22} {'expected':<34} {'got':<34}")
    for name, expected, got in results:
        print(f"  {name:<22} {'/'.join(map(str, expected)):<34} {'/'.join(map(str, got)):<34}"
              f"{'' if expected == got else '  WRONG'}")  # fmt: skip
    correct = sum(expected == got for _, expected, got in results)
    print(f"  correct: {correct} of {len(results)}")
    assert [(n, g) for n, _, g in results] == [(n, e) for n, e, _ in results]


def test_no_actionable_issue_from_steady_noise_even_after_a_deploy(scenario: Callable[..., AppContext]) -> None:
    build: Any = scenario
    ctx = build("steady")
    _deploys(ctx, build, NOW - 6 * HOUR)  # a deploy that touched the path, right before the last hours
    for n in range(12):  # twelve issues, each failing at a steady rate (about one every two hours) for two weeks
        event = copy.deepcopy(build.event)
        event["exception"]["values"][-1].update(type=f"Key{chr(65 + n)}Error", value=f"k{n}")
        rng = random.Random(n)
        times = sorted(NOW - rng.random() * 14 * DAY for _ in range(rng.randrange(150, 200)))
        _send(ctx, event, times, release="shop@1.1.0")
    report = triage_signals(ctx.store, ctx.git(), ctx.settings, ctx.clock)
    assert len(report.signals) == 12 and report.actionable == 0
    assert not any(s.onset.significant for s in report.signals)
    assert all(any(m.startswith(("significance", "volume")) for m in s.missing) for s in report.signals)


def _noise(kind: str, rng: np.random.Generator, hours: int = 336) -> dict[int, int]:
    hour = np.arange(hours)
    if kind == "diurnal":  # a daily cycle, busiest mid-day
        rate = 20 * (1 + 0.9 * np.sin(2 * np.pi * (hour % 24 - 6) / 24))
        counts = rng.poisson(rate)
    elif kind == "weekly":  # weekdays five an hour, weekends one
        rate = np.where(((hour + int(rng.integers(0, 168))) // 24) % 7 >= 5, 1.0, 5.0)
        counts = rng.poisson(rate)
    elif kind == "busy_days":  # every day its own level (sd 20%)
        counts = rng.poisson(20 * np.repeat(np.exp(rng.normal(0, 0.2, 15)), 24)[:hours])
    elif kind == "bursty":  # quiet, with the odd retry storm
        counts = rng.poisson(0.5, hours) + (rng.random(hours) < 0.02) * rng.poisson(20, hours)
    else:  # overdispersed: negative binomial, mean 5
        counts = rng.negative_binomial(1, 1 / 6, hours)
    return {int(h): int(n) for h, n in zip(hour, counts, strict=True) if n}


@pytest.mark.parametrize("kind", ["diurnal", "weekly", "busy_days", "bursty", "negbin"])
def test_cycles_bursts_and_overdispersed_noise_are_not_an_onset(kind: str) -> None:
    rng = np.random.default_rng(7)
    flagged = [onset_of(_noise(kind, rng), 0, 335, min_events=10, max_p_value=0.01)[1].significant for _ in range(100)]
    assert sum(flagged) <= 1  # the test's level is 1%: noise of any of these shapes stays near it


def test_a_real_rise_on_top_of_a_daily_cycle_is_still_found() -> None:
    rng = np.random.default_rng(8)
    counts = _noise("diurnal", rng)
    for h in range(320, 336):
        counts[h] = counts.get(h, 0) + 200  # ten times the mean rate for the last sixteen hours
    hour, onset = onset_of(counts, 0, 335, min_events=10, max_p_value=0.01)
    assert onset.significant and hour is not None and 318 <= hour <= 321 and onset.dispersion > 1


def test_onset_is_the_hour_the_rate_rose_and_low_volume_never_looks_significant() -> None:
    hours = {h: 1 for h in range(0, 300, 7)}  # a trickle
    hours.update({h: 6 for h in range(300, 336)})  # then six an hour
    hour, onset = onset_of(hours, 0, 335, min_events=10, max_p_value=0.01)
    assert hour is not None and 298 <= hour <= 301 and onset.significant and onset.p_value < 1e-6
    _, thin = onset_of({330: 2, 331: 1}, 0, 335, min_events=10, max_p_value=0.01)
    assert thin.events_after == 3 and not thin.significant  # three events: never significant, however sudden
    _, steady = onset_of({h: 2 for h in range(336)}, 0, 335, min_events=10, max_p_value=0.01)
    assert not steady.significant and steady.p_value > 0.01


def _mode(ctx: AppContext, mode: str) -> Any:
    return ctx.settings.model_copy(update={"triage": ctx.settings.triage.model_copy(update={"mode": mode})})


def test_the_mode_decides_whether_an_agent_may_work_on_a_triaged_issue(scenario: Callable[..., AppContext]) -> None:
    build: Any = scenario
    ctx = build("modes")
    _deploys(ctx, build, NOW - 6 * HOUR)
    _send(ctx, build.event, _spread(NOW - 5.5 * HOUR, NOW, 40), release="shop@1.1.0")
    with pytest.raises(TriageRefused, match="awaits a person"):  # not triaged yet: triaged now, then gated
        require_clearance(ctx.store, ctx.git(), ctx.settings, ctx.clock, 1, action="run_candidate_test")
    (signal,) = triage_signals(ctx.store, ctx.git(), ctx.settings, ctx.clock).signals
    assert (signal.classification, signal.decision) == ("actionable", "pending")
    with pytest.raises(TriageRefused, match="awaits a person; a person clears it: prodloop triage approve 1"):
        require_clearance(ctx.store, ctx.git(), ctx.settings, ctx.clock, 1, action="run_candidate_test")
    require_clearance(ctx.store, ctx.git(), _mode(ctx, "autonomous"), ctx.clock, 1, action="open_pr")
    with pytest.raises(TriageRefused, match="shadow mode"):
        require_clearance(ctx.store, ctx.git(), _mode(ctx, "shadow"), ctx.clock, 1, action="open_pr")
    signals.decide(ctx.store, 1, "approved", who="Ada", why="the deploy is ours", at=NOW)
    require_clearance(ctx.store, ctx.git(), ctx.settings, ctx.clock, 1, action="run_candidate_test")
    again = triage_signals(ctx.store, ctx.git(), ctx.settings, ctx.clock).signals[0]
    assert again.decision == "approved"  # a new pass keeps the person's decision
    signals.decide(ctx.store, 1, "rejected", who="Bo", why="known, accepted", at=NOW + 1)
    with pytest.raises(TriageRefused, match="a person rejected it"):
        require_clearance(ctx.store, ctx.git(), _mode(ctx, "autonomous"), ctx.clock, 1, action="open_pr")
    # A receipt from before the rejection opens nothing: mutation testing and the PR ask again.
    from prodloop.server.store import receipts
    from prodloop.tools.judge.candidate import sha256
    from prodloop.tools.judge.candidate import test_digest as digest_of
    from prodloop.tools.judge.mutation import mutate_validate
    from prodloop.tools.ship.pull_request import open_pr

    code = "def test_x():\n    assert True\n"
    receipts.save(ctx.store, receipts.Receipt(
        id="a" * 32, issue_id=1, event_id=ctx.store.latest_event(1).event_id, commit_sha=build.changed,
        test_path="tests/test_x.py", test_name="test_x", test_code=code, test_sha256=digest_of(code, None),
        fix_diff="", fix_sha256=sha256(""), passed=True, gates=(), cpu_seconds=0.0, created_at=NOW,
    ))  # fmt: skip
    for step in (mutate_validate, open_pr):
        with pytest.raises(TriageRefused, match="a person rejected it"):
            step(*ctx.collaborators(), receipt_id="a" * 32)
    assert [(d.decision, d.who, d.classification) for d in signals.decisions(ctx.store)] == [
        ("approved", "Ada", "actionable"), ("rejected", "Bo", "actionable"),
    ]  # fmt: skip
    with pytest.raises(NotFoundError, match="run prodloop triage first"):
        signals.decide(ctx.store, 9, "approved", who="Ada", why="", at=NOW)
    old = copy.deepcopy(build.event)
    old["exception"]["values"][-1].update(type="OldError")
    _send(ctx, old, [NOW - 40 * DAY], release="shop@1.0.0")  # older than the window a full pass reads
    with pytest.raises(TriageRefused, match="classified it observation and awaits a person"):
        require_clearance(ctx.store, ctx.git(), _mode(ctx, "approve"), ctx.clock, 2,
                          action="open_pr")  # fmt: skip
    require_clearance(ctx.store, ctx.git(), _mode(ctx, "off"), ctx.clock, 2, action="open_pr")  # the operator's


def test_triage_over_mcp_orders_issues_by_priority_and_gates_the_loop_until_a_person_approves(
    scenario: Callable[..., AppContext], anyio_backend: str
) -> None:
    import anyio
    from mcp import Client

    from prodloop.server.mcp_app import build_mcp
    from prodloop.tools.loop import run_loop

    build: Any = scenario
    ctx = build("mcp")
    _deploys(ctx, build, NOW - 6 * HOUR)
    _send(ctx, build.event, _spread(NOW - 5.5 * HOUR, NOW, 40), release="shop@1.1.0")
    quiet = copy.deepcopy(build.event)
    quiet["exception"]["values"][-1].update(type="ValueError", value="rare")
    _send(ctx, quiet, [NOW - 9 * DAY, NOW - 3 * DAY], release="shop@1.0.0")

    async def calls() -> tuple[dict[str, Any], dict[str, Any]]:
        async with Client(build_mcp(ctx)) as client:
            triaged = await client.call_tool("triage_signals", {})
            listed = await client.call_tool("list_issues", {"order_by": "priority"})
        return triaged.structured_content or {}, listed.structured_content or {}

    triaged, listed = anyio.run(calls)
    assert [(s["issue_id"], s["classification"]) for s in triaged["signals"]] == [(1, "actionable"), (2, "observation")]
    assert triaged["mode"] == "approve"
    first = listed["issues"][0]
    assert (first["id"], first["triage"]) == (1, "actionable")
    assert set(first["priority_breakdown"]) == {"breadth", "depth", "duration", "trend"}
    report = run_loop(*ctx.collaborators(), issue_id=1)
    assert report.outcome == "needs_approval" and "prodloop triage approve 1" in (report.needed or "")


def test_an_actionable_issue_is_filed_once_with_scrubbed_fenced_evidence_and_user_reports_corroborate(
    scenario: Callable[..., AppContext],
) -> None:
    from prodloop.tools.ship.issue_filing import file_signal
    from tests.fakes.github_api import FakeGitHub

    build: Any = scenario
    token = "ghp_" + "t0k3n" * 8
    with FakeGitHub(token=token) as fake:
        ctx = build("filing", github_token=token, github_base_url=fake.base_url, github_repo="acme/shop")
        _deploys(ctx, build, NOW - 6 * HOUR)
        hostile = copy.deepcopy(build.event)
        hostile["exception"]["values"][-1]["value"] = (
            "'kiwi' ``` @octocat [click](http://evil.example) password=hunter2"
        )
        _send(ctx, hostile, _spread(NOW - 5.5 * HOUR, NOW, 40), release="shop@1.1.0")
        rare = copy.deepcopy(build.event)
        rare["exception"]["values"][-1].update(type="ValueError", value="rare")
        _send(ctx, rare, [NOW - 9 * DAY, NOW - 8 * DAY], release="shop@1.0.0", users=1)
        fake.add_user_issue("Checkout fails with KeyError for kiwi", "Since this morning line_total raises for me")
        fake.add_user_issue("KeyError somewhere else", "in the admin panel")
        report = triage_signals(ctx.store, ctx.git(), ctx.settings, ctx.clock)
        first = report.signals[0]
        assert first.classification == "actionable"
        assert [r.split(" http")[0] for r in first.user_reports] == ["#1 Checkout fails with KeyError for kiwi"], (
            first.notes
        )
        assert first.confidence_components["user_reports"] == 1.0
        with pytest.raises(TriageRefused, match="not actionable"):
            file_signal(ctx.store, ctx.git(), ctx.settings, ctx.clock, issue_id=2)
        filed = file_signal(ctx.store, ctx.git(), ctx.settings, ctx.clock, issue_id=first.issue_id)
        again = file_signal(ctx.store, ctx.git(), ctx.settings, ctx.clock, issue_id=first.issue_id)
        assert (filed.mode, filed.number, filed.already, again.already, again.number) == ("github", 3, False, True, 3)
        body = fake.issues[3]["body"]
        assert fake.issues[3]["labels"] == [{"name": "prodloop"}, {"name": "production-error"}]
        assert "hunter2" not in body and token not in json.dumps([r.body for r in fake.requests])
        fence_lines = [line for line in body.splitlines() if line.startswith("```")]
        assert len(fence_lines) % 2 == 0 and "``` @octocat" not in body  # the value cannot close its fence
        assert "deploy (0.9)" in body and "<!-- prodloop:issue=" in body
        with ctx.store.transaction() as conn:  # the store forgot (another store, a restore): GitHub has the marker
            conn.execute("UPDATE signals SET filed = NULL")
        assert file_signal(ctx.store, ctx.git(), ctx.settings, ctx.clock, issue_id=first.issue_id).number == 3
        assert len(fake.issues) == 3  # two users' issues and prodloop's one
    local = build("filing-local")
    _deploys(local, build, NOW - 6 * HOUR)
    _send(local, build.event, _spread(NOW - 5.5 * HOUR, NOW, 40), release="shop@1.1.0")
    triage_signals(local.store, local.git(), local.settings, local.clock)
    written = file_signal(local.store, local.git(), local.settings, local.clock, issue_id=1)
    assert written.mode == "local" and written.path is not None
    assert Path(written.path).read_text().startswith("# [prodloop] KeyError")
    assert oct(Path(written.path).stat().st_mode & 0o777) == "0o600"


def test_serve_http_triages_in_the_background_once_events_arrive(live_server: Callable[..., Any]) -> None:
    from tests.conftest import make_event, post

    server = live_server(triage={"interval_seconds": 1})
    subprocess.run(["git", "init", "-q", str(server.ctx.settings.repo)], check=True)  # the service's checkout
    header = json.dumps({"dsn": server.dsn}).encode()
    event = json.dumps(make_event(timestamp=time.time() - 60)).encode()
    reply = post(server.envelope_url(), b"\n".join([header, b'{"type":"event"}', event]) + b"\n")
    assert reply.status == 200, reply.body
    deadline = time.monotonic() + 20
    while signals.get(server.ctx.store, 1) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    triaged = signals.get(server.ctx.store, 1)
    assert triaged is not None and triaged.classification == "observation"  # one event: never actionable


def test_forged_corroboration_does_not_make_an_issue_actionable(scenario: Callable[..., AppContext]) -> None:
    from prodloop.tools.observe.deploys import record_deploy

    build: Any = scenario
    # An agent records the deploy that would explain the spike (what the MCP tool does): not evidence.
    ctx = build("agent-deploy")
    for release, commit, at in (("shop@1.0.0", build.service.commit, NOW - 10 * DAY),
                                ("shop@1.1.0", build.changed, NOW - 6 * HOUR)):  # fmt: skip
        record_deploy(ctx.store, ctx.git(), ctx.clock, release=release, commit=commit, deployed_at=at, source="agent")
    _send(ctx, build.event, _spread(NOW - 5.5 * HOUR, NOW, 40), release="shop@1.1.0")
    (signal,) = triage_signals(ctx.store, ctx.git(), ctx.settings, ctx.clock).signals
    assert signal.classification == "observation" and not any(a.cause == "deploy" for a in signal.attribution)
    # A sender claims other packages for the failing release: the release's packages disagree, so no dependency
    # change is trusted (the first list a release reported is kept; a different one is a conflict).
    ctx = build("forged-packages")
    base = _with_library_frame(build.event, "requests")
    _send(ctx, {**base, "modules": {"requests": "2.31.0"}}, [NOW - 8 * DAY], release="shop@1.0.0")
    _send(ctx, {**base, "modules": {"requests": "2.31.0"}}, _spread(NOW - 7 * HOUR, NOW, 40), release="shop@1.1.0")
    _send(ctx, {**base, "modules": {"requests": "9.9.9"}}, [NOW - HOUR], release="shop@1.1.0")
    (signal,) = triage_signals(ctx.store, ctx.git(), ctx.settings, ctx.clock).signals
    assert signal.classification == "observation" and not any(a.cause == "dependency" for a in signal.attribution)


def test_a_decision_holds_for_what_was_decided_and_the_daily_cap_counts_issues_that_became_actionable(
    scenario: Callable[..., AppContext],
) -> None:
    build: Any = scenario
    ctx = build("decisions", triage={"max_actionable_per_day": 1})
    clock = ctx.clock
    assert isinstance(clock, FixedClock)
    _deploys(ctx, build, NOW - 6 * HOUR)
    for n in range(2):  # two issues, each seen a little yesterday: observations then
        event = copy.deepcopy(build.event)
        event["exception"]["values"][-1].update(type=f"Spike{n}Error")
        _send(ctx, event, [NOW - 3 * DAY, NOW - 2 * DAY], release="shop@1.0.0")
    clock.at = NOW - DAY
    assert [s.classification for s in triage_signals(ctx.store, ctx.git(), ctx.settings, ctx.clock).signals] == [
        "observation", "observation",
    ]  # fmt: skip
    signals.decide(ctx.store, 1, "approved", who="Ada", why="looks real", at=clock.at)
    clock.at = NOW
    for n in range(2):  # both spike after the deploy today
        event = copy.deepcopy(build.event)
        event["exception"]["values"][-1].update(type=f"Spike{n}Error")
        _send(ctx, event, _spread(NOW - 5.5 * HOUR, NOW, 40, seed=n), release="shop@1.1.0")
    today = triage_signals(ctx.store, ctx.git(), ctx.settings, ctx.clock).signals
    assert sorted(s.classification for s in today) == ["actionable", "observation"], [
        (s.missing, s.onset) for s in today
    ]
    capped = next(s for s in today if s.classification == "observation")
    assert any("today's cap of 1" in m for m in capped.missing)
    assert signals.get(ctx.store, 1) is not None and signals.get(ctx.store, 1).decision == "pending"  # type: ignore[union-attr]


def test_a_rejection_stands_and_an_approval_covers_only_the_incident_a_person_saw(
    scenario: Callable[..., AppContext],
) -> None:
    build: Any = scenario
    ctx = build("decision-scope")
    _send(ctx, build.event, [NOW - 2 * DAY], release="shop@1.0.0")

    def judged(kind: str, onset: float, tier: int = 1) -> signals.SignalRow:
        row = signals.SignalRow(1, kind, onset, 50.0, 0.5, tier, {"missing": []}, "pending", NOW, NOW)
        return signals.save(ctx.store, row, {})

    judged("observation", NOW - 2 * DAY)
    signals.decide(ctx.store, 1, "rejected", who="Ada", why="noise", at=NOW)
    assert judged("actionable", NOW - HOUR).decision == "rejected"  # a burst of events cannot undo a person
    signals.decide(ctx.store, 1, "approved", who="Ada", why="real after all", at=NOW)
    assert judged("actionable", NOW - 2 * HOUR).decision == "approved"  # the same incident, re-read
    assert judged("actionable", NOW - 2 * HOUR, tier=2).decision == "pending"  # now tier 2: ask again
    signals.decide(ctx.store, 1, "approved", who="Ada", why="ok", at=NOW)
    assert judged("actionable", NOW + 3 * DAY).decision == "pending"  # another incident: ask again
    signals.decide(ctx.store, 1, "approved", who="Ada", why="ok", at=NOW)
    ctx.store.set_status(1, "resolved")
    _send(ctx, build.event, [NOW + 60], release="shop@9.9.9")  # it came back after the fix: regression
    assert signals.get(ctx.store, 1).decision == "pending"  # type: ignore[union-attr]
