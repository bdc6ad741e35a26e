"""The dashboard's pages in a real browser: access, figures, links, charts, escaping, screenshots."""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request

from playwright.sync_api import Page

from prodloop.server.store import signals
from prodloop.tools.observe.metrics import metrics
from tests.conftest import MCP_TOKEN
from tests.server.dashboard.conftest import EVIDENCE, PERSON, PR_URL, SURVIVOR, XSS, Dashboard, login, screenshot


def test_nothing_is_reachable_without_a_session(page: Page, dash: Dashboard) -> None:
    for path in ("/", "/issues/1", "/map", "/map?path=shop", "/suite", "/actions/approve/1"):
        page.goto(dash.url(path))
        assert page.url == dash.url("/login"), path
    reply = page.request.post(dash.url("/actions/approve/1"), form={"why": "x"}, max_redirects=0)
    assert reply.status == 303 and reply.headers["location"] == "/dashboard/login"


def test_a_wrong_token_is_refused(page: Page, dash: Dashboard) -> None:
    login(page, dash, token=MCP_TOKEN[:-1] + "x")
    assert page.url == dash.url("/login")
    assert page.text_content("#login-error") == "Wrong token."
    assert page.context.cookies() == []
    page.goto(dash.url("/"))
    assert page.url == dash.url("/login")


def test_login_sets_a_strict_http_only_session_cookie(page: Page, dash: Dashboard) -> None:
    login(page, dash)
    assert page.url == dash.url("/")
    (cookie,) = page.context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/dashboard"
    assert not cookie["secure"]  # plain http on 127.0.0.1; https sets it
    assert MCP_TOKEN not in cookie["value"]
    assert page.text_content("header .who") == PERSON
    screenshot(page, "overview")


def test_the_cookie_is_secure_behind_https(dash: Dashboard) -> None:
    """Behind a TLS proxy on loopback (uvicorn trusts its X-Forwarded-Proto), the cookie is marked Secure."""
    form = urllib.parse.urlencode({"person": PERSON, "token": MCP_TOKEN}).encode()
    request = urllib.request.Request(dash.url("/login"), data=form, headers={"X-Forwarded-Proto": "https"})

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    try:
        urllib.request.build_opener(NoRedirect).open(request, timeout=10)
        raise AssertionError("no redirect")
    except urllib.error.HTTPError as reply:
        status, cookie = reply.code, reply.headers["set-cookie"]
        reply.close()
    assert status == 303
    assert {"HttpOnly", "Secure", "Path=/dashboard", "SameSite=strict"} <= {p.strip() for p in cookie.split(";")}


def test_a_name_is_required(page: Page, dash: Dashboard) -> None:
    page.goto(dash.url("/login"))
    page.evaluate("document.querySelector('input[name=person]').removeAttribute('required')")
    page.fill("input[name=token]", MCP_TOKEN)
    page.click("button[type=submit]")
    assert page.text_content("#login-error") == "Give your name: actions are recorded with it."
    assert page.context.cookies() == []


def test_overview_shows_the_store_figures(page: Page, dash: Dashboard) -> None:
    login(page, dash)
    assert page.text_content("#fig-open b") == "3"
    pending = [s for s in signals.all_signals(dash.ctx.store) if s.decision == "pending"]
    actionable = sum(s.classification == "actionable" for s in pending)
    assert page.text_content("#fig-actionable b") == str(actionable)
    assert page.text_content("#fig-observations b") == str(len(pending) - actionable)
    assert page.text_content("#fig-cords b") == "1"
    assert page.text_content("#fig-escalations b") == "2"  # the cord's and the exhausted budget's
    assert page.locator("#issues tr").count() == 4  # a header and the three issues
    assert page.locator("#issues svg.spark").count() == 3
    assert "shop/checkout.py" in (page.text_content("#quarantined") or "")
    assert page.locator("#budgets tr").count() == 2
    assert page.text_content("#fig-awaiting b") == "1"
    awaiting = page.locator("#awaiting tr").nth(1).locator("td").all_text_contents()
    assert awaiting[1:] == [PR_URL, awaiting[2], "yes", "watching"] and awaiting[2].endswith(" UTC")
    # the sparkline of the unknown-SKU issue rises to its 3 events in the current hour
    row = page.locator("#issues tr", has_text=f"#{dash.issues['KeyError']} ")
    assert row.locator("td").nth(3).text_content() == "3"
    points = row.locator("polyline").get_attribute("points") or ""
    assert points.split()[-1].endswith(",2.0")  # the top of the chart


