"""`prodloop demo`: the whole loop on one machine, with no account and no network.

It writes a small sample service (its own git repository, its own tests, a bare repository
as its `origin`), starts prodloop's HTTP ingest on 127.0.0.1, runs the service so that a real
sentry-sdk reports a real crash, reads the error through a real MCP client session, and then
runs the headless loop: a regression test synthesized from the production inputs, the fix a
scripted agent writes into the working tree (the one step that needs a person or a model),
every gate, mutation testing, and the PR branch pushed to the local remote.
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
from rich.table import Table
from starlette.types import ASGIApp

from prodloop.server.clock import new_token
from prodloop.server.context import AppContext
from prodloop.server.http_app import build_http_app
from prodloop.server.mcp_app import build_mcp
from prodloop.server.settings import load_settings
from prodloop.server.store import signals
from prodloop.tools.engine.git_repo import run_git
from prodloop.tools.loop import run_loop
from prodloop.tools.observe.triage import triage_signals

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
    who = ("-c", "user.name=Demo", "-c", "user.email=demo@localhost")
    remote = root.parent / "origin.git"
    for cwd, args in (
        (root, ("init", "-q", "-b", "main")), (root, ("add", ".")), (root, (*who, "commit", "-q", "-m", "shop 1.0.0")),
        (root, (*who, "tag", "v1.0.0")), (root.parent, ("init", "-q", "--bare", "-b", "main", str(remote))),
        (root, ("remote", "add", "origin", str(remote))), (root, ("push", "-q", "origin", "main", "v1.0.0")),
    ):  # fmt: skip
        done = run_git(cwd, *args)
        if done.returncode != 0:
            raise RuntimeError(f"git {args[0]} failed while writing the sample service: {done.stderr[-300:]}")
    return root


def write_scripted_fix(repo: Path) -> None:
    """What an agent would do after reading the synthesized test: price unknown SKUs at 0."""
    pricing = repo / "shop" / "pricing.py"
    pricing.write_text(pricing.read_text().replace('PRICES[item["sku"]]', 'PRICES.get(item["sku"], 0)'))


@contextmanager
def serve_in_thread(ctx: AppContext, token: str) -> Iterator[int]:
    """prodloop's HTTP app under uvicorn on a free 127.0.0.1 port, for as long as the block runs."""
    with serve_app_in_thread(build_http_app(ctx, mcp_token=token)) as port:
        yield port


