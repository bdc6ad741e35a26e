"""The closing stage against simulated production (tests/post_merge_sim.py: the sample service's real git repository
with real merges and operator deploy records, its real crash events through the real pipeline and store, an injected
clock). Prints four tables:

1. every scenario's verdict against its truth (fix works, no effect, already declining, low volume, regressed, a
   deploy that regresses, an unrelated deploy);
2. minutes from a deploy to the andon cord at 10x the baseline, per baseline rate (goal: within 5 minutes);
3. false cords over N deploys that change the issue's own file but not its traffic (overdispersed noise; checked
   every 5 minutes for an hour, then hourly for a day; goal: none);
4. hours from a fix's deploy to a `fixed` verdict, per traffic level.

    python bench/post_merge.py [--deploys 100] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prodloop.tools.observe.post_merge import LineageStep
from tests.post_merge_sim import DAY, HOUR, START, Sim, declining
from tests.sample_service import SampleService

MINUTE = 60.0
WORSE = (
    '"""Prices."""\n\nPRICES = {"apple": 30}\n\n\n'
    'def line_total(item):\n    return PRICES[item["sku"]] * item["qty"]\n\n\n'
    'def cart_total(cart):\n    return sum(line_total(item) for item in cart["items"])\n'
)


class Bench:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.events = SampleService(root / "events" / "shop")
        self.n = 0

    def sim(self, **settings: object) -> Sim:
        self.n += 1
        where = self.root / f"s{self.n}"
        return Sim(where / "shop", where / "data", events_from=self.events, seed=self.n, **settings)  # type: ignore[arg-type]


def _fixed_deploy(s: Sim, before: Callable[[float], float]) -> None:
    s.traffic(START + 3 * DAY, before)
    pr = s.open_fix_pr()
    s.traffic(s.now + HOUR, before)
    s.merge(pr)
    s.deploy("shop@1.1.0")


def _after(step: LineageStep) -> str:
    return f"after {step.judgement.hours_watched:.1f} h" if step.judgement else ""


def scenarios(bench: Bench) -> list[dict[str, object]]:
    rows = []

    def row(name: str, truth: str, got: str, detail: str) -> None:
        rows.append({"scenario": name, "truth": truth, "got": got, "ok": truth == got, "detail": detail})

    s = bench.sim()
    _fixed_deploy(s, lambda t: 20.0)
    got, step = s.until_verdict(lambda t: 0.0, 72)
    row("fix works (20/h -> 0)", "fixed", got, _after(step))
    s.traffic(s.now + HOUR, lambda t: 20.0, release="shop@1.2.0")
    row("fixed, then seen in a later release", "regressed", str(s.watch().lineages[-1].verdict), "")
    s.close()

    s = bench.sim()
    _fixed_deploy(s, lambda t: 20.0)
    got, step = s.until_verdict(lambda t: 20.0, 168)
    row("no effect (20/h -> 20/h)", "no_effect", got, _after(step))
    s.close()

    s = bench.sim()
    fading = declining(START, 40.0, 24)
    _fixed_deploy(s, fading)
    got, step = s.until_verdict(fading, 168)
    row("already declining (half-life 24 h), fix does nothing", "no_effect", got, _after(step))
    s.close()

    s = bench.sim()
    _fixed_deploy(s, lambda t: 0.25)
    got, step = s.until_verdict(lambda t: 0.0, 24)
    row(
        "low volume (0.25/h -> 0), after 24 h", "watching", got, (step.judgement.needed or "") if step.judgement else ""
    )
    s.close()

    s = bench.sim(andon={"propose_revert": False})
    s.traffic(START + DAY, lambda t: 60.0)
    s.deploy("shop@1.1.0", s.change("shop/pricing.py", WORSE))
    got, when = "no andon", ""
    for minute in range(1, 61):
        s.traffic(s.now + MINUTE, lambda t: 600.0, release="shop@1.1.0", step=MINUTE)
        if s.watch().cords_pulled:
            got, when = "andon", f"after {minute} min"
            break
    row("deploy regresses its path (60/h -> 600/h)", "andon", got, when)
    s.close()

    s = bench.sim(andon={"propose_revert": False})
    s.traffic(START + DAY, lambda t: 60.0)
    s.deploy("shop@1.1.0", s.change("shop/auth.py", "# unrelated\n"))
    got = "no andon"
    for _ in range(24):
        s.traffic(s.now + HOUR, lambda t: 120.0, release="shop@1.1.0")  # the issue doubles, not on its path
        if s.watch().cords_pulled:
            got = "andon"
    row("unrelated deploy (another file; the issue doubles)", "no andon", got, "")
    s.close()
    return rows


def andon_speed(bench: Bench) -> list[dict[str, object]]:
    rows = []
    for baseline in (6.0, 30.0, 120.0, 600.0):
        s = bench.sim(andon={"propose_revert": False})
        s.traffic(START + DAY, lambda t, b=baseline: b)
        s.deploy("shop@1.1.0", s.change("shop/pricing.py", WORSE))
        found = None
        for minute in range(1, 121):
            s.traffic(s.now + MINUTE, lambda t, b=baseline: 10 * b, release="shop@1.1.0", step=MINUTE)
            if s.watch().cords_pulled:
                found = minute
                break
        rows.append({"baseline_per_hour": baseline, "minutes_to_andon": found})
        s.close()
    return rows


def false_andons(bench: Bench, deploys: int) -> dict[str, object]:
    s = bench.sim(andon={"propose_revert": False})
    rate = lambda t: 30.0  # noqa: E731
    s.traffic(START + DAY, rate, overdispersion=0.1)
    pulled = checks = 0
    started = time.perf_counter()
    for n in range(deploys):
        release = f"shop@1.0.{n + 1}"
        s.deploy(release, s.change("shop/pricing.py", f"# revision {n}\n" + "x = 1\n" * (n % 7)))
        for step in [5 * MINUTE] * 12 + [HOUR] * 23:
            s.traffic(s.now + step, rate, overdispersion=0.1, release=release)
            pulled += len(s.watch().cords_pulled)
            checks += 1
    s.close()
    return {"deploys": deploys, "checks": checks, "false_cords": pulled,
            "seconds_per_check_ms": round(1000 * (time.perf_counter() - started) / max(checks, 1), 1)}  # fmt: skip


def time_to_fixed(bench: Bench) -> list[dict[str, object]]:
    rows = []
    for rate in (0.5, 2.0, 10.0, 50.0, 200.0):
        s = bench.sim()
        _fixed_deploy(s, lambda t, r=rate: r)
        hours = None
        for quarter in range(1, 7 * 24 * 4 + 1):
            s.traffic(s.now + 15 * MINUTE, lambda t: 0.0, release="shop@1.1.0")
            if s.watch().lineages[-1].verdict == "fixed":
                hours = quarter / 4
                break
        rows.append({"events_per_hour_before": rate, "hours_to_fixed": hours})
        s.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deploys", type=int, default=100)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="prodloop-bench-post-merge-") as tmp:
        bench = Bench(Path(tmp))
        out = {"scenarios": scenarios(bench), "andon_speed": andon_speed(bench),
               "false_andons": false_andons(bench, args.deploys), "time_to_fixed": time_to_fixed(bench)}  # fmt: skip
    print("| scenario | truth | got | detail |\n| --- | --- | --- | --- |")
    for r in out["scenarios"]:  # type: ignore[attr-defined]
        print(f"| {r['scenario']} | {r['truth']} | {r['got']} | {r['detail']} |")
    print("\n| baseline events/h | minutes to andon at 10x |\n| --- | --- |")
    for r in out["andon_speed"]:  # type: ignore[attr-defined]
        print(f"| {r['baseline_per_hour']:g} | {r['minutes_to_andon']} |")
    fa = out["false_andons"]
    print(f"\nfalse cords: {fa['false_cords']} over {fa['deploys']} deploys that change the issue's file, not its "  # type: ignore[index]
          f"traffic ({fa['checks']} checks, {fa['seconds_per_check_ms']} ms per watch pass)")  # type: ignore[index]  # fmt: skip
    print("\n| events/h before the fix | hours to 'fixed' |\n| --- | --- |")
    for r in out["time_to_fixed"]:  # type: ignore[attr-defined]
        print(f"| {r['events_per_hour_before']:g} | {r['hours_to_fixed']} |")
    ok = all(r["ok"] for r in out["scenarios"]) and fa["false_cords"] == 0  # type: ignore[attr-defined,index]
    print(f"\nevery verdict correct and no false cord: {ok}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
