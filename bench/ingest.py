"""Ingest throughput, acknowledgement latency and CPU per stored event, side by side; `fetch_error_context` speed.

1. HTTP ingest: starts `--processes N` real `prodloop serve --http` subprocesses on one store, each on its own port,
   and/or one `prodloop serve-ingest --processes N` (`--ingest-processes N`: uvicorn's N workers on one port) (rate
   limit off; the store is a throwaway SQLite file, or a throwaway database on the PostgreSQL server `--database-url`
   names), builds a pool of varied envelopes with the real sentry-sdk (a capturing transport), and posts them,
   gzipped and each with a fresh event_id, from keep-alive HTTP/1.1 connections spread over client processes (and
   round-robin over the server ports) for a fixed window after a warm-up. The clients are kept cheap, since they
   share the machine: each envelope is compressed once, with its event_id in stored deflate blocks (a fresh id costs
   a CRC), and posted on a bare socket. Prints events/s acknowledged and stored, ack latency
   percentiles, refusals by status, CPU seconds of the server processes (and their children) per stored event, and
   checks that the store holds exactly one event per 200 acknowledgement. Several `--processes` values, and
   `--against-bugsink` (Bugsink in its own virtualenv, see bench/_bugsink.py), run as interleaved rounds of the
   same load generator; each system's median and spread over the rounds and the ratios are printed.
2. Context reads: fills a store directly with `--events` events (~1,000 issues over 7 days) and times
   `fetch_error_context` by issue and by event id, and `list_issues(order_by="event_count")`.

Run from the repository root:

    python bench/ingest.py                      # both parts, 8 connections in 2 client processes
    python bench/ingest.py --client-procs 1 --seconds 20 --skip-context
    python bench/ingest.py --skip-context --processes 1 2            # 1 vs 2 server processes on one SQLite file
    python bench/ingest.py --skip-context --ingest-processes 1 2 --senders 16    # serve-ingest, 1 vs 2 workers
    python bench/ingest.py --skip-context --database-url postgresql://postgres@127.0.0.1:5432/postgres
    python bench/ingest.py --skip-context --against-bugsink --bugsink-venv /tmp/bugsink-venv   # 3 rounds each
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gzip
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sentry_sdk
from _bugsink import HOW_TO_INSTALL, bugsink_target, check_venv
from _ingest_load import Load, Round, Target, drive, pct
from _ingest_pool import Pool, capture_pool
from _prodloop_target import prodloop_target

from prodloop.server.context import AppContext
from prodloop.server.ingest.pipeline import EventProcessor
from prodloop.server.settings import load_settings
from prodloop.tools.observe.error_context import fetch_error_context
from prodloop.tools.observe.issues import list_issues

GOAL_EVENTS_PER_S = 2_000.0
GOAL_P99_MS = 50.0
GOAL_CONTEXT_P50_MS = 20.0

# -- part 1: HTTP ingest ---------------------------------------------------------------------------


def _verdict(achieved: float, goal: float, *, at_least: bool) -> str:
    met = achieved >= goal if at_least else achieved <= goal
    return f"(achieved/goal {achieved / goal:.2f}, {'met' if met else 'MISSED'})"


def _check(r: Round) -> str:
    if r.stored_total == r.acked_total:
        return f"OK ({r.stored_total:,} stored = {r.acked_total:,} acknowledged)"
    return f"MISMATCH ({r.stored_total:,} stored, {r.acked_total:,} acknowledged)"


def _report_round(n: int, name: str, r: Round, load: Load) -> None:
    refused = ", ".join(f"{code}: {k}" for code, k in sorted(r.statuses.items()) if code != "200") or "none"
    pad = " " * 24
    print(
        f"  round {n} {name:14} acked {r.acked_per_s:5,.0f}/s  stored {r.stored_per_s:5,.0f}/s  ack ms p50 "
        f"{r.pct(0.5):.1f} p90 {r.pct(0.9):.1f} p99 {r.pct(0.99):.1f} max {r.pct(1.0):.1f}  non-200: {refused}"
    )
    print(
        f"{pad}server CPU {r.server_cpu_window / r.seconds:.0%} of a core: {r.cpu_ms_per_stored_window:.2f} ms per "
        f"stored event in the window, {r.cpu_ms_per_stored_total:.2f} over the round ({r.drain_seconds:.1f} s drain)"
    )
    others = r.others_cpu_window(load.warmup) / r.seconds
    print(
        f"{pad}clients {r.client_cpu / (load.warmup + load.seconds):.0%} of a core, other work on the machine "
        f"{others:.0%}; durability check: {_check(r)}"
    )


def _median(values: list[float]) -> float:
    values = [v for v in values if v == v]  # NaN (nothing stored) out
    return statistics.median(values) if values else float("nan")


def _median_spread(values: list[float], fmt: str) -> str:
    values = sorted(v for v in values if v == v)
    if not values:
        return "n/a"
    median = statistics.median(values)
    if len(values) == 1:
        return format(median, fmt)
    return f"{format(median, fmt)} [{format(values[0], fmt)}-{format(values[-1], fmt)}]"


def _ratio(a: float, b: float) -> str:
    return f"x{a / b:.2f}" if b and a == a and b == b else "n/a"


def _summary(names: list[str], rounds: dict[str, list[Round]], load: Load) -> None:
    count = len(next(iter(rounds.values())))
    print(f"  summary over {count} round(s): median [min-max]")
    print(
        f"  {'system':13} {'acked events/s':>22} {'stored events/s':>22} {'p99 ack ms':>22} "
        f"{'CPU ms/stored event':>22}  checks"
    )
    medians: dict[str, tuple[float, float, float, float]] = {}
    for name in names:
        rs = rounds[name]
        cols = (
            [r.acked_per_s for r in rs],
            [r.stored_per_s for r in rs],
            [r.pct(0.99) for r in rs],
            [r.cpu_ms_per_stored_total for r in rs],
        )
        fmts = (",.0f", ",.0f", ".1f", ".2f")
        cells = [_median_spread(list(c), f) for c, f in zip(cols, fmts, strict=True)]
        ok = sum(r.stored_total == r.acked_total for r in rs)
        print(f"  {name:13} {cells[0]:>22} {cells[1]:>22} {cells[2]:>22} {cells[3]:>22}  {ok}/{len(rs)} OK")
        medians[name] = (_median(cols[0]), _median(cols[1]), _median(cols[2]), _median(cols[3]))
    print("  (CPU per stored event: the server processes and their children, from the first post until every")
    print("   acknowledged event was stored, over the events stored; the window alone is in the round lines)")
    others = [r.others_cpu_window(load.warmup) / r.seconds for rs in rounds.values() for r in rs]
    print(f"  other work on the machine in the windows: {_median_spread(others, '.0%')} of a core (neither this")
    print("   bench's servers nor its clients; when it is large, compare the ratios rather than the absolute rates)")
    reference = "Bugsink" if "Bugsink" in medians else names[0]
    ref = medians[reference]
    for name in names:
        if name == reference:
            continue
        m = medians[name]
        print(
            f"  {name} / {reference}: acked/s {_ratio(m[0], ref[0])}, stored/s {_ratio(m[1], ref[1])}, "
            f"p99 ack {_ratio(m[2], ref[2])}, CPU per stored event {_ratio(m[3], ref[3])} (medians)"
        )
    for name in names:
        if name.startswith(("prodloop", "ingest")):
            stored, p99 = medians[name][1], medians[name][2]
            print(
                f"  goals {name}: stored {stored:,.0f}/s, goal >= {GOAL_EVENTS_PER_S:,.0f}/s "
                f"{_verdict(stored, GOAL_EVENTS_PER_S, at_least=True)}"
            )
            print(
                f"  {'':{len(name) + 8}}p99 ack {p99:.1f} ms, goal <= {GOAL_P99_MS:.0f} ms "
                f"{_verdict(p99, GOAL_P99_MS, at_least=False)}"
            )


def _bench_http(args: argparse.Namespace) -> None:
    several = len(args.processes) + len(args.ingest_processes) > 1
    rounds = args.rounds or (3 if args.against_bugsink or several else 1)
    with contextlib.ExitStack() as stack:
        systems: list[Target] = [
            stack.enter_context(prodloop_target(n, args.database_url)) for n in dict.fromkeys(args.processes)
        ]
        systems += [
            stack.enter_context(prodloop_target(n, args.database_url, ingest=True, scrubbers=args.scrubbers))
            for n in dict.fromkeys(args.ingest_processes)
        ]
        if args.against_bugsink:
            systems.append(stack.enter_context(bugsink_target(Path(args.bugsink_venv))))
        pools = {s.name: capture_pool(s.dsn, args.pool) for s in systems}  # each system's own DSN, same events
        some = next(iter(pools.values()))
        raw = sorted(len(b) / 1024 for b in some.bodies)
        gz = sorted(len(gzip.compress(b, 9)) / 1024 for b in some.bodies)
        load = Load(some, args.senders, args.client_procs, args.warmup, args.seconds, args.drain_idle)
        print("[1] sustained ingest over HTTP")
        print(f"  machine           {os.cpu_count()} CPUs; every system gets the same load, in interleaved rounds")
        for s in systems:
            print(f"  {s.name:17} {s.describe()}")
        print(f"  clients           {args.senders} keep-alive connections in {len(load.split)} process(es) ", end="")
        print(f"{load.split}, round-robin over a system's ports")
        print(
            f"  envelopes         {len(some.bodies)} distinct sentry-sdk events, median {pct(raw, 0.5):.1f} KiB ",
            end="",
        )
        print(f"raw / {pct(gz, 0.5):.1f} KiB gzip -9, a fresh event_id per post")
        print(f"  window            {args.seconds:g} s after {args.warmup:g} s warm-up, then a drain: the wait until")
        print(f"                    every acknowledged event is stored (given up after {args.drain_idle:g} s unmoved)")
        results: dict[str, list[Round]] = {s.name: [] for s in systems}
        for n in range(1, rounds + 1):
            for s in systems:
                with s.running():
                    r = drive(s, dataclasses.replace(load, pool=pools[s.name]))
                results[s.name].append(r)
                _report_round(n, s.name, r, load)
    _summary([s.name for s in systems], results, load)


# -- part 2: context reads over a large store ------------------------------------------------------


def _fill_store(ctx: AppContext, pool: Pool, count: int, rng: random.Random) -> list[str]:
    """Store `count` clones of the pool's processed events (~1,000 issues, 7 days); their event ids."""
    project = ctx.store.create_project("bench")
    processor = EventProcessor(ctx.settings, ctx.clock)
    templates = []
    for body in pool.bodies:
        item = json.loads(body.split(b"\n", 2)[1])
        raw = json.loads(body.split(b"\n", 2)[2][: item["length"]])
        templates.append(processor.process(raw, project_id=project.id, user_salt=project.public_key, source="bench"))
    variants = max(1, round(1_000 / len({t.fingerprint for t in templates})))
    now, week = time.time(), 7 * 86_400.0
    event_ids: list[str] = []
    for first in range(0, count, 5_000):
        batch = []
        for n in range(first, min(first + 5_000, count)):
            base = templates[n % len(templates)]
            event_id = f"{rng.getrandbits(128):032x}"
            user = rng.randrange(20_000)
            batch.append(
                dataclasses.replace(
                    base,
                    event_id=event_id,
                    fingerprint=f"{base.fingerprint}:{rng.randrange(variants)}",
                    timestamp=now - rng.random() * week,
                    received=now,
                    user_hash=f"{user:032x}" if user % 10 else None,
                    payload=base.payload.replace(base.event_id, event_id),
                )
            )
            event_ids.append(event_id)
        ctx.store.write_events(batch)
    return event_ids