@contextmanager
def serve_app_in_thread(app: ASGIApp) -> Iterator[int]:
    """An ASGI app under uvicorn on a free 127.0.0.1 port, for as long as the block runs."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, name="prodloop-demo-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the HTTP server did not start")
        time.sleep(0.02)
    try:
        yield int(server.servers[0].sockets[0].getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def run_demo(
    console: Console, workdir: Path | None = None, *, keep: Callable[[str, str], None] | None = None
) -> dict[str, Any]:
    """Run the demo; returns what it saw (for tests and for printing). With `keep`, the demo's store is then served
    on 127.0.0.1 under a fresh token, the dashboard's URL printed last, while `keep(url, token)` runs."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="prodloop-demo-") as tmp:
        root = workdir or Path(tmp)
        step = _stepper(console, started)
        repo = write_sample_service(root / "shop")
        step("sample service written", f"git repository at {repo}, origin {root / 'origin.git'}")
        # The default triage mode: agent work on an issue waits for a person's approval, which the demo gives.
        ctx = AppContext.open(load_settings(repo=repo, data_dir=root / "prodloop-data", triage={"mode": "approve"}))
        try:
            project = ctx.store.create_project("shop")
            with serve_in_thread(ctx, token="demo-not-exposed") as port:  # noqa: S106 (loopback only)
                dsn = f"http://{project.public_key}@127.0.0.1:{port}/{project.id}"
                step("ingest listening", f"http://127.0.0.1:{port}/api/{project.id}/envelope/")
                done = subprocess.run(
                    [sys.executable, "-m", "shop.app", dsn], cwd=repo, capture_output=True, text=True, timeout=60
                )
                if done.returncode != 0:
                    raise RuntimeError(f"the sample service failed to run: {done.stderr[-500:]}")
                crashed = time.perf_counter()
                step("service crashed and reported", "a real sentry-sdk sent the KeyError to prodloop's ingest")
            seen = anyio.run(_agent_view, ctx)
            step("agent read the error over MCP", f"issue {seen['issue']['id']}: {seen['issue']['title']}")
            culprit = seen["code_path"]["culprit"]
            step(
                "agent mapped it to code",
                f"{culprit['location']['repo_path']}:{culprit['location']['lineno']} in {culprit['qualname']} "
                f"at {seen['code_path']['release']['commit'][:12]} ({seen['code_path']['release']['source']})",
            )
            issue_id = seen["issue"]["id"]
            (signal,) = triage_signals(ctx.store, ctx.git(), ctx.settings, ctx.clock, issue_id=issue_id).signals
            signals.decide(ctx.store, issue_id, "approved", who="demo operator", why="the demo's own crash",
                           at=ctx.clock.now())  # fmt: skip
            step("operator approved it in triage", f"triage said {signal.classification}; agent work is cleared")
            write_scripted_fix(repo)
            step("scripted agent wrote the fix", "shop/pricing.py: unknown SKUs are priced 0")
            report = run_loop(
                *ctx.collaborators(), issue_id=seen["issue"]["id"], client="prodloop demo",
                on_step=lambda s: step(f"loop: {s.name}", s.detail if s.ok else f"FAILED: {s.detail}"),
            )  # fmt: skip
            seen["loop"] = report.model_dump()
            seen["kept"] = workdir is not None
            seen["crash_to_pr_seconds"] = time.perf_counter() - crashed
            _print_result(console, seen)
            total = time.perf_counter() - started
            console.print(
                f"[bold]{report.outcome}[/bold]: crash to PR in {seen['crash_to_pr_seconds']:.1f} s, "
                f"{total:.1f} s in all",
                highlight=False,
            )
            if keep is not None:
                token = new_token()
                with serve_in_thread(ctx, token=token) as port:
                    url = f"http://127.0.0.1:{port}/dashboard/"
                    seen["dashboard"] = url
                    console.print(f"\n[bold]Dashboard[/bold] {url}  (log in with the token {token})", highlight=False,
                                  soft_wrap=True)  # fmt: skip
                    keep(url, token)
        finally:
            ctx.close()
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
    console.print("\n[bold]What the agent saw[/bold]")
    console.print(f"  {ctx['exceptions'][-1]['type']}: {ctx['exceptions'][-1]['value']}", markup=False)
    console.print(f"  at {crash['filename']}:{crash['lineno']} in {crash['function']}", markup=False)
    console.print(f"  > {(crash['context_line'] or '').strip()}", markup=False)
    console.print(f"  locals: {json.dumps(crash['vars'])[:200]}", markup=False)
    blame = (seen["code_path"]["attribution"] or {}).get("crash_line") or {}
    if blame:
        console.print(f"  crash line last changed by {blame['author']}: {blame['summary']}", markup=False)
    loop = seen["loop"]
    if loop["test_code"]:
        console.print("\n[bold]Synthesized regression test[/bold]")
        console.print(loop["test_code"], markup=False, highlight=False)
    if loop["gates"]:
        table = Table("gate", "result", "evidence", title="Gates")
        for g in loop["gates"]:
            table.add_row(g["name"], "pass" if g["passed"] else "FAIL", str(g["evidence"])[:90])
        console.print(table)
    if loop["mutation_score"] is not None:
        console.print(f"mutation score {loop['mutation_score']}", highlight=False)
    pr = loop["pull_request"]
    if pr:
        console.print(f"PR branch {pr['branch']} pushed to {pr['remote']} ({pr['commit'][:12]})", highlight=False)
        if seen.get("kept"):
            console.print(f"description: {pr['description_path']}", markup=False, highlight=False)
        else:
            console.print("(the demo's files are gone; `prodloop demo --workdir DIR` keeps them)", markup=False)
    elif loop["needed"]:
        console.print(f"needs: {loop['needed']}", markup=False)
