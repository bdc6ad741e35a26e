"""Pulling events over Sentry's REST API, against a real local HTTP server speaking that API.

The served events are real sentry-sdk events (captured by a transport that keeps them) turned
into Sentry's API shape, with the SDK's own scrubbing switched off: the crashing code holds a
password in its locals and its request carries a bearer token, so prodloop's scrubbing is tested.
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sentry_sdk
from pydantic import SecretStr
from sentry_sdk.envelope import Envelope
from sentry_sdk.scrubber import EventScrubber
from sentry_sdk.transport import Transport

from prodloop.server.context import AppContext
from prodloop.server.errors import SentryAPIError
from prodloop.server.sources.sentry_api import SentryAPIClient, api_event_to_sdk_event, pull_from_sentry
from tests import pg
from tests.fakes.sentry_api import FakeSentryAPI, sdk_event_to_api_event

API_TOKEN = "sntrys_api_token_7c1e5b9d2a4f6e8c0b3d"
PASSWORD = "hunter2-correct-horse-58"
BEARER = "tok_live_9a8b7c6d5e4f3a2b1c0d"
ORG, PROJECT = "acme", "shop"


# -- real sentry-sdk events ---------------------------------------------------------------------


class _KeepEvents(Transport):
    """A sentry-sdk transport that keeps each event instead of sending it."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        event = envelope.get_event()
        if event is not None:
            self.events.append(json.loads(json.dumps(event, default=str)))


def _login(user: str, password: str) -> None:
    attempts = 3
    raise PermissionError(f"login refused for {user} after {attempts} attempts")


def _price_of(cart: dict[str, str]) -> int:
    prices = {"apple": 3}
    return prices[cart["sku"]]


def _parse_qty(text: str) -> int:
    return int(text)


CRASHES: dict[str, Callable[[], object]] = {
    "login": lambda: _login("jane", PASSWORD),
    "price": lambda: _price_of({"sku": "pear"}),
    "qty": lambda: _parse_qty("two"),
}


@pytest.fixture
def sdk_event() -> Callable[..., dict[str, Any]]:
    """Factory: run a crash under a real sentry-sdk client and return the event it would send."""

    def capture(crash: str = "login", *, release: str = "shop@2.4.1") -> dict[str, Any]:
        transport = _KeepEvents()
        client = sentry_sdk.Client(
            dsn="http://public@127.0.0.1:1/1",
            transport=transport,
            release=release,
            environment="production",
            default_integrations=False,
            auto_enabling_integrations=False,
            include_local_variables=True,
            event_scrubber=EventScrubber(denylist=[], pii_denylist=[]),  # the service forgot to scrub
        )
        request = {
            "method": "POST",
            "url": "https://shop.internal/login",
            "query_string": "next=/cart&lang=en",
            "headers": {"Authorization": f"Bearer {BEARER}", "Content-Type": "application/json"},
            "data": {"user": "jane"},
        }

        def with_request(event: Any, hint: dict[str, Any]) -> Any:
            event["request"] = request
            return event

        try:
            with sentry_sdk.isolation_scope() as scope:
                scope.set_client(client)
                scope.set_tag("region", "eu-1")
                scope.set_user({"id": "user-17"})
                sentry_sdk.add_breadcrumb(category="auth", message="login attempt", level="info")
                scope.add_event_processor(with_request)
                try:
                    CRASHES[crash]()
                except Exception:
                    sentry_sdk.capture_exception()
        finally:
            client.close()
        assert len(transport.events) == 1
        return transport.events[0]

    return capture


# -- the fake API, the store, connections made ----------------------------------------------------


@pytest.fixture
def fake_sentry() -> Iterator[Callable[..., FakeSentryAPI]]:
    """Factory: a started FakeSentryAPI, closed after the test."""
    started: list[FakeSentryAPI] = []

    def factory(**options: Any) -> FakeSentryAPI:
        fake = FakeSentryAPI(token=API_TOKEN, org=ORG, project=PROJECT, **options).start()
        started.append(fake)
        return fake

    yield factory
    for fake in started:
        fake.close()


@pytest.fixture
def populated(fake_sentry: Callable[..., FakeSentryAPI], sdk_event: Callable[..., dict[str, Any]]) -> FakeSentryAPI:
    """Three issues over two pages; the login issue has an older event and a latest one."""
    fake = fake_sentry(page_size=2)
    fake.add_issue(sdk_event("login", release="shop@2.4.0"), sdk_event("login"))
    fake.add_issue(sdk_event("price"))
    fake.add_issue(sdk_event("qty"))
    return fake


