"""A real prodloop HTTP server whose store a real sentry-sdk filled through the ingest endpoint, and a real headless
Chromium (Debian's, at /usr/bin/chromium) driven by Playwright. A missing browser fails the tests: `.ci/run`
installs it."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from prodloop.server.context import AppContext
from prodloop.server.demo import serve_in_thread
from prodloop.server.settings import load_settings
from prodloop.server.store import ci, lineage, policy, receipts, signals
from prodloop.tools.observe.triage import triage_signals
from tests.conftest import MCP_TOKEN
from tests.sample_service import SampleService

CHROMIUM = Path(os.environ.get("PRODLOOP_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("PRODLOOP_ARTIFACTS", Path(__file__).parents[3] / ".artifacts")) / "dashboard"
PERSON = "Grace Operator"
XSS = "<script>alert('pwned')</script>"
EVIDENCE = ["first seen 20 min after deploy shop@<img src=x onerror=alert(2)>", "3 of 3 events in the new release"]
TEST = "tests/test_regressions.py::test_unknown_sku"
PR_URL = "https://github.com/acme/shop/pull/7"
SURVIVOR = "-    return PRICES[item['sku']] * item['qty']\n+    return PRICES[item['sku']] <b>* 1</b>\n"

# The sample service's own code, run under a real sentry-sdk that sends to the server's DSN: three users hit the
# unknown SKU, one the zero divisor, and one logs in with a name carrying a script tag.
_SERVICE = textwrap.dedent(
    """
    import sys
    import sentry_sdk

    sentry_sdk.init(dsn=sys.argv[1], release="shop@1.0.0", environment="production", in_app_include=["shop"])
    from shop.pricing import cart_total
    from shop.checkout import handle
    from shop.auth import login

    crashes = [
        ("u1", lambda: cart_total({"items": [{"sku": "kiwi", "qty": 1}]})),
        ("u2", lambda: cart_total({"items": [{"sku": "kiwi", "qty": 2}]})),
        ("u3", lambda: cart_total({"items": [{"sku": "kiwi", "qty": 3}]})),
        ("u1", lambda: handle({"cart": {"items": [{"sku": "apple", "qty": 1}]}, "coupon": {"divisor": 0}})),
        ("u4", lambda: login(sys.argv[2], "hunter2")),
    ]
    for user, crash in crashes:
        sentry_sdk.set_user({"id": user})
        try:
            crash()
        except Exception:
            sentry_sdk.capture_exception()
    sentry_sdk.flush(timeout=10)
    """
)


@dataclass
class Dashboard:
    ctx: AppContext
    base_url: str
    service: SampleService
    issues: dict[str, int] = field(default_factory=dict)  # by exception type
    cord_id: int = 0

    def url(self, path: str = "/") -> str:
        return f"{self.base_url}/dashboard{path}"


def _fill(ctx: AppContext, service: SampleService, port: int) -> Dashboard:
    project = ctx.store.create_project("shop")
    now = ctx.clock.now()
    deploy = ctx.store.record_deploy(release="shop@1.0.0", commit_sha=service.commit, environment="production",
                                     deployed_at=now - 1800)  # fmt: skip
    dsn = f"http://{project.public_key}@127.0.0.1:{port}/{project.id}"
    script = service.root.parent / "report.py"
    script.write_text(_SERVICE)
    subprocess.run([sys.executable, str(script), dsn, XSS], cwd=service.root, check=True, capture_output=True,
                   timeout=60, env={**os.environ, "PYTHONPATH": str(service.root)})  # fmt: skip
    dash = Dashboard(ctx=ctx, base_url=f"http://127.0.0.1:{port}", service=service)
    rows, _ = ctx.store.list_issues(project_id=None, status="unresolved", order="last_seen", limit=50, offset=0)
    dash.issues = {str(r.exception_type): r.id for r in rows}
    assert set(dash.issues) == {"KeyError", "ZeroDivisionError", "ValueError"}, dash.issues
    triage_signals(ctx.store, ctx.git(), ctx.settings, ctx.clock)
    # One issue as triage reports an attributed rise (too few real events here for a significant one); its evidence
    # quotes production text (a release name), hostile here.
    zero = signals.get(ctx.store, dash.issues["ZeroDivisionError"])
    assert zero is not None
    signals.save(ctx.store, dataclasses.replace(zero, classification="actionable", priority=zero.priority + 50,
                 report={"missing": [], "attribution": [{"cause": "deploy", "confidence": 0.8, "evidence": EVIDENCE}]},
                 ), {})  # fmt: skip
    cord = lineage.pull_cord(
        ctx.store, deploy_id=deploy, release="shop@1.0.0", environment="production", commit_sha=service.commit,
        previous_commit=None, paths=["shop/checkout.py"], evidence=[], blast_radius={}, at=now - 600,
    )  # fmt: skip
    assert cord is not None
    dash.cord_id = cord.id
    policy.mark_exhausted(ctx.store, dash.issues["ZeroDivisionError"], now - 300, "runs used up")
    _lineage(ctx, dash.issues["KeyError"], deploy, service.commit, now)
    policy.save_provenance(ctx.store, [{
        "test_node": "tests/test_old.py", "test_path": "tests/test_old.py", "action": "removed",
        "reasons": ["redundant with tests/test_pricing.py"],
    }], now - 200)  # fmt: skip
    test = "tests/test_pricing.py::test_line_total"
    for job, outcome in (("a", "passed"), ("a", "failed")):
        ci.save_run(ctx.store, commit=service.commit, branch="main", run_url=None, job=job, digest=outcome,
                    results=[ci.ResultIn(test, outcome, 0, 0.1, None)], at=now - 100)  # fmt: skip
    return dash


def _lineage(ctx: AppContext, issue: int, deploy: int, commit: str, now: float) -> None:
    """A fix's lineage as the loop records it: receipt (gates, mutation) -> PR -> merge -> deploy -> verdict."""
    mutation = receipts.MutationResult(
        receipt_id="r" * 64, scope="fix", functions=["shop/pricing.py::line_total"], not_executed=[], tests=[TEST],
        mutants=10, killed=9, survived=1, timeout=0, no_tests=0, suspicious=0, score=0.9, min_score=0.8, passed=True,
        survivors=[receipts.SurvivingMutant(path="shop/pricing.py", line=7, diff=SURVIVOR)], seconds=3.0, note="",
    )  # fmt: skip
    gates = (receipts.Gate(name="reproduces", passed=True, evidence="KeyError: 'kiwi'"),
             receipts.Gate(name="passes_with_fix", passed=True, evidence="1 passed"))  # fmt: skip
    receipts.save(ctx.store, receipts.Receipt(
        id="r" * 64, issue_id=issue, event_id="e" * 32, commit_sha=commit, test_path="tests/test_regressions.py",
        test_name="test_unknown_sku", test_code="", test_sha256="", fix_diff="", fix_sha256="", passed=True,
        gates=gates, cpu_seconds=1.0, created_at=now + 1200, mutation=mutation,
    ))  # fmt: skip
    # half an hour after the first event (the fixture's `now` is just before the SDK reports)
    slot, why = policy.reserve_pull_request(ctx.store, issue, "r" * 64, max_per_issue=3, max_per_day=10, now=now + 1800)
    assert slot is not None, why
    pr = policy.PullRequestRow(id=slot, issue_id=issue, receipt_id="r" * 64, branch="prodloop/fix-1",
                               commit_sha=commit, url=PR_URL, number=7, mode="github",
                               created_at=now + 1800)  # fmt: skip
    policy.complete_pull_request(ctx.store, pr, {"test_node": TEST, "test_path": "tests/test_regressions.py",
                                                 "issue_id": issue})  # fmt: skip
    lineage.record_merge(ctx.store, slot, merge_commit=commit, merged_at=now + 2400, how="github")
    lineage.record_deployed(ctx.store, slot, deploy_id=deploy)
    lineage.save_verdict(ctx.store, issue, slot, "watching", {}, now + 3000, max_no_effect=3)


@pytest.fixture(scope="module")
def dash(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """A served dashboard over a store a real sentry-sdk filled (module-scoped: one server per module)."""
    root = tmp_path_factory.mktemp("dash")
    service = SampleService(root / "shop")
    settings = load_settings(repo=service.root, data_dir=root / "data", triage={"mode": "approve"})
    ctx = AppContext.open(settings)
    try:
        with serve_in_thread(ctx, token=MCP_TOKEN) as port:
            yield _fill(ctx, service, port)
    finally:
        ctx.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium per module (Playwright's own download cannot work here: the system browser)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)", pytrace=False)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser, dash: Dashboard) -> Iterator[Page]:
    """A fresh browser context (no cookies), its dialogs recorded in `page.dialogs`."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.set_default_timeout(5000)
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.dialogs = dialogs  # type: ignore[attr-defined]
    try:
        yield page
    finally:
        context.close()


def login(page: Page, dash: Dashboard, *, token: str = MCP_TOKEN, person: str = PERSON) -> None:
    page.goto(dash.url("/login"))
    page.fill("input[name=person]", person)
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path