def _time_calls(label: str, call: Callable[[], object], *, goal_ms: float | None = None, calls: int = 200) -> None:
    call()  # opens this thread's read connection
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    p50 = pct(times, 0.5)
    line = f"  {label:36} p50 {p50:6.2f} ms  p90 {pct(times, 0.9):6.2f} ms  p99 {pct(times, 0.99):6.2f} ms"
    if goal_ms is not None:
        line += f"  goal p50 <= {goal_ms:.0f} ms  {_verdict(p50, goal_ms, at_least=False)}"
    print(line)


def _bench_context(args: argparse.Namespace) -> None:
    pool = capture_pool(f"http://{'0' * 32}@127.0.0.1:9/1", args.pool)  # nothing is sent: the transport keeps it
    rng = random.Random(11)
    repo = Path(tempfile.mkdtemp(prefix="prodloop-bench-ctx-"))
    try:
        ctx = AppContext.open(load_settings(repo=repo))
        try:
            started = time.perf_counter()
            event_ids = _fill_store(ctx, pool, args.events, rng)
            built = time.perf_counter() - started
            rows, issues = ctx.store.list_issues(limit=100_000)
            issue_ids = [row.id for row in rows]
            print(f"[2] context reads over {args.events:,} stored events")
            print(f"  store built       {built:.1f} s ({args.events / built:,.0f} events/s), {issues:,} issues")
            store = ctx.store
            goal = GOAL_CONTEXT_P50_MS
            _time_calls(
                "fetch_error_context(issue_id=...)",
                lambda: fetch_error_context(store, issue_id=rng.choice(issue_ids)),
                goal_ms=goal,
            )
            _time_calls(
                "fetch_error_context(event_id=...)",
                lambda: fetch_error_context(store, event_id=rng.choice(event_ids)),
                goal_ms=goal,
            )
            _time_calls('list_issues(order_by="event_count")', lambda: list_issues(store, order_by="event_count"))
        finally:
            ctx.close()
    finally:
        shutil.rmtree(repo, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window (after the warm-up)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of traffic before the window")
    parser.add_argument("--senders", type=int, default=8, help="concurrent keep-alive connections")
    parser.add_argument("--client-procs", type=int, default=2, help="client processes the senders are split over")
    parser.add_argument("--pool", type=int, default=200, help="distinct SDK events to post")
    parser.add_argument("--events", type=int, default=100_000, help="events stored for the context reads")
    parser.add_argument("--skip-http", action="store_true", help="skip part 1 (HTTP ingest)")
    parser.add_argument("--skip-context", action="store_true", help="skip part 2 (context reads)")
    parser.add_argument(
        "--processes",
        type=int,
        nargs="+",
        help="`serve --http` processes on one store, each on its own port (several values: each; default 1 unless "
        "--ingest-processes is given)",
    )
    parser.add_argument(
        "--ingest-processes",
        type=int,
        nargs="+",
        default=[],
        help="`serve-ingest --processes N` (uvicorn workers on one port) on one store (several values: each)",
    )
    parser.add_argument("--scrubbers", type=int, help="serve-ingest --scrubbers (per worker; default the setting's)")
    parser.add_argument(
        "--database-url",
        help="the servers' database_url: sqlite:///PATH (a new file; the bench deletes it) or postgresql://HOST/DB "
        "(the bench creates a throwaway database on that server and drops it); default a temp SQLite file",
    )
    parser.add_argument("--against-bugsink", action="store_true", help="also run Bugsink, side by side")
    parser.add_argument("--bugsink-venv", help=f"a virtualenv with Bugsink ({HOW_TO_INSTALL.format(venv='VENV')})")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per system (default 3 when comparing, else 1)")
    parser.add_argument(
        "--drain-idle", type=float, default=20.0, help="stop waiting for the stored count after this long unmoved"
    )
    args = parser.parse_args()
    if args.processes is None:
        args.processes = [] if args.ingest_processes else [1]
    if args.seconds <= 0 or args.warmup < 0 or args.senders < 1 or args.client_procs < 1 or args.events < 1:
        parser.error("--seconds, --senders, --client-procs and --events must be positive")
    if (
        min(args.processes + args.ingest_processes) < 1
        or (args.rounds is not None and args.rounds < 1)
        or args.drain_idle <= 0
    ):
        parser.error("--processes, --rounds and --drain-idle must be positive")
    if args.against_bugsink and not args.bugsink_venv:
        parser.error(
            "--against-bugsink needs --bugsink-venv VENV; make one with: " + HOW_TO_INSTALL.format(venv="VENV")
        )
    if args.bugsink_venv:
        check_venv(Path(args.bugsink_venv))
    print(f"prodloop ingest bench: Python {sys.version.split()[0]}, sentry-sdk {sentry_sdk.VERSION}")
    if not args.skip_http:
        _bench_http(args)
    if not args.skip_context:
        _bench_context(args)


if __name__ == "__main__":
    main()
