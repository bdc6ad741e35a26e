"""A real sentry-sdk, in its own process, reporting a real crash to a real prodloop server.

The crashing code holds a password in its locals and receives a bearer token in a request
header; the SDK's own scrubbing is switched off so prodloop's is what is tested."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from mcp import Client

from prodloop.server.mcp_app import build_mcp
from tests import pg
from tests.conftest import LiveServer

pytestmark = pytest.mark.anyio

PASSWORD = "correct-horse-battery-staple-91"
BEARER = "tok_live_4f9c2a7e1b3d5f6a8c0e"
EMAIL = "jane.customer@example.org"

SERVICE = textwrap.dedent(
    """
    import sys
    import sentry_sdk
    from sentry_sdk.integrations.wsgi import SentryWsgiMiddleware
    from sentry_sdk.scrubber import EventScrubber

    seen = {}

    def before_send(event, hint):
        seen["raw"] = repr(event)
        return event

    sentry_sdk.init(
        dsn=sys.argv[1],
        release="shop@2.4.1",
        environment="production",
        send_default_pii=True,
        include_local_variables=True,
        event_scrubber=EventScrubber(denylist=[], pii_denylist=[]),
        before_send=before_send,
    )

    def authenticate(user, password):
        attempts = 3
        raise PermissionError("login refused for " + user)

    def app(environ, start_response):
        authenticate("JANE", sys.argv[2])

    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/login", "QUERY_STRING": "next=/cart",
        "SERVER_NAME": "shop.internal", "SERVER_PORT": "443", "wsgi.url_scheme": "https",
        "HTTP_AUTHORIZATION": "Bearer " + sys.argv[3], "HTTP_X_USER_EMAIL": sys.argv[4],
    }
    sentry_sdk.set_user({"id": "user-17", "email": sys.argv[4]})
    try:
        SentryWsgiMiddleware(app)(environ, lambda *a: None)
    except PermissionError:
        pass
    sentry_sdk.flush(timeout=10)
    # Proof that the secrets really left the SDK, so the assertions below can fail.
    print(json.dumps({k: (v in seen["raw"]) for k, v in {"pw": sys.argv[2], "bearer": sys.argv[3]}.items()}))
    """
).replace("import sys\n", "import json\nimport sys\n", 1)


@pytest.fixture
def reported(live_server: Callable[..., LiveServer], tmp_path: Path) -> LiveServer:
    server = live_server()
    script = tmp_path / "service.py"
    script.write_text(SERVICE)
    done = subprocess.run(
        [sys.executable, str(script), server.dsn, PASSWORD, BEARER, EMAIL],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"pw": True, "bearer": True}
    assert server.ctx.store.count_events() == 1
    return server


def _db_bytes(server: LiveServer) -> bytes:
    return pg.stored_bytes(server.ctx.store)


def test_crash_arrives_grouped_with_its_request_and_locals(reported: LiveServer) -> None:
    rows, total = reported.ctx.store.list_issues()
    assert total == 1
    issue = rows[0]
    assert issue.title.startswith("PermissionError: login refused for")
    assert issue.culprit == "__main__ in authenticate"
    assert issue.user_count == 1


def test_secrets_are_in_no_byte_of_the_database(reported: LiveServer) -> None:
    data = _db_bytes(reported)
    assert b"user-17" in data  # the event is really in these files
    for secret in (PASSWORD, BEARER, EMAIL):
        assert secret.encode() not in data


async def test_secrets_are_in_no_tool_output(reported: LiveServer) -> None:
    async with Client(build_mcp(reported.ctx)) as client:
        issues = await client.call_tool("list_issues", {})
        issue_id = issues.structured_content["issues"][0]["id"]
        context = await client.call_tool("fetch_error_context", {"issue_id": issue_id})
    assert not context.is_error
    text = json.dumps(context.structured_content) + json.dumps(issues.structured_content)
    for secret in (PASSWORD, BEARER, EMAIL):
        assert secret not in text
    body = context.structured_content
    assert body["request"]["method"] == "POST"
    assert body["request"]["headers"]["Authorization"] == "[Filtered]"
    culprit = body["frames"][-1]
    assert culprit["function"] == "authenticate"
    assert culprit["vars"]["password"] == "[Filtered]"
    assert culprit["vars"]["attempts"] == "3"  # sentry-sdk sends locals as their repr
    assert {"path": "user.email", "rule": "@email:filter"} in body["scrubbed"]
