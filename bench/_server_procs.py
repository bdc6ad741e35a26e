"""Starting and stopping the servers a bench measures: a free port, waiting until one answers, stopping it."""

from __future__ import annotations

import contextlib
import http.client
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(port: int, path: str, proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    """Poll GET `path` until it answers 200; the log's tail (lines naming a token left out) if the process dies."""
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            lines = log.read_text(errors="replace").splitlines()
            safe = "\n".join(line for line in lines if "token" not in line.lower())
            raise RuntimeError(f"{what} did not come up:\n{safe[-2000:]}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                conn.close()
                return
        time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGINT) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
