"""The actions a person owns, in a real browser: each behind a confirmation, recorded with the session's person and
the reason given, and refused (403) without the session's CSRF token."""

from __future__ import annotations

from playwright.sync_api import Page

from prodloop.server.store import lineage, policy, signals
from prodloop.tools.budget import budget_status
from tests.conftest import MCP_TOKEN
from tests.server.dashboard.conftest import PERSON, Dashboard, login, screenshot


def _decision(dash: Dashboard, issue: int) -> str:
    row = signals.get(dash.ctx.store, issue)
    assert row is not None
    return row.decision


def test_approve_from_the_overview_records_who_and_why(page: Page, dash: Dashboard) -> None:
    issue = dash.issues["KeyError"]
    login(page, dash)
    page.click(f"#pending a[href='/dashboard/actions/approve/{issue}']")
    assert page.url == dash.url(f"/actions/approve/{issue}")
    assert _decision(dash, issue) == "pending"  # the confirmation page changes nothing
    screenshot(page, "confirm-approve")
    page.click("button:text('Confirm')")  # the reason is required: the browser keeps the form
    assert _decision(dash, issue) == "pending"
    page.fill("textarea[name=why]", "the <b>kiwi</b> SKU breaks checkout")
    page.click("button:text('Confirm')")
    assert page.text_content("#done") == f"Issue {issue} approved"
    assert _decision(dash, issue) == "approved"
    (decision,) = [d for d in signals.decisions(dash.ctx.store) if d.issue_id == issue]
    assert (decision.who, decision.why) == (PERSON, "the <b>kiwi</b> SKU breaks checkout")
    page.goto(dash.url(f"/issues/{issue}"))
    assert "approved by Grace Operator (the <b>kiwi</b> SKU breaks checkout" in (page.text_content("main") or "")


def test_reject_needs_a_reason_even_without_the_browser_check(page: Page, dash: Dashboard) -> None:
    issue = dash.issues["ValueError"]
    login(page, dash)
    page.goto(dash.url(f"/actions/reject/{issue}"))
    page.evaluate("document.querySelector('textarea[name=why]').removeAttribute('required')")
    page.click("button:text('Confirm')")
    assert page.text_content("#action-error") == "Write why: it is kept with the decision."
    assert _decision(dash, issue) == "pending"
    page.fill("textarea[name=why]", "a pen test, not a customer")
    page.click("button:text('Confirm')")
    assert _decision(dash, issue) == "rejected"


def test_release_an_andon_cord(page: Page, dash: Dashboard) -> None:
    login(page, dash)
    page.click(f"#cords a[href='/dashboard/actions/release/{dash.cord_id}']")
    assert lineage.cord(dash.ctx.store, dash.cord_id).active
    page.fill("textarea[name=why]", "the revert shipped")
    page.click("button:text('Confirm')")
    assert page.text_content("#done") == f"Andon cord {dash.cord_id} released"
    cord = lineage.cord(dash.ctx.store, dash.cord_id)
    assert not cord.active and (cord.released_by, cord.release_why) == (PERSON, "the revert shipped")
    page.click("a:text('Back')")
    assert page.text_content("#fig-cords b") == "0"


def test_reset_a_budget(page: Page, dash: Dashboard) -> None:
    issue = dash.issues["ZeroDivisionError"]
    assert budget_status(dash.ctx.store, dash.ctx.settings.budgets, issue).exhausted
    login(page, dash)
    page.click(f"#budgets a[href='/dashboard/actions/reset/{issue}']")
    page.fill("textarea[name=why]", "limits raised for this one")
    page.click("button:text('Confirm')")
    assert page.text_content("#done") == f"Budget of issue {issue} reset"
    assert not budget_status(dash.ctx.store, dash.ctx.settings.budgets, issue).exhausted
    (reset,) = lineage.resets(dash.ctx.store, issue)
    assert (reset["who"], reset["why"]) == (PERSON, "limits raised for this one")


def test_forms_without_the_session_csrf_token_are_refused(page: Page, dash: Dashboard) -> None:
    issue = dash.issues["ZeroDivisionError"]
    before = _decision(dash, issue)
    login(page, dash)
    for form in ({"why": "forged"}, {"why": "forged", "csrf": "not-the-token"}, {"why": "forged", "csrf": ""}):
        reply = page.request.post(dash.url(f"/actions/approve/{issue}"), form=form, max_redirects=0)
        assert reply.status == 403, form
        assert "CSRF token is missing or wrong" in reply.text()
    # a token from another person's session does not do either
    other = page.context.browser.new_context()  # type: ignore[union-attr]
    other_page = other.new_page()
    login(other_page, dash, person="Mallory")
    other_page.goto(dash.url(f"/actions/approve/{issue}"))
    stolen = other_page.get_attribute("input[name=csrf]", "value")
    other.close()
    page.goto(dash.url(f"/actions/approve/{issue}"))
    page.evaluate(f"document.querySelector('input[name=csrf]').value = {stolen!r}")
    page.fill("textarea[name=why]", "forged")
    page.click("button:text('Confirm')")
    assert page.text_content("#message") == (
        "The form's CSRF token is missing or wrong: open the action again from the dashboard."
    )
    assert _decision(dash, issue) == before
    assert not [d for d in signals.decisions(dash.ctx.store) if d.issue_id == issue]
    screenshot(page, "csrf-refused")


def test_an_unknown_target_is_a_clear_error(page: Page, dash: Dashboard) -> None:
    login(page, dash)
    page.goto(dash.url("/actions/approve/999"))
    page.fill("textarea[name=why]", "no such issue")
    page.click("button:text('Confirm')")
    assert "999" in (page.text_content("#action-error") or "")
    assert len(policy.escalations(dash.ctx.store)) >= 1  # the store is still fine


def test_logout_ends_the_session(page: Page, dash: Dashboard) -> None:
    login(page, dash)
    (cookie,) = page.context.cookies()
    page.click("header button:text('Log out')")
    assert page.url == dash.url("/login")
    assert page.context.cookies() == []
    page.context.add_cookies([cookie])  # the old session id, replayed
    page.goto(dash.url("/"))
    assert page.url == dash.url("/login")
    assert MCP_TOKEN not in page.content()