def _client(
    fake: FakeSentryAPI, *, token: str = API_TOKEN, base_url: str | None = None, project: str = PROJECT
) -> SentryAPIClient:
    return SentryAPIClient(base_url or fake.url, ORG, project, SecretStr(token), timeout=5)


def _db_bytes(ctx: AppContext) -> bytes:
    return pg.stored_bytes(ctx.store)


_connections: list[Any] | None = None
_hook_installed = False


@contextmanager
def _connections_made() -> Iterator[list[Any]]:
    """Every address a socket of this process connects to while inside the block (audit hook)."""
    global _connections, _hook_installed
    if not _hook_installed:

        def hook(event: str, args: tuple[Any, ...]) -> None:
            if event == "socket.connect" and _connections is not None:
                _connections.append(args[1])

        sys.addaudithook(hook)
        _hook_installed = True
    _connections = []
    try:
        yield _connections
    finally:
        _connections = None


# -- pulling --------------------------------------------------------------------------------------


def test_pull_stores_each_issues_latest_event_grouped_over_pages(ctx: AppContext, populated: FakeSentryAPI) -> None:
    project = ctx.store.create_project("svc")

    report = pull_from_sentry(ctx, project, _client(populated), limit=10)

    assert (report.stored, report.duplicates, report.refused) == (3, 0, [])
    issue_pages = [p for p in populated.paths() if "/issues/?" in p]
    assert len(issue_pages) == 2 and "cursor=0%3A2%3A0" in issue_pages[1]
    rows, total = ctx.store.list_issues(project_id=project.id)
    assert total == 3
    assert {r.exception_type for r in rows} == {"PermissionError", "KeyError", "ValueError"}
    login = next(r for r in rows if r.exception_type == "PermissionError")
    assert login.culprit is not None and login.culprit.endswith("in _login")
    stored = ctx.store.latest_event(login.id)
    assert stored.event_id == populated.latest("100")["eventID"]  # the latest event, not the older one
    assert stored.release == "shop@2.4.1" and stored.environment == "production"


def test_pulled_secrets_are_in_no_byte_of_the_database(ctx: AppContext, populated: FakeSentryAPI) -> None:
    served = json.dumps(populated.latest("100"))
    assert PASSWORD in served and BEARER in served  # the API really serves them, so this test can fail
    project = ctx.store.create_project("svc")

    pull_from_sentry(ctx, project, _client(populated))

    data = _db_bytes(ctx)
    assert b"login refused for jane" in data  # the events are really in these files
    for secret in (PASSWORD, BEARER, API_TOKEN):
        assert secret.encode() not in data
    payload = json.loads(ctx.store.latest_event(ctx.store.list_issues()[0][0].id).payload)
    assert payload["_prodloop"]["scrubbed"]


def test_limit_stops_pagination_early(ctx: AppContext, populated: FakeSentryAPI) -> None:
    report = pull_from_sentry(ctx, ctx.store.create_project("svc"), _client(populated), limit=1)

    assert report.stored == 1
    assert len([p for p in populated.paths() if "/issues/?" in p]) == 1


def test_wrong_token_names_the_scopes_and_stores_nothing(ctx: AppContext, populated: FakeSentryAPI) -> None:
    wrong = "sntrys_wrong_token_0000111122223333"
    client = _client(populated, token=wrong)

    with pytest.raises(SentryAPIError) as caught:
        pull_from_sentry(ctx, ctx.store.create_project("svc"), client)

    message = str(caught.value)
    assert "401" in message and "event:read" in message and "project:read" in message
    for text in (message, repr(caught.value), repr(client), str(client)):
        assert wrong not in text and API_TOKEN not in text
    assert ctx.store.count_events() == 0


def test_token_refused_on_an_event_aborts_the_pull(ctx: AppContext, populated: FakeSentryAPI) -> None:
    populated.fail(f"/api/0/organizations/{ORG}/issues/101/events/latest/", 403)

    with pytest.raises(SentryAPIError, match="event:read"):
        pull_from_sentry(ctx, ctx.store.create_project("svc"), _client(populated))

    assert ctx.store.count_events() == 0


