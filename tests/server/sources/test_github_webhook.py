"""GitHub merges as a trigger: a signed `pull_request` webhook over real HTTP on 127.0.0.1 hands a merged PR's number,
merge commit and merge time to the callback; unsigned, wrongly signed, oversized, unconfigured and malformed hooks are
refused and call nothing; anything but a merge is acknowledged and ignored."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from starlette.applications import Starlette

from prodloop.server.context import AppContext
from prodloop.server.demo import serve_app_in_thread
from prodloop.server.errors import ProdloopError
from prodloop.server.sources.github_webhook import GitHubWebhook
from tests.conftest import LiveServer, Reply, post

SECRET = "gh-hook-" + "7" * 24
SHA = "0123456789abcdef" * 2 + "01234567"
MERGED_AT = "2026-05-01T12:00:00Z"


class Hook:
    """A webhook served on its own under uvicorn, recording what reached its callback."""

    def __init__(self, webhook: GitHubWebhook, url: str, calls: list[tuple[int, str, float]]) -> None:
        self.webhook, self.url, self.calls = webhook, url, calls

    def send(self, payload: Any, *, event: str = "pull_request", secret: str | None = SECRET, **headers: str) -> Reply:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        sent = {"Content-Type": "application/json", "X-GitHub-Event": event, "X-GitHub-Delivery": "d-1", **headers}
        if secret is not None:
            sent["X-Hub-Signature-256"] = _signature(body, secret)
        return post(self.url, body, sent)


def _signature(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _merged(number: Any = 7, sha: Any = SHA, merged_at: Any = MERGED_AT, **pull: Any) -> dict[str, Any]:
    return {
        "action": "closed",
        "number": number,
        "pull_request": {"number": number, "merged": True, "merge_commit_sha": sha, "merged_at": merged_at,
                         "state": "closed", **pull},
        "repository": {"full_name": "acme/shop"},
    }  # fmt: skip


@pytest.fixture
def hook(make_ctx: Callable[..., AppContext]) -> Iterator[Callable[..., Hook]]:
    """Factory: the webhook over a store with these settings, under a real server; `fail` makes the callback raise."""
    with contextlib.ExitStack() as running:

        def factory(fail: BaseException | None = None, **settings: Any) -> Hook:
            calls: list[tuple[int, str, float]] = []

            def on_merge(number: int, sha: str, merged_at: float) -> None:
                calls.append((number, sha, merged_at))
                if fail is not None:
                    raise fail

            webhook = GitHubWebhook(make_ctx(**settings), on_merge)
            port = running.enter_context(serve_app_in_thread(Starlette(routes=webhook.routes())))
            return Hook(webhook, f"http://127.0.0.1:{port}/hooks/github", calls)

        yield factory


def test_a_signed_merge_calls_back_with_the_parsed_values(hook: Callable[..., Hook]) -> None:
    served = hook(github_webhook_secret=SECRET, github_repo="acme/shop")
    reply = served.send(_merged(sha=SHA.upper()))
    assert (reply.status, reply.body) == (202, {"status": "accepted", "pull_request": 7, "merge_commit": SHA})
    assert served.webhook.done.wait(10)
    assert served.calls == [(7, SHA, datetime.fromisoformat("2026-05-01T12:00:00+00:00").timestamp())]


@pytest.mark.parametrize(
    ("signature", "said"),
    [
        (None, "unsigned: X-Hub-Signature-256 is missing"),
        ("sha256=" + "0" * 64, "does not match"),
        (_signature(b"{}", SECRET), "does not match"),  # a real signature, of another body
        (_signature(json.dumps(_merged()).encode(), "not-the-secret"), "does not match"),
        (_signature(json.dumps(_merged()).encode()).replace("sha256=", "sha1="), "does not match"),
        (_signature(json.dumps(_merged()).encode()).removeprefix("sha256="), "does not match"),  # the bare hex
    ],
)
def test_an_unsigned_or_wrongly_signed_hook_is_refused_and_calls_nothing(
    hook: Callable[..., Hook], signature: str | None, said: str
) -> None:
    served = hook(github_webhook_secret=SECRET)
    headers = {"X-Hub-Signature-256": signature} if signature is not None else {}
    reply = served.send(_merged(), secret=None, **headers)
    assert reply.status == 401 and said in reply.body["error"]
    assert not served.webhook.done.wait(0.3) and served.calls == []


def test_a_body_over_one_mebibyte_is_refused_whether_declared_or_streamed(hook: Callable[..., Hook]) -> None:
    served = hook(github_webhook_secret=SECRET)
    huge = json.dumps(_merged(body="x" * (1024 * 1024))).encode()
    port = int(served.url.split(":")[2].split("/")[0])
    # Declared: refused on the header alone, before a byte of the body is read (none is sent: no race with the
    # server closing the connection while a client still writes).
    declared = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    declared.putrequest("POST", "/hooks/github")
    for name, value in {"Content-Length": str(len(huge)), "X-Hub-Signature-256": _signature(huge),
                        "X-GitHub-Event": "pull_request", "Content-Type": "application/json"}.items():  # fmt: skip
        declared.putheader(name, value)
    declared.endheaders()
    answer = declared.getresponse()
    assert answer.status == 413 and "over 1048576 bytes" in json.loads(answer.read())["error"]
    declared.close()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # chunked: no length to refuse it by
    headers = {"X-Hub-Signature-256": _signature(huge), "X-GitHub-Event": "pull_request"}
    conn.request("POST", "/hooks/github", body=iter([huge[i : i + 65536] for i in range(0, len(huge), 65536)]),
                 headers=headers, encode_chunked=True)  # fmt: skip
    assert conn.getresponse().status == 413
    conn.close()
    assert served.calls == []


def test_without_a_secret_no_hook_is_accepted(hook: Callable[..., Hook]) -> None:
    served = hook()
    reply = served.send(_merged())
    assert reply.status == 404 and "github_webhook_secret is not set" in reply.body["error"]
    assert served.calls == []


@pytest.mark.parametrize(
    ("payload", "said"),
    [
        (b"payload=%7B%7D", "not JSON: set the webhook's content type to application/json"),
        ([1, 2], "without a pull_request object"),
        (_merged(number="7"), "no number"),
        (_merged(number=0), "no number"),
        (_merged(number=True), "no number"),
        (_merged(sha="abc123"), "no merge_commit_sha"),
        (_merged(sha=None), "no merge_commit_sha"),
        (_merged(merged_at="yesterday"), "no merged_at"),
        (_merged(merged_at="2026-05-01T12:00:00"), "no merged_at"),  # no zone: which clock?
        (_merged(merged_at=1_777_000_000), "no merged_at"),
    ],
)
def test_a_malformed_merge_is_refused_with_what_is_wrong(hook: Callable[..., Hook], payload: Any, said: str) -> None:
    served = hook(github_webhook_secret=SECRET)
    reply = served.send(payload)
    assert reply.status == 400 and said in reply.body["error"], reply.body
    assert served.calls == []


@pytest.mark.parametrize(
    ("payload", "event"),
    [
        ({**_merged(), "pull_request": {**_merged()["pull_request"], "merged": False}}, "pull_request"),
        ({**_merged(), "action": "opened"}, "pull_request"),
        ({**_merged(), "action": "synchronize"}, "pull_request"),
        ({**_merged(), "repository": {"full_name": "acme/other"}}, "pull_request"),
        (_merged(), "push"),
    ],
)
def test_anything_but_a_merge_of_this_repository_is_acknowledged_and_ignored(
    hook: Callable[..., Hook], payload: dict[str, Any], event: str
) -> None:
    served = hook(github_webhook_secret=SECRET, github_repo="acme/shop")
    reply = served.send(payload, event=event)
    assert reply.status == 200 and reply.body["status"] == "ignored", reply.body
    assert not served.webhook.done.wait(0.3) and served.calls == []


def test_a_ping_is_answered(hook: Callable[..., Hook]) -> None:
    served = hook(github_webhook_secret=SECRET)
    reply = served.send({"zen": "Keep it logically awesome.", "hook_id": 1}, event="ping")
    assert (reply.status, reply.body) == (200, {"status": "pong"})


def test_a_failing_callback_is_logged_and_the_next_merge_still_arrives(
    hook: Callable[..., Hook], caplog: pytest.LogCaptureFixture
) -> None:
    served = hook(fail=ProdloopError("the store is busy"), github_webhook_secret=SECRET)
    with caplog.at_level(logging.ERROR, logger="prodloop.server"):
        assert served.send(_merged()).status == 202
        assert served.webhook.done.wait(10)
        served.webhook.done.clear()
        assert served.send(_merged(number=8)).status == 202
        assert served.webhook.done.wait(10)
    assert [n for n, _, _ in served.calls] == [7, 8]
    assert "github webhook for pull request 7: the store is busy" in caplog.text


def test_the_served_application_mounts_the_hook_and_hands_a_merge_to_the_watch(
    live_server: Callable[..., LiveServer], caplog: pytest.LogCaptureFixture
) -> None:
    assert post(live_server().base_url + "/hooks/github", b"{}", {}).status == 404  # unconfigured
    server = live_server(name="configured", github_webhook_secret=SECRET)
    body = json.dumps(_merged()).encode()
    headers = {"X-GitHub-Event": "pull_request", "X-Hub-Signature-256": _signature(body)}
    with caplog.at_level(logging.INFO, logger="prodloop.server"):
        assert (
            post(server.base_url + "/hooks/github", body, {**headers, "X-Hub-Signature-256": "sha256=0"}).status == 401
        )
        assert post(server.base_url + "/hooks/github", body, headers).status == 202
        deadline = time.monotonic() + 10
        while "merge of PR #7: not one prodloop opened" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
    assert "merge of PR #7: not one prodloop opened" in caplog.text  # the watch's recorder got it