def test_issue_page_from_the_overview_link(page: Page, dash: Dashboard) -> None:
    login(page, dash)
    issue = dash.issues["KeyError"]
    page.click(f"#issues a[href='/dashboard/issues/{issue}']")
    assert page.url == dash.url(f"/issues/{issue}")
    assert page.text_content("#fig-events b") == "3"
    assert page.text_content("#fig-users b") == "3"
    assert page.locator("svg.chart .marker", has_text="shop@1.0.0").count() == 1  # the deploy
    assert re.search(r"Onset \S+: [\d.]+ events/h after, baseline [\d.]+ events/h", page.text_content("#onset") or "")
    frames = page.text_content("#frames") or ""
    assert "shop/pricing.py" in frames and "line_total" in frames
    assert "KeyError" in (page.text_content(".exception") or "")
    cells = page.locator("#lineage tr").nth(1).locator("td")
    assert "test_unknown_sku" in (cells.nth(0).text_content() or "")
    assert cells.nth(1).locator("li").all_text_contents() == ["✔ reproduces", "✔ passes_with_fix"]
    assert (cells.nth(2).text_content() or "").startswith("90% (9/10)")
    assert cells.nth(2).locator("pre").text_content() == SURVIVOR  # the survivor's diff, as text
    assert cells.nth(2).locator("b").count() == 0
    assert PR_URL in (cells.nth(3).text_content() or "") and "merged" in (cells.nth(3).text_content() or "")
    assert cells.nth(4).text_content() == "shop@1.0.0"
    assert cells.nth(5).text_content() == "watching"
    screenshot(page, "issue")


def test_script_in_an_event_shows_as_text(page: Page, dash: Dashboard) -> None:
    login(page, dash)
    page.goto(dash.url(f"/issues/{dash.issues['ValueError']}"))
    assert XSS in (page.text_content(".exc-value") or "")
    assert XSS in (page.text_content("#issue-title") or "")
    assert page.evaluate("document.querySelectorAll('script').length") == 0
    assert page.evaluate("document.querySelectorAll('main script, main img, main iframe').length") == 0
    page.goto(dash.url("/"))
    assert XSS in (page.text_content("#issues") or "")
    assert page.dialogs == []  # type: ignore[attr-defined]
    screenshot(page, "issue-with-script")


def test_issue_page_shows_attribution_with_its_evidence(page: Page, dash: Dashboard) -> None:
    login(page, dash)
    page.click(f"#pending a[href='/dashboard/issues/{dash.issues['ZeroDivisionError']}']")
    assert page.text_content("#fig-triage b") == "actionable"
    row = page.locator("#attribution tr").nth(1).locator("td")
    assert row.nth(0).text_content() == "deploy" and row.nth(1).text_content() == "80%"
    assert row.nth(2).locator("li").all_text_contents() == EVIDENCE
    assert page.locator("main img").count() == 0 and page.dialogs == []  # type: ignore[attr-defined]


