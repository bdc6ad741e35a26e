"""Edges of the HTTP server: Host checks beyond loopback, stalled bodies, clients that leave mid-body."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable

import pytest

from prodloop.server.errors import ConfigError
from prodloop.server.http_app import allowed_hosts
from prodloop.server.settings import load_settings
from tests.conftest import LiveServer


def _raw(port: int, request: bytes, *, wait: float = 5.0, close_early: bool = False) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(request)
        if close_early:
            return b""
        chunks = []
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)


def _get(port: int, path: str, host: str) -> bytes:
    return _raw(port, f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())


def test_a_server_bound_beyond_loopback_needs_allowed_hosts_and_answers_only_them(
    live_server: Callable[..., LiveServer],
) -> None:
    wide = load_settings(host="0.0.0.0", allowed_hosts=[])  # noqa: S104 (the case under test)
    with pytest.raises(ConfigError, match=r"allowed_hosts.*beyond loopback"):
        allowed_hosts(wide)
    assert allowed_hosts(load_settings(host="0.0.0.0", allowed_hosts=["prodloop.internal"])) == [  # noqa: S104
        "prodloop.internal:*"
    ]
    server = live_server(host="10.0.0.5", allowed_hosts=["prodloop.internal:8765", "ingest.internal"])
    assert b"200 OK" in _get(server.port, "/healthz", "prodloop.internal:8765")
    assert b"200 OK" in _get(server.port, "/healthz", "ingest.internal:443")
    assert b"200 OK" in _get(server.port, "/healthz", "INGEST.internal")  # behind a proxy: no port, any case
    for path in ("/healthz", "/mcp", f"/api/{server.project.id}/envelope/"):
        answer = _get(server.port, path, f"127.0.0.1:{server.port}")  # not a name this server answers to
        assert answer.startswith(b"HTTP/1.1 421"), (path, answer[:80])


def test_a_loopback_server_answers_only_loopback_names(live_server: Callable[..., LiveServer]) -> None:
    loopback = live_server()
    assert b"200 OK" in _get(loopback.port, "/healthz", f"localhost:{loopback.port}")
    assert _get(loopback.port, "/healthz", "attacker.example").startswith(b"HTTP/1.1 421")  # DNS rebinding


def test_a_stalled_body_gets_408_and_a_client_that_leaves_gets_one_log_line(
    live_server: Callable[..., LiveServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = live_server(body_timeout_seconds=1.0)
    head = (
        f"POST /api/{server.project.id}/envelope/ HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Content-Type: application/x-sentry-envelope\r\nContent-Length: 5000\r\n\r\n"
    ).encode()
    started = time.monotonic()
    answer = _raw(server.port, head + b'{"event_id":', wait=10)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:120]
    assert b"stalled" in answer and time.monotonic() - started < 8
    with caplog.at_level(logging.INFO, logger="prodloop.server"):
        _raw(server.port, head + b'{"event_id":', close_early=True)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any("disconnected" in r.getMessage() for r in caplog.records):
            time.sleep(0.05)
    gone = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert len(gone) == 1 and gone[0].exc_info is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert server.ctx.store.list_issues()[1] == 0


def test_host_patterns_match_names_and_ports_literally() -> None:
    from prodloop.server.http_app import host_allowed

    loopback = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
    assert host_allowed("[::1]:8765", loopback) and host_allowed("LOCALHOST:8765", loopback)
    assert not host_allowed("1:8765", loopback) and not host_allowed("::x", loopback)
    assert not host_allowed("localhost.attacker.example:80", loopback)
    assert not host_allowed("localhost:80@evil", loopback)
    assert host_allowed("prodloop.internal", ["prodloop.internal:*"])
    assert not host_allowed("prodloop.internal:9999", ["prodloop.internal:8765"])
