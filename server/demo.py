"""`prodloop demo`: the whole product so far on one machine, with no account and no network.

It writes a small sample service (its own git repository and tests), starts prodloop's
HTTP ingest on 127.0.0.1, runs the service so that a real sentry-sdk reports a real crash,
then reads the result back through a real MCP client session, printing each step's time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import uvicorn
from mcp import Client
from rich.console import Console

from prodloop.server.context import AppContext
from prodloop.server.http_app import build_http_app
from prodloop.server.mcp_app import build_mcp
from prodloop.server.settings import load_settings

SAMPLE_FILES: dict[str, str] = {
    "shop/__init__.py": "",
    "shop/pricing.py": '''
        """Prices of a shopping cart."""

        PRICES = {"apple": 30, "pear": 45}


        def line_total(item):
            return PRICES[item["sku"]] * item["qty"]


        def cart_total(cart, coupon=None):
            total = sum(line_total(item) for item in cart["items"])
            if coupon:
                total -= total * coupon["percent"] // 100
            return total
    ''',
    "shop/app.py": '''
        """The service's entry point: prices an order and reports crashes to its DSN."""

        import sys

        import sentry_sdk

        from shop.pricing import cart_total


        def handle_order(order):
            return {"order": order["id"], "total": cart_total(order["cart"], order.get("coupon"))}


        if __name__ == "__main__":
            sentry_sdk.init(dsn=sys.argv[1], release="shop@1.0.0", environment="production")
            order = {"id": "o-1001", "cart": {"items": [{"sku": "apple", "qty": 2}, {"sku": "kiwi", "qty": 1}]}}
            try:
                handle_order(order)
            except KeyError:
                sentry_sdk.capture_exception()
            sentry_sdk.flush(timeout=10)
    ''',
    "tests/test_pricing.py": """
        from shop.pricing import cart_total


        def test_cart_total_sums_lines():
            assert cart_total({"items": [{"sku": "apple", "qty": 2}]}) == 60
    """,
}


def write_sample_service(root: Path) -> Path:
    """A git repository with a small shop service that has a real bug (an unknown SKU)."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, body in SAMPLE_FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(body).lstrip())
    git = ["git", "-c", "user.name=Demo", "-c", "user.email=demo@localhost", "-C", str(root)]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "shop 1.0.0"], check=True)
    subprocess.run([*git, "tag", "v1.0.0"], check=True)
    return root


@contextmanager
def serve_in_thread(ctx: AppContext, token: str) -> Iterator[int]:
    """prodloop's HTTP app under uvicorn on a free 127.0.0.1 port, for as long as the block runs."""
    config = uvicorn.Config(build_http_app(ctx, mcp_token=token), host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="prodloop-demo-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the demo HTTP server did not start")
        time.sleep(0.02)
    try:
        yield int(server.servers[0].sockets[0].getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def run_demo(console: Console, workdir: Path | None = None) -> dict[str, Any]:
    """Run the demo; returns what an agent would have seen (for tests and for printing)."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="prodloop-demo-") as tmp:
        root = workdir or Path(tmp)
        step = _stepper(console, started)
        repo = write_sample_service(root / "shop")
        step("sample service written", f"git repository at {repo}")
        ctx = AppContext.open(load_settings(repo=repo))
        try:
            project = ctx.store.create_project("shop")
            step("store ready", str(ctx.store.path))
            with serve_in_thread(ctx, token="demo-not-exposed") as port:  # noqa: S106 (loopback only)
                dsn = f"http://{project.public_key}@127.0.0.1:{port}/{project.id}"
                step("ingest listening", f"http://127.0.0.1:{port}/api/{project.id}/envelope/")
                done = subprocess.run(
                    [sys.executable, "-m", "shop.app", dsn], cwd=repo, capture_output=True, text=True, timeout=60
                )
                if done.returncode != 0:
                    raise RuntimeError(f"the sample service failed to run: {done.stderr[-500:]}")
                step("service crashed and reported", "sentry-sdk sent a KeyError to prodloop")
            seen = anyio.run(_agent_view, ctx)
            step("agent read the error over MCP", f"issue {seen['issue']['id']}: {seen['issue']['title']}")
            culprit = seen["code_path"]["culprit"]
            step(
                "agent mapped it to code",
                f"{culprit['location']['repo_path']}:{culprit['location']['lineno']} in {culprit['qualname']} "
                f"at {seen['code_path']['release']['commit'][:12]} ({seen['code_path']['release']['source']})",
            )
        finally:
            ctx.close()
    _print_result(console, seen)
    console.print(f"[bold]done in {time.perf_counter() - started:.1f} s[/bold]")
    return seen


async def _agent_view(ctx: AppContext) -> dict[str, Any]:
    async with Client(build_mcp(ctx)) as client:
        issues = (await client.call_tool("list_issues", {"order_by": "event_count"})).structured_content or {}
        issue = issues["issues"][0]
        context = await client.call_tool("fetch_error_context", {"issue_id": issue["id"], "frames_limit": 5})
        code_path = await client.call_tool("map_code_path", {"issue_id": issue["id"]})
    return {"issue": issue, "context": context.structured_content, "code_path": code_path.structured_content}


def _stepper(console: Console, started: float) -> Callable[[str, str], None]:
    def step(name: str, detail: str) -> None:
        console.print(f"[green]✓[/green] {time.perf_counter() - started:5.2f}s  {name}: {detail}", highlight=False)

    return step


def _print_result(console: Console, seen: dict[str, Any]) -> None:
    ctx = seen["context"]
    crash = ctx["frames"][-1]
    console.print("\n[bold]What the agent sees[/bold]")
    console.print(f"  {ctx['exceptions'][-1]['type']}: {ctx['exceptions'][-1]['value']}", markup=False)
    console.print(f"  at {crash['filename']}:{crash['lineno']} in {crash['function']}", markup=False)
    console.print(f"  > {(crash['context_line'] or '').strip()}", markup=False)
    console.print(f"  locals: {json.dumps(crash['vars'])[:200]}", markup=False)
    console.print(f"  release {ctx['release']}, {ctx['occurrences']['count']} event(s)", markup=False)
    attribution = seen["code_path"]["attribution"] or {}
    blame = attribution.get("crash_line") or {}
    if blame:
        console.print(f"  crash line last changed by {blame['author']}: {blame['summary']}", markup=False)
    for test in seen["code_path"]["related_tests"][:3]:
        console.print(f"  related tests: {test['path']} ({test['reason']})", markup=False)
