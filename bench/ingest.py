"""Ingest throughput, acknowledgement latency and `fetch_error_context` speed, measured.

1. HTTP ingest: starts a real `prodloop serve --http` subprocess (rate limit off), builds a pool of
   varied envelopes with the real sentry-sdk (a capturing transport), and posts them, gzipped and each
   with a fresh event_id, from keep-alive HTTP/1.1 connections spread over client processes for a fixed
   window after a warm-up. Prints events/s, ack latency percentiles, refusals by status, and checks that
   the `events` table holds exactly one row per 200 acknowledgement.
2. Context reads: fills a store directly with `--events` events (~1,000 issues over 7 days) and times
   `fetch_error_context` by issue and by event id, and `list_issues(order_by="event_count")`.

Run from the repository root:

    python bench/ingest.py                      # both parts, 8 connections in 2 client processes
    python bench/ingest.py --client-procs 1 --seconds 20 --skip-context
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gzip
import http.client
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import sentry_sdk
from _ingest_pool import Pool, capture_pool

from prodloop.server.context import AppContext
from prodloop.server.ingest.pipeline import EventProcessor
from prodloop.server.settings import load_settings
from prodloop.tools.observe.error_context import fetch_error_context
from prodloop.tools.observe.issues import list_issues

GOAL_EVENTS_PER_S = 2_000.0
GOAL_P99_MS = 50.0
GOAL_CONTEXT_P50_MS = 20.0

# -- part 1: HTTP ingest ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "prodloop.server.cli", *args]


def _project_of(repo: Path) -> tuple[int, str]:
    conn = sqlite3.connect(f"file:{repo / '.prodloop' / 'prodloop.db'}?mode=ro", uri=True)
    try:
        project_id, key = conn.execute("SELECT id, public_key FROM projects ORDER BY id LIMIT 1").fetchone()
    finally:
        conn.close()
    return int(project_id), str(key)


def _count_events(repo: Path) -> int:
    conn = sqlite3.connect(f"file:{repo / '.prodloop' / 'prodloop.db'}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        conn.close()


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (Linux /proc), 0 where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def _server(repo: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A `prodloop serve --http` subprocess, answered /healthz; always stopped (SIGINT, then kill)."""
    env = {**os.environ, "PRODLOOP_INGEST_RATE_LIMIT": "0"}
    log = (repo / "server.log").open("wb")  # holds the MCP token: never printed whole
    proc = subprocess.Popen(
        _cli("serve", "--http", "--repo", str(repo), "--port", str(port)), env=env, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                lines = (repo / "server.log").read_text(errors="replace").splitlines()
                safe = "\n".join(line for line in lines if "token" not in line.lower())
                raise RuntimeError(f"the server did not come up:\n{safe[-2000:]}")
            with contextlib.suppress(OSError):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    break
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


@dataclasses.dataclass(frozen=True)
class _Job:
    port: int
    path: str
    pool: Pool
    connections: int
    warmup: float
    seconds: float


def _sender(job: _Job, t0: float, seed: int, out: dict[str, Any], lock: threading.Lock) -> None:
    """One keep-alive connection posting fresh-id envelopes until the window closes."""
    rng = random.Random(seed)
    start, end = t0 + job.warmup, t0 + job.warmup + job.seconds
    headers = {
        "Content-Type": "application/x-sentry-envelope",
        "Content-Encoding": "gzip",
        "X-Sentry-Auth": job.pool.auth_header,
        "User-Agent": f"sentry.python/{sentry_sdk.VERSION}",
    }
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    acked = in_window = 0
    conn = http.client.HTTPConnection("127.0.0.1", job.port, timeout=30)
    while time.monotonic() < end:
        i = rng.randrange(len(job.pool.bodies))
        fresh = rng.getrandbits(128).to_bytes(16, "big").hex()
        body = gzip.compress(job.pool.bodies[i].replace(job.pool.event_ids[i].encode(), fresh.encode()), 9)
        sent = time.monotonic()
        try:
            conn.request("POST", job.path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            status = str(response.status)
        except (OSError, http.client.HTTPException) as exc:
            status = type(exc).__name__
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", job.port, timeout=30)
        done = time.monotonic()
        statuses[status] += 1
        if status == "200":
            acked += 1
            if start <= done <= end:
                in_window += 1
                latencies.append(done - sent)
    conn.close()
    with lock:
        out["latencies"].extend(latencies)
        out["statuses"].update(statuses)
        out["acked"] += acked
        out["in_window"] += in_window


def _client_process(job: _Job, proc_index: int, ready: Any, go: Any, t0: Any, results: Any) -> None:
    """A client process: `job.connections` sender threads, started together at the shared t0."""
    out: dict[str, Any] = {"latencies": [], "statuses": Counter(), "acked": 0, "in_window": 0}
    lock = threading.Lock()
    ready.wait(timeout=60)
    if not go.wait(timeout=60):
        return
    cpu = time.process_time()
    threads = [
        threading.Thread(target=_sender, args=(job, t0.value, proc_index * 1000 + n, out, lock))
        for n in range(job.connections)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out["cpu"] = time.process_time() - cpu
    out["statuses"] = dict(out["statuses"])
    results.put(out)


def _pct(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def _verdict(achieved: float, goal: float, *, at_least: bool) -> str:
    met = achieved >= goal if at_least else achieved <= goal
    return f"(achieved/goal {achieved / goal:.2f}, {'met' if met else 'MISSED'})"


def _drive(job: _Job, split: list[int], server_pid: int) -> tuple[list[dict[str, Any]], float]:
    """Run the client processes against the server; their results and the server's CPU seconds in the window."""
    ctx = multiprocessing.get_context("spawn")
    ready, go, t0, results = ctx.Barrier(len(split) + 1), ctx.Event(), ctx.Value("d", 0.0), ctx.Queue()
    workers = [
        ctx.Process(target=_client_process, args=(dataclasses.replace(job, connections=n), p, ready, go, t0, results))
        for p, n in enumerate(split)
    ]
    try:
        for worker in workers:
            worker.start()
        ready.wait(timeout=60)
        t0.value = time.monotonic() + 0.05
        go.set()
        time.sleep(max(0.0, t0.value + job.warmup - time.monotonic()))
        cpu = _cpu_seconds(server_pid)
        time.sleep(job.seconds)
        cpu = _cpu_seconds(server_pid) - cpu
        return [results.get(timeout=job.warmup + job.seconds + 120) for _ in workers], cpu
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.terminate()


def _bench_http(args: argparse.Namespace) -> None:
    repo = Path(tempfile.mkdtemp(prefix="prodloop-bench-http-"))
    try:
        subprocess.run(_cli("init", "--repo", str(repo)), check=True, capture_output=True)
        project_id, key = _project_of(repo)
        port = _free_port()
        pool = capture_pool(f"http://{key}@127.0.0.1:{port}/{project_id}", args.pool)
        procs = max(1, min(args.client_procs, args.senders))
        split = [args.senders // procs + (1 if p < args.senders % procs else 0) for p in range(procs)]
        raw = sorted(len(b) / 1024 for b in pool.bodies)
        gz = sorted(len(gzip.compress(b, 9)) / 1024 for b in pool.bodies)
        print("[1] sustained ingest over HTTP")
        print(f"  server            prodloop serve --http (1 uvicorn process), rate limit off, {os.cpu_count()} CPUs")
        print(f"  clients           {args.senders} keep-alive connections in {procs} process(es) {split}")
        print(
            f"  envelopes         {len(pool.bodies)} distinct sentry-sdk events, median {_pct(raw, 0.5):.1f} KiB ",
            end="",
        )
        print(f"raw / {_pct(gz, 0.5):.1f} KiB gzip -9, a fresh event_id per post")
        print(f"  window            {args.seconds:g} s after {args.warmup:g} s warm-up")
        job = _Job(port, f"/api/{project_id}/envelope/", pool, 0, args.warmup, args.seconds)
        with _server(repo, port) as server:
            outs, server_cpu = _drive(job, split, server.pid)
        stored = _count_events(repo)
    finally:
        shutil.rmtree(repo, ignore_errors=True)
    _report_http(args, outs, server_cpu, stored)


def _report_http(args: argparse.Namespace, outs: list[dict[str, Any]], server_cpu: float, stored: int) -> None:
    latencies = sorted(x * 1000 for o in outs for x in o["latencies"])
    statuses: Counter[str] = Counter()
    for o in outs:
        statuses.update(o["statuses"])
    acked = sum(o["acked"] for o in outs)
    in_window = sum(o["in_window"] for o in outs)
    rate = in_window / args.seconds
    refused = ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items()) if code != "200")
    print(f"  acknowledged      {in_window:,} in the window, {acked:,} in all (200)")
    print(f"  throughput        {rate:7,.0f} events/s  goal >= {GOAL_EVENTS_PER_S:,.0f} events/s  ", end="")
    print(_verdict(rate, GOAL_EVENTS_PER_S, at_least=True))
    print(f"  ack latency p50   {_pct(latencies, 0.5):7.1f} ms")
    print(f"  ack latency p90   {_pct(latencies, 0.9):7.1f} ms")
    p99 = _pct(latencies, 0.99)
    print(f"  ack latency p99   {p99:7.1f} ms        goal <= {GOAL_P99_MS:.0f} ms  ", end="")
    print(_verdict(p99, GOAL_P99_MS, at_least=False))
    print(f"  ack latency max   {latencies[-1] if latencies else float('nan'):7.1f} ms")
    print(f"  non-200 statuses  {refused or 'none'}")
    per_event = server_cpu * 1000 / in_window if in_window else float("nan")
    client_cpu = sum(o["cpu"] for o in outs) / (args.warmup + args.seconds)
    print(
        f"  CPU               server {server_cpu / args.seconds:.0%} of a core = {per_event:.2f} ms per event; ", end=""
    )
    print(f"clients {client_cpu:.0%} of a core")
    if stored == acked:
        print(f"  durability check: OK ({stored:,} rows in events = {acked:,} acknowledgements)")
    else:
        print(f"  durability check: MISMATCH ({stored:,} rows in events, {acked:,} acknowledgements)")


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
    p50 = _pct(times, 0.5)
    line = f"  {label:36} p50 {p50:6.2f} ms  p90 {_pct(times, 0.9):6.2f} ms  p99 {_pct(times, 0.99):6.2f} ms"
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
    args = parser.parse_args()
    if args.seconds <= 0 or args.warmup < 0 or args.senders < 1 or args.client_procs < 1 or args.events < 1:
        parser.error("--seconds, --senders, --client-procs and --events must be positive")
    print(f"prodloop ingest bench: Python {sys.version.split()[0]}, sentry-sdk {sentry_sdk.VERSION}")
    if not args.skip_http:
        _bench_http(args)
    if not args.skip_context:
        _bench_context(args)


if __name__ == "__main__":
    main()
