"""Sentry as a trigger: a signed issue-alert webhook through a real server makes prodloop pull the issue over the
(fake) Sentry API and triage it; unsigned, wrongly signed or unconfigured hooks are refused."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import time
from collections.abc import Callable
from typing import Any

from prodloop.server.store import signals
from tests.conftest import LiveServer, make_event, post
from tests.fakes.sentry_api import FakeSentryAPI

SECRET = "whsec-" + "9" * 24
TOKEN = "sntrys_" + "a" * 40


def _signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "Sentry-Hook-Resource": "event_alert",
        "Sentry-Hook-Signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
    }


def _alert(issue_id: str) -> bytes:
    return json.dumps({"action": "triggered", "data": {"event": {"issue_id": issue_id, "title": "KeyError"},
                                                       "triggered_rule": "new issue"}}).encode()  # fmt: skip


def test_a_signed_alert_pulls_the_issue_and_triages_it(live_server: Callable[..., LiveServer]) -> None:
    with FakeSentryAPI(token=TOKEN, org="acme", project="shop") as sentry:
        sentry_issue = sentry.add_issue(make_event())
        server = live_server(
            sentry_client_secret=SECRET, sentry_base_url=sentry.url, sentry_org="acme", sentry_project="shop",
            sentry_token=TOKEN,
        )  # fmt: skip
        subprocess.run(["git", "init", "-q", str(server.ctx.settings.repo)], check=True)
        hooks = server.base_url + "/hooks/sentry"
        body = _alert(sentry_issue)
        unsigned = post(hooks, body, {"Content-Type": "application/json", "Sentry-Hook-Resource": "event_alert"})
        assert (unsigned.status, unsigned.body["error"]) == (401, "unsigned: Sentry-Hook-Signature is missing")
        forged = post(hooks, body, _signed(body, secret="not-the-secret"))
        assert forged.status == 401 and "does not match" in forged.body["error"]
        tampered = post(hooks, _alert("999"), _signed(body))  # a signature of another body
        assert tampered.status == 401
        assert server.ctx.store.count_events() == 0 and not sentry.paths()  # nothing was pulled for any of them
        accepted = post(hooks, body, _signed(body))
        assert (accepted.status, accepted.body) == (202, {"status": "accepted", "sentry_issue": sentry_issue})
        deadline = time.monotonic() + 20
        while signals.get(server.ctx.store, 1) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        signal = signals.get(server.ctx.store, 1)
        assert signal is not None and signal.classification == "observation"
        assert server.ctx.store.count_events() == 1
        assert any(p.endswith(f"/issues/{sentry_issue}/events/latest/") for p in sentry.paths())


def test_without_a_client_secret_no_hook_is_accepted(live_server: Callable[..., LiveServer]) -> None:
    server = live_server()
    body = _alert("1")
    refused = post(server.base_url + "/hooks/sentry", body, _signed(body))
    assert refused.status == 404 and "sentry_client_secret is not set" in refused.body["error"]


def test_a_hook_about_no_issue_is_acknowledged_and_ignored(live_server: Callable[..., LiveServer]) -> None:
    server = live_server(sentry_client_secret=SECRET)
    body = json.dumps({"action": "installation", "data": {}}).encode()
    reply: Any = post(
        server.base_url + "/hooks/sentry", body, {**_signed(body), "Sentry-Hook-Resource": "installation"}
    )
    assert reply.status == 200 and reply.body["status"] == "ignored"
