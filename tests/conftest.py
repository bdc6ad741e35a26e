"""Shared fixture factories: stores in real SQLite files, a real HTTP server on 127.0.0.1,
and real sentry-sdk events and envelopes."""

from __future__ import annotations

import contextlib
import gzip
import io
import itertools
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from prodloop.server.clock import FixedClock
from prodloop.server.context import AppContext
from prodloop.server.demo import serve_in_thread
from prodloop.server.ingest.importer import import_events
from prodloop.server.settings import load_settings
from prodloop.server.store import Project
from tests import pg
from tests.sample_service import SampleService

# Triage's gate (a person approves agent work on an issue) is tested by tests/tools/observe/test_triage.py, the
# demo and the canary run, which set their mode; the other stages' tests run with it off, as an operator may.
os.environ.setdefault("PRODLOOP_TRIAGE__MODE", "off")

MCP_TOKEN = "test-token-0123456789abcdef"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def engine() -> str:
    """The store's engine: SQLite (or what PRODLOOP_TEST_ENGINE says: `postgres` runs every test that opens a
    store on PostgreSQL), unless a folder's conftest runs its tests on both (`tests/pg.py`)."""
    return os.environ.get("PRODLOOP_TEST_ENGINE", "sqlite")


@pytest.fixture
def databases(engine: str) -> Iterator[Callable[[str], str | None]]:
    """Per name, the store a context of that name opens: None for SQLite (a file in the repo folder of that name),
    else a fresh PostgreSQL database made on first use and dropped after the test (contexts of one name share it,
    as a repository's processes do; other names get their own, as other repositories' SQLite files are)."""
    made: dict[str, str] = {}

    def database(name: str) -> str | None:
        if engine == "sqlite":
            return None
        if name not in made:
            made[name] = pg.create_database()
        return made[name]

    yield database
    for url in made.values():
        pg.drop_database(url)


@pytest.fixture
def make_ctx(tmp_path: Path, databases: Callable[[str], str | None]) -> Iterator[Callable[..., AppContext]]:
    """Factory: an AppContext over a real store (a SQLite file in a fresh repo folder, or PostgreSQL: see
    `databases`)."""
    opened: list[AppContext] = []

    def factory(*, clock: Any = None, name: str = "svc", **settings: Any) -> AppContext:
        repo = tmp_path / name
        repo.mkdir(exist_ok=True)
        url = databases(name)
        if url is not None:
            settings.setdefault("database_url", url)
        ctx = AppContext.open(load_settings(repo=repo, **settings), clock=clock)
        opened.append(ctx)
        return ctx

    yield factory
    for ctx in opened:
        ctx.close()


@pytest.fixture
def ctx(make_ctx: Callable[..., AppContext]) -> AppContext:
    return make_ctx()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> SampleService:
    """The sample service's repository, shared by a module's tests (they never change it)."""
    return SampleService(tmp_path_factory.mktemp("sample") / "shop")


@pytest.fixture
def service_ctx(service: SampleService, tmp_path: Path) -> Iterator[Callable[..., AppContext]]:
    """Factory: a store beside the sample service holding the real event of one of its crashes."""
    opened: list[AppContext] = []
    counter = itertools.count()

    def factory(crash: str | None = "unknown_sku", **settings: Any) -> AppContext:
        data_dir = tmp_path / f"data{next(counter)}"
        ctx = AppContext.open(load_settings(repo=service.root, data_dir=data_dir, **settings))
        opened.append(ctx)
        if crash is not None:
            import_events(ctx, ctx.store.create_project("shop"), [("e", service.event(crash))], source="test")
        return ctx

    yield factory
    for ctx in opened:
        ctx.close()


@dataclass
class LiveServer:
    ctx: AppContext
    project: Project
    base_url: str
    port: int

    @property
    def dsn(self) -> str:
        return f"http://{self.project.public_key}@127.0.0.1:{self.port}/{self.project.id}"

    def envelope_url(self, project_id: int | None = None) -> str:
        return f"{self.base_url}/api/{project_id or self.project.id}/envelope/"


@pytest.fixture
def live_server(make_ctx: Callable[..., AppContext]) -> Iterator[Callable[..., LiveServer]]:
    """Factory: prodloop's HTTP app under a real uvicorn on a free 127.0.0.1 port."""
    with contextlib.ExitStack() as running:

        def factory(**settings: Any) -> LiveServer:
            ctx = make_ctx(**settings)
            project = ctx.store.create_project("svc")
            port = running.enter_context(serve_in_thread(ctx, token=MCP_TOKEN))
            return LiveServer(ctx=ctx, project=project, base_url=f"http://127.0.0.1:{port}", port=port)

        yield factory


def make_event(**overrides: Any) -> dict[str, Any]:
    """A minimal event in sentry-sdk's shape, for tests that need exact control."""
    event: dict[str, Any] = {
        "event_id": uuid.uuid4().hex,
        "platform": "python",
        "timestamp": time.time(),
        "level": "error",
        "release": "svc@1.0.0",
        "environment": "production",
        "exception": {
            "values": [
                {
                    "type": "KeyError",
                    "value": "'sku'",
                    "mechanism": {"type": "generic", "handled": True},
                    "stacktrace": {
                        "frames": [
                            {
                                "filename": "shop/app.py",
                                "abs_path": "/app/shop/app.py",
                                "module": "shop.app",
                                "function": "checkout",
                                "lineno": 40,
                                "context_line": "    total = price_of(cart)",
                                "in_app": True,
                            },
                            {
                                "filename": "shop/pricing.py",
                                "abs_path": "/app/shop/pricing.py",
                                "module": "shop.pricing",
                                "function": "price_of",
                                "lineno": 12,
                                "pre_context": ["def price_of(cart):", "    total = 0"],
                                "context_line": "    return PRICES[cart['sku']]",
                                "post_context": [""],
                                "in_app": True,
                                "vars": {"cart": {"qty": "2"}},
                            },
                        ]
                    },
                }
            ]
        },
    }
    event.update(overrides)
    return event


def envelope_bytes(*events: dict[str, Any], dsn: str | None = None, extra_items: list[tuple[str, bytes]] = ()) -> bytes:  # type: ignore[assignment]
    header: dict[str, Any] = {"event_id": events[0]["event_id"] if events else uuid.uuid4().hex}
    if dsn:
        header["dsn"] = dsn
    out = io.BytesIO()
    out.write(json.dumps(header).encode() + b"\n")
    for event in events:
        payload = json.dumps(event).encode()
        out.write(json.dumps({"type": "event", "length": len(payload)}).encode() + b"\n" + payload + b"\n")
    for item_type, payload in extra_items:
        out.write(json.dumps({"type": item_type, "length": len(payload)}).encode() + b"\n" + payload + b"\n")
    return out.getvalue()


def auth_header(key: str) -> dict[str, str]:
    return {"X-Sentry-Auth": f"Sentry sentry_key={key}, sentry_version=7, sentry_client=tests/1.0"}


def gz(data: bytes) -> bytes:
    return gzip.compress(data)


@pytest.fixture
def fixed_clock() -> FixedClock:
    return FixedClock(at=1_790_000_000.0)


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> Reply:
    """A real HTTP POST; error statuses are returned, not raised."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            status, raw, hdrs = resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        status, raw, hdrs = exc.code, exc.read(), dict(exc.headers)
        exc.close()
    return Reply(status=status, body=json.loads(raw) if raw else {}, headers={k.lower(): v for k, v in hdrs.items()})