def test_unknown_project_is_a_clear_not_found(populated: FakeSentryAPI) -> None:
    with pytest.raises(SentryAPIError) as caught:
        _client(populated, project="nope").list_issues()

    assert "project nope was not found (HTTP 404" in str(caught.value)
    assert "sentry_project" in str(caught.value)


def test_rate_limit_says_when_to_retry(populated: FakeSentryAPI) -> None:
    populated.fail(f"/api/0/projects/{ORG}/{PROJECT}/issues/", 429, retry_after="37")

    with pytest.raises(SentryAPIError, match="retry after 37 s"):
        _client(populated).list_issues()


def test_server_error_on_one_issue_refuses_it_and_keeps_the_rest(ctx: AppContext, populated: FakeSentryAPI) -> None:
    populated.fail(f"/api/0/organizations/{ORG}/issues/101/events/latest/", 500)

    report = pull_from_sentry(ctx, ctx.store.create_project("svc"), _client(populated))

    assert report.stored == 2
    assert [where for where, _ in report.refused] == ["sentry issue 101"]
    assert "HTTP 500" in report.refused[0][1]
    assert ctx.store.count_events() == 2


def test_an_answer_that_is_not_json_is_an_error(populated: FakeSentryAPI) -> None:
    populated.fail(
        f"/api/0/projects/{ORG}/{PROJECT}/issues/", 200, body=b"<html>Sign in</html>", content_type="text/html"
    )

    with pytest.raises(SentryAPIError, match=r"not JSON \(Content-Type text/html\)"):
        _client(populated).list_issues()


def test_unreachable_sentry_says_the_url_cannot_be_reached() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    base = f"http://127.0.0.1:{port}"
    client = SentryAPIClient(base, ORG, PROJECT, SecretStr(API_TOKEN), timeout=5)

    with pytest.raises(SentryAPIError) as caught:
        client.list_issues()

    assert f"cannot reach {base} (ConnectionRefusedError)" in str(caught.value)
    assert API_TOKEN not in str(caught.value)


def test_redirect_is_refused_so_the_token_never_goes_elsewhere(
    fake_sentry: Callable[..., FakeSentryAPI], populated: FakeSentryAPI
) -> None:
    elsewhere = fake_sentry()
    path = f"/api/0/projects/{ORG}/{PROJECT}/issues/"
    populated.fail(path, 302, location=f"{elsewhere.url}{path}")

    with pytest.raises(SentryAPIError, match="redirect"):
        _client(populated).list_issues()

    assert elsewhere.requests == []


def test_self_hosted_base_url_with_a_path_prefix_works(
    ctx: AppContext, fake_sentry: Callable[..., FakeSentryAPI], sdk_event: Callable[..., dict[str, Any]]
) -> None:
    fake = fake_sentry(prefix="/sentry")
    fake.add_issue(sdk_event("qty"))

    report = pull_from_sentry(ctx, ctx.store.create_project("svc"), _client(fake, base_url=fake.url + "/"))

    assert report.stored == 1
    assert fake.paths()[0].startswith(f"/sentry/api/0/projects/{ORG}/{PROJECT}/issues/?")
    assert fake.paths()[1] == f"/sentry/api/0/organizations/{ORG}/issues/100/events/latest/"


def test_event_by_id(populated: FakeSentryAPI) -> None:
    event_id = populated.latest("102")["eventID"]

    assert _client(populated).event(event_id)["eventID"] == event_id
    with pytest.raises(SentryAPIError, match="not found"):
        _client(populated).event("0" * 32)


def test_requests_carry_the_bearer_token_and_go_only_to_the_fake(ctx: AppContext, populated: FakeSentryAPI) -> None:
    with _connections_made() as connections:
        pull_from_sentry(ctx, ctx.store.create_project("svc"), _client(populated))

    assert len(populated.requests) == 5  # two pages of issues, three latest events
    assert connections and all(addr[0] == "127.0.0.1" and addr[1] == populated.port for addr in connections)
    for request in populated.requests:
        assert request.headers["Authorization"] == f"Bearer {API_TOKEN}"
        assert request.headers["Host"] == f"127.0.0.1:{populated.port}"
        assert request.peer == "127.0.0.1"


# -- the API shape back to the SDK shape ------------------------------------------------------------