def test_reliability_map_drills_down_to_a_function(page: Page, dash: Dashboard) -> None:
    login(page, dash)
    page.click("header a:text('Reliability map')")
    shop = page.locator("#map a[data-path='shop']")
    assert shop.get_attribute("data-events") == "5"
    screenshot(page, "map")
    shop.click()
    assert page.url == dash.url("/map?path=shop")
    pricing = page.locator("#map a[data-path='shop/pricing.py']")
    assert pricing.get_attribute("data-events") == "3"
    assert page.locator("#map a[data-path='shop/loyalty.py']").get_attribute("data-events") == "0"
    assert "heat4" in (pricing.get_attribute("class") or "")
    assert pricing.get_attribute("data-tier") == "2"  # 3 of the 5 events: over the 25% share
    assert page.locator("#map a[data-path='shop/loyalty.py']").get_attribute("data-tier") == "1"
    assert "3 events, 1 issues, 3 users" in (pricing.text_content() or "")
    assert page.locator("svg.chart").count() == 1
    pricing.click()
    assert page.url == dash.url("/map?path=shop/pricing.py")
    assert page.text_content("#fig-path-events b") == "3"
    assert re.fullmatch(r"tier [12]", page.text_content("#fig-tier b") or "")
    function = page.locator("#map a[data-path='shop/pricing.py::line_total']")
    assert function.get_attribute("data-events") == "3"
    assert page.locator("#map a[data-path='shop/pricing.py::_audit']").get_attribute("data-events") == "0"
    screenshot(page, "map-file")
    function.click()
    assert page.text_content("#fig-path-events b") == "3"
    assert page.locator("#path-issues a", has_text="KeyError").count() + page.locator("#path-issues tr").count() >= 2
    page.click("#crumbs a:text('shop')")
    assert page.url == dash.url("/map?path=shop")


def test_suite_page_shows_changes_latency_and_flaky_tests(page: Page, dash: Dashboard) -> None:
    login(page, dash)
    page.click("header a:text('Test suite')")
    assert page.text_content("#fig-changes b") == "2"
    added, removed = (page.locator("#suite-log tr").nth(i).locator("td").all_text_contents() for i in (1, 2))
    assert added[1:] == ["added", "tests/test_regressions.py::test_unknown_sku", f"#{dash.issues['KeyError']}",
                         f"regression test of production issue {dash.issues['KeyError']}", PR_URL]  # fmt: skip
    assert removed[1:] == ["removed", "tests/test_old.py", "", "redundant with tests/test_pricing.py", ""]
    latency = metrics(dash.ctx.store).production_to_test
    assert latency.count == 1 and latency.p50_hours is not None and 0.5 <= latency.p50_hours <= 0.7
    assert page.text_content("#fig-latency b") == f"{60 * latency.p50_hours:.0f} min"
    bars = page.locator("#latency text").all_text_contents()  # label, value, label, value, ...
    assert list(zip(bars[::2], bars[1::2], strict=True)) == [
        ("under 1 hour", "1"), ("1 to 4 hours", "0"), ("4 to 24 hours", "0"), ("1 to 7 days", "0"), ("over 7 days", "0")
    ]  # fmt: skip
    assert page.text_content("#fig-flaky b") == "1"
    assert "tests/test_pricing.py::test_line_total" in (page.text_content("#flaky") or "")
    page.click(f"#suite-log a[href='/dashboard/issues/{dash.issues['KeyError']}']")
    assert page.url == dash.url(f"/issues/{dash.issues['KeyError']}")
    page.go_back()
    screenshot(page, "suite")


def test_unknown_things_are_clear_errors(page: Page, dash: Dashboard) -> None:
    login(page, dash)
    reply = page.goto(dash.url("/issues/999"))
    assert reply is not None and reply.status == 404 and "999" in (page.text_content("#message") or "")
    for path in ("../etc", "nowhere", "shop/pricing.py::no such"):
        reply = page.goto(dash.url(f"/map?path={urllib.parse.quote(path)}"))
        assert reply is not None and reply.status in (400, 404), path
        assert page.locator("#message").count() == 1, path
    reply = page.goto(dash.url("/actions/delete-everything/1"))
    assert reply is not None and reply.status == 404
