"""Sentry as a trigger: `POST /hooks/sentry` takes Sentry's issue and issue-alert webhooks (integration platform),
verifies `Sentry-Hook-Signature` (HMAC-SHA256 of the body with the integration's client secret, `sentry_client_secret`),
then pulls the issue's latest event over the REST API, stores it like any other and triages that issue.

Unsigned or wrongly signed requests are refused before the body is parsed; nothing is configured, nothing is
accepted. The pull and triage run after the answer (Sentry wants one within a second): 202 means "verified, queued".
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from prodloop.server.context import AppContext
from prodloop.server.errors import ProdloopError
from prodloop.server.ingest.importer import import_events
from prodloop.server.sources._body import capped_body
from prodloop.server.sources.sentry_api import SentryAPIClient, api_event_to_sdk_event

logger = logging.getLogger("prodloop.server")
_MAX_BODY = 1024 * 1024
_ISSUE_ID = re.compile(r"^[0-9]{1,20}$")


class SentryWebhook:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx
        self._lock = threading.Lock()  # one pull-and-triage at a time
        self.done = threading.Event()  # set after each processed hook (tests wait on it)

    def routes(self) -> list[Route]:
        return [Route("/hooks/sentry", self.hook, methods=["POST"])]

    async def hook(self, request: Request) -> Response:
        settings = self._ctx.settings
        if settings.sentry_client_secret is None:
            return _error(404, "Sentry webhooks are not configured here (sentry_client_secret is not set)")
        body = await capped_body(request, _MAX_BODY)
        if body is None:
            return _error(413, f"a webhook body over {_MAX_BODY} bytes")
        sent = request.headers.get("sentry-hook-signature", "")
        expected = hmac.new(settings.sentry_client_secret.get_secret_value().encode(), body, hashlib.sha256).hexdigest()
        if not sent:
            return _error(401, "unsigned: Sentry-Hook-Signature is missing")
        if not hmac.compare_digest(sent.strip().lower(), expected):
            return _error(401, "the signature does not match this body and the configured client secret")
        resource = request.headers.get("sentry-hook-resource", "")
        try:
            payload = json.loads(body)
        except ValueError:
            return _error(400, "the body is not JSON")
        issue_id = _issue_id(resource, payload)
        if issue_id is None:
            return JSONResponse({"status": "ignored", "why": f"no issue in a {resource[:40]!r} hook"}, status_code=200)
        missing = [n for n in ("sentry_org", "sentry_project", "sentry_token") if getattr(settings, n) is None]
        if missing:
            return _error(503, f"{', '.join(missing)} not set: the issue cannot be pulled over Sentry's API")
        threading.Thread(
            target=self._pull_and_triage, args=(issue_id,), name="prodloop-sentry-hook", daemon=True
        ).start()
        return JSONResponse({"status": "accepted", "sentry_issue": issue_id}, status_code=202)

    def _pull_and_triage(self, sentry_issue: str) -> None:
        from prodloop.tools.observe.triage import triage_signals

        settings = self._ctx.settings
        assert settings.sentry_org and settings.sentry_project and settings.sentry_token
        try:
            with self._lock:
                client = SentryAPIClient(
                    settings.sentry_base_url, settings.sentry_org, settings.sentry_project, settings.sentry_token
                )
                event = api_event_to_sdk_event(client.latest_event(sentry_issue))
                store = self._ctx.store
                project = store.project_by_name(settings.sentry_project) or store.create_project(
                    settings.sentry_project
                )
                import_events(self._ctx, project, [(f"sentry issue {sentry_issue}", event)], source="sentry-webhook")
                stored = store.get_event(str(event.get("event_id", "")).replace("-", "").lower())
                triage_signals(store, self._ctx.git(), settings, self._ctx.clock, issue_id=stored.issue_id)
        except ProdloopError as exc:
            logger.error("sentry webhook for issue %s: %s", sentry_issue, str(exc)[:300])
        except Exception as exc:  # the server goes on; Sentry's next alert tries again
            logger.error("sentry webhook for issue %s failed: %s", sentry_issue, type(exc).__name__)
        finally:
            self.done.set()


def _issue_id(resource: str, payload: Any) -> str | None:
    """The Sentry issue an `issue` or `event_alert` hook is about."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, dict):
        return None
    if resource == "issue" and isinstance(data.get("issue"), dict):
        value = data["issue"].get("id")
    elif resource == "event_alert" and isinstance(data.get("event"), dict):
        value = data["event"].get("issue_id")
    else:
        return None
    text = str(value) if isinstance(value, (str, int)) else ""
    return text if _ISSUE_ID.match(text) else None


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)