def test_api_event_maps_back_to_the_sdk_event(sdk_event: Callable[..., dict[str, Any]]) -> None:
    original = sdk_event("login")
    api = json.loads(json.dumps(sdk_event_to_api_event(original, group_id="7")))  # as it crosses the wire

    event = api_event_to_sdk_event(api)

    assert event["event_id"] == original["event_id"]
    sdk_frames = original["exception"]["values"][-1]["stacktrace"]["frames"]
    frames = event["exception"]["values"][-1]["stacktrace"]["frames"]
    assert len(frames) == len(sdk_frames) and frames[-1]["function"] == "_login"
    for ours, theirs in zip(frames, sdk_frames, strict=True):
        for key in ("filename", "abs_path", "module", "function", "lineno", "in_app", "vars"):
            assert ours.get(key) == theirs.get(key), key
        for key in ("pre_context", "context_line", "post_context"):
            assert ours.get(key) == (theirs.get(key) or ([] if key != "context_line" else None)), key
    assert PASSWORD in json.dumps(frames[-1]["vars"])  # converting does not scrub; the pipeline does
    assert event["exception"]["values"][-1]["mechanism"] == original["exception"]["values"][-1]["mechanism"]
    assert ["Authorization", f"Bearer {BEARER}"] in event["request"]["headers"]
    assert event["request"]["query_string"] == [["next", "/cart"], ["lang", "en"]]
    assert event["request"]["method"] == "POST" and event["request"]["data"] == {"user": "jane"}
    assert ["region", "eu-1"] in event["tags"]
    assert event["release"] == "shop@2.4.1" and event["environment"] == "production"
    assert event["user"] == {"id": "user-17"}
    assert event["breadcrumbs"]["values"][-1]["message"] == "login attempt"
    assert abs(event["timestamp"] - _epoch(original["timestamp"])) < 1e-3
    assert "fingerprint" not in event and "fingerprints" not in event


def test_api_event_dates_release_objects_and_context_lines() -> None:
    api = {
        "eventID": "0eabf1c001134940a6199d85c1ce3cf9",
        "dateCreated": "2018-11-06T21:19:56Z",
        "platform": "python",
        "release": {"version": "17642328ead2", "shortVersion": "1764232"},
        "tags": [{"key": "environment", "value": "staging"}, {"key": "level", "value": "warning"}],
        "fingerprints": ["16bcfa056ee73de2bc7846c8358f619d"],
        "entries": [
            {
                "type": "exception",
                "data": {
                    "values": [
                        {
                            "type": "KeyError",
                            "value": "'sku'",
                            "stacktrace": {
                                "frames": [
                                    {
                                        "filename": "shop/pricing.py",
                                        "absPath": "/app/shop/pricing.py",
                                        "function": "price_of",
                                        "lineNo": 12,
                                        "colNo": None,
                                        "inApp": True,
                                        "context": [[11, "    total = 0"], [12, "    return P[k]"], [13, ""]],
                                        "vars": {"k": "'sku'"},
                                    },
                                    {"filename": "lib.py", "lineNo": None, "context": [], "inApp": False},
                                ]
                            },
                        }
                    ]
                },
            },
            {"type": "request", "data": {"method": "GET", "url": "http://x/", "query": "a=1", "headers": []}},
        ],
    }

    event = api_event_to_sdk_event(api)

    assert event["timestamp"] == 1541539196.0
    assert event["release"] == "17642328ead2"
    assert event["environment"] == "staging" and event["level"] == "warning"
    assert "fingerprint" not in event
    frame, library = event["exception"]["values"][0]["stacktrace"]["frames"]
    assert frame == {
        "filename": "shop/pricing.py",
        "abs_path": "/app/shop/pricing.py",
        "function": "price_of",
        "lineno": 12,
        "in_app": True,
        "vars": {"k": "'sku'"},
        "pre_context": ["    total = 0"],
        "context_line": "    return P[k]",
        "post_context": [""],
    }
    assert library == {"filename": "lib.py", "in_app": False}
    assert event["request"] == {"method": "GET", "url": "http://x/", "query_string": "a=1"}
    assert "release" not in api_event_to_sdk_event({**api, "release": None})


def _epoch(value: Any) -> float:
    from datetime import UTC, datetime

    if isinstance(value, (int, float)):
        return float(value)
    when = datetime.fromisoformat(value)
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
