"""The load generator `bench/ingest.py` drives every system with, and what it measures on the server side.

Keep-alive HTTP/1.1 connections in client processes post the pool's gzipped envelopes, each with a fresh event_id,
for a warm-up and a measured window; connection n goes to port n mod len(ports) (round-robin over the server
processes). Around the window the server side is read: the CPU time of the server process trees (/proc) and the
number of events stored. After the load, the run waits until everything acknowledged is stored (or storing stalls).
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import random
import re
import socket
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import sentry_sdk
from _ingest_pool import Pool


class Target(Protocol):
    """A system under load (bench/_prodloop_target.py, bench/_bugsink.py): set up once, `running()` for each round;
    where to post, how many events it holds, which processes are its own while running."""

    @property
    def name(self) -> str: ...

    @property
    def dsn(self) -> str: ...

    @property
    def ports(self) -> Sequence[int]: ...

    @property
    def envelope_path(self) -> str: ...

    def describe(self) -> str: ...

    def running(self) -> contextlib.AbstractContextManager[Any]: ...

    def stored(self) -> int: ...

    def root_pids(self) -> list[int]:
        """The system's processes now (read at every measurement): each is counted with its descendants."""
        ...


@dataclasses.dataclass(frozen=True)
class Load:
    pool: Pool
    senders: int
    client_procs: int
    warmup: float
    seconds: float
    drain_idle: float = 20.0  # give up waiting for the stored count when it has not moved for this long

    @property
    def split(self) -> list[int]:
        procs = max(1, min(self.client_procs, self.senders))
        return [self.senders // procs + (1 if p < self.senders % procs else 0) for p in range(procs)]


@dataclasses.dataclass(frozen=True)
class Round:
    """One system's measurements in one round. Rates are over the window; `*_total` over the whole round."""

    seconds: float
    acked_in_window: int
    acked_total: int
    statuses: dict[str, int]
    latencies_ms: list[float]  # sorted, the window's acknowledgements
    client_cpu: float  # seconds, all client processes
    server_cpu_window: float  # seconds, the server process trees, during the window
    stored_window: int  # events newly stored during the window
    server_cpu_total: float  # seconds, from the first post until everything acknowledged was stored (or stalled)
    stored_total: int  # events newly stored in the round, after the wait
    drain_seconds: float  # the wait after the load stopped until stored_total reached acked_total
    machine_cpu_window: float  # seconds, every process on the machine, during the window (/proc/stat)

    @property
    def acked_per_s(self) -> float:
        return self.acked_in_window / self.seconds

    @property
    def stored_per_s(self) -> float:
        return self.stored_window / self.seconds

    @property
    def cpu_ms_per_stored_window(self) -> float:
        return self.server_cpu_window * 1000 / self.stored_window if self.stored_window else float("nan")

    @property
    def cpu_ms_per_stored_total(self) -> float:
        return self.server_cpu_total * 1000 / self.stored_total if self.stored_total else float("nan")

    def pct(self, q: float) -> float:
        return pct(self.latencies_ms, q)

    def others_cpu_window(self, warmup: float) -> float:
        """CPU seconds in the window spent neither by the servers nor by the clients: other work on the machine."""
        clients = self.client_cpu * self.seconds / (warmup + self.seconds)
        return max(0.0, self.machine_cpu_window - self.server_cpu_window - clients)


def pct(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def machine_cpu_seconds() -> float:
    """CPU seconds the whole machine has been busy (all CPUs: user, nice, system, irq, softirq, steal)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def tree_cpu(roots: Sequence[int]) -> dict[int, float]:
    """User plus system CPU seconds, by pid, of the processes `roots` and their live descendants (each with the
    children it already reaped)."""
    parent: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while we looked
        pid = int(entry.name)
        parent[pid] = int(fields[1])
        # utime, stime, and cutime, cstime: the children this process already waited for
        times[pid] = (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / tick
    children: dict[int, list[int]] = {}
    for pid, ppid in parent.items():
        children.setdefault(ppid, []).append(pid)
    found: dict[int, float] = {}
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid in found or pid not in times:
            continue
        found[pid] = times[pid]
        todo.extend(children.get(pid, []))
    return found


def cpu_between(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two `tree_cpu` readings: a process that appeared in between counts whole."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


@dataclasses.dataclass(frozen=True)
class _Job:
    ports: tuple[int, ...]
    path: str
    pool: Pool
    connections: int
    first: int  # the global index of this process's first connection (for the round-robin over ports)
    seed: int  # new for every round: a round must not repeat an earlier round's event_ids (they are deduplicated)
    warmup: float
    seconds: float


_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # no name, no time, best compression


class _Fresh:
    """A pool body gzipped once (level 9, as sentry-sdk does) with every copy of its event id in a deflate block of
    its own, stored as is: a fresh id per post costs a CRC, not a compression, so the clients' CPU stays small beside
    the server's on a machine they share. Each compressed piece ends in a full flush (byte-aligned, no reference
    back across it), so any 32 bytes may stand in the stored blocks."""

    def __init__(self, body: bytes, event_id: str) -> None:
        self._parts = body.split(event_id.encode())
        deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        self._pieces = [deflate.compress(part) + deflate.flush(zlib.Z_FULL_FLUSH) for part in self._parts[:-1]]
        self._last = deflate.compress(self._parts[-1]) + deflate.flush()

    def body(self, fresh: bytes) -> bytes:
        stored = b"\x00" + struct.pack("<HH", len(fresh), 0xFFFF ^ len(fresh)) + fresh  # BFINAL=0, BTYPE=00
        raw = fresh.join(self._parts)
        out = [_GZIP_HEADER]
        for piece in self._pieces:
            out += (piece, stored)
        out += (self._last, struct.pack("<II", zlib.crc32(raw), len(raw) & 0xFFFFFFFF))
        return b"".join(out)


class _BadResponse(Exception):
    pass


_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)")


class _Connection:
    """A keep-alive HTTP/1.1 connection on a bare socket: post a body, read the whole response (Content-Length,
    chunked, or until close), return the status. http.client spent ~0.29 ms of the clients' CPU per request, a third
    of what the server under test spends, on a machine they share; this spends a few hundredths of that."""

    def __init__(self, port: int, path: str, headers: dict[str, str]) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", *(f"{k}: {v}" for k, v in headers.items())]
        self._head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode()
        self._buf = b""
        self.open = True

    def post(self, body: bytes) -> int:
        self._sock.sendall(b"%s%d\r\n\r\n%s" % (self._head, len(body), body))
        while True:
            while (end := self._buf.find(b"\r\n\r\n")) < 0:
                self._more()
            header, self._buf = self._buf[:end], self._buf[end + 4 :]
            if not header.startswith(b"HTTP/1.") or len(header) < 12 or not header[9:12].isdigit():
                raise _BadResponse(header[:40])
            status = int(header[9:12])
            if status >= 200:
                break  # a 1xx answer has no body; the real one follows
        fields = header.lower()
        if b"\r\nconnection: close" in fields:
            self.open = False
        if length := _CONTENT_LENGTH.search(fields):
            self._take(int(length[1]))
        elif b"\r\ntransfer-encoding: chunked" in fields:
            while True:
                while (end := self._buf.find(b"\r\n")) < 0:
                    self._more()
                size = int(self._buf[:end].split(b";")[0], 16)
                self._buf = self._buf[end + 2 :]
                self._take(size + 2)  # the chunk and its CRLF (the last, empty chunk: its CRLF ends the trailer)
                if not size:
                    break
        else:  # no length: the body ends with the connection
            try:
                while True:
                    self._more()
            except _BadResponse:
                self.open = False
        return status

    def _more(self) -> None:
        data = self._sock.recv(65536)
        if not data:
            raise _BadResponse("connection closed")
        self._buf += data

    def _take(self, n: int) -> None:
        while len(self._buf) < n:
            self._more()
        self._buf = self._buf[n:]

    def close(self) -> None:
        self._sock.close()


def _sender(job: _Job, index: int, t0: float, out: dict[str, Any], lock: threading.Lock) -> None:
    """One keep-alive connection posting fresh-id envelopes until the window closes."""
    rng = random.Random(f"{job.seed}:{index}")
    port = job.ports[index % len(job.ports)]
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
    templates = [_Fresh(body, event_id) for body, event_id in zip(job.pool.bodies, job.pool.event_ids, strict=True)]
    conn: _Connection | None = None
    while time.monotonic() < end:
        i = rng.randrange(len(job.pool.bodies))
        body = templates[i].body(rng.getrandbits(128).to_bytes(16, "big").hex().encode())
        sent = time.monotonic()
        try:
            conn = conn or _Connection(port, job.path, headers)
            status = str(conn.post(body))
            if not conn.open:
                conn.close()
                conn = None
        except (OSError, _BadResponse, ValueError) as exc:
            status = type(exc).__name__
            if conn is not None:
                conn.close()
            conn = None
        done = time.monotonic()
        statuses[status] += 1
        if status == "200":
            acked += 1
            if start <= done <= end:
                in_window += 1
                latencies.append(done - sent)
    if conn is not None:
        conn.close()
    with lock:
        out["latencies"].extend(latencies)
        out["statuses"].update(statuses)
        out["acked"] += acked
        out["in_window"] += in_window


def _client_process(job: _Job, ready: Any, go: Any, t0: Any, results: Any) -> None:
    """A client process: `job.connections` sender threads, started together at the shared t0."""
    out: dict[str, Any] = {"latencies": [], "statuses": Counter(), "acked": 0, "in_window": 0}
    lock = threading.Lock()
    ready.wait(timeout=60)
    if not go.wait(timeout=60):
        return
    cpu = time.process_time()
    threads = [
        threading.Thread(target=_sender, args=(job, job.first + n, t0.value, out, lock)) for n in range(job.connections)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out["cpu"] = time.process_time() - cpu
    out["statuses"] = dict(out["statuses"])
    results.put(out)


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def _wait_stored(stored: Callable[[], int], want: int, idle: float) -> int:
    """Poll the stored count until it reaches `want` or has not moved for `idle` seconds; the last count."""
    last, moved = stored(), time.monotonic()
    while last < want and time.monotonic() - moved < idle:
        time.sleep(0.25)
        now = stored()
        if now != last:
            last, moved = now, time.monotonic()
    return last


def drive(target: Target, load: Load) -> Round:
    """One round of load against a running target."""
    ctx = multiprocessing.get_context("spawn")
    split = load.split
    ready, go, t0, results = ctx.Barrier(len(split) + 1), ctx.Event(), ctx.Value("d", 0.0), ctx.Queue()
    ports, path = tuple(target.ports), target.envelope_path
    seed = random.SystemRandom().getrandbits(64)
    jobs = [
        _Job(ports, path, load.pool, n, sum(split[:p]), seed, load.warmup, load.seconds) for p, n in enumerate(split)
    ]
    workers = [ctx.Process(target=_client_process, args=(job, ready, go, t0, results)) for job in jobs]
    try:
        for worker in workers:
            worker.start()
        ready.wait(timeout=60)
        base = target.stored()
        cpu_start = tree_cpu(target.root_pids())
        t0.value = time.monotonic() + 0.05
        go.set()
        _sleep_until(t0.value + load.warmup)
        cpu_0, stored_0, machine_0 = tree_cpu(target.root_pids()), target.stored(), machine_cpu_seconds()
        _sleep_until(t0.value + load.warmup + load.seconds)
        cpu_1, stored_1, machine_1 = tree_cpu(target.root_pids()), target.stored(), machine_cpu_seconds()
        outs = [results.get(timeout=load.warmup + load.seconds + 120) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.terminate()
    acked = sum(o["acked"] for o in outs)
    stopped = time.monotonic()
    stored_end = _wait_stored(target.stored, base + acked, load.drain_idle)
    drained = time.monotonic() - stopped
    statuses: Counter[str] = Counter()
    for o in outs:
        statuses.update(o["statuses"])
    return Round(
        seconds=load.seconds,
        acked_in_window=sum(o["in_window"] for o in outs),
        acked_total=acked,
        statuses=dict(statuses),
        latencies_ms=sorted(x * 1000 for o in outs for x in o["latencies"]),
        client_cpu=sum(o["cpu"] for o in outs),
        server_cpu_window=cpu_between(cpu_0, cpu_1),
        stored_window=stored_1 - stored_0,
        server_cpu_total=cpu_between(cpu_start, tree_cpu(target.root_pids())),
        stored_total=stored_end - base,
        drain_seconds=drained,
        machine_cpu_window=machine_1 - machine_0,
    )
