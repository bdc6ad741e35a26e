"""GitHub as a trigger: `POST /hooks/github` takes a repository webhook's `pull_request` events, verifies
`X-Hub-Signature-256` (HMAC-SHA256 of the raw body with `github_webhook_secret`), and hands a merged pull request's
number, merge commit and merge time to `on_merge`.

Unsigned or wrongly signed requests are refused before the body is parsed; nothing is configured, nothing is
accepted. `on_merge` runs after the answer (GitHub waits ten seconds at most): 202 means "verified, queued". Every
other event or action (a ping, a PR opened or closed unmerged, another repository's) is acknowledged and ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from prodloop.server.context import AppContext
from prodloop.server.errors import ProdloopError
from prodloop.server.sources._body import capped_body

logger = logging.getLogger("prodloop.server")
_MAX_BODY = 1024 * 1024
_SHA = re.compile(r"^[0-9a-f]{40}$")
_PREFIX = "sha256="

MergeCallback = Callable[[int, str, float], None]
"""`on_merge(number, merge_commit_sha, merged_at)`: a pull request was merged (merged_at in epoch seconds)."""


class GitHubWebhook:
    def __init__(self, ctx: AppContext, on_merge: MergeCallback) -> None:
        self._ctx = ctx
        self._on_merge = on_merge
        self._lock = threading.Lock()  # one merge handled at a time
        self.done = threading.Event()  # set after each handled merge (tests wait on it)

    def routes(self) -> list[Route]:
        return [Route("/hooks/github", self.hook, methods=["POST"])]

    async def hook(self, request: Request) -> Response:
        secret = self._ctx.settings.github_webhook_secret
        if secret is None:
            return _error(404, "GitHub webhooks are not configured here (github_webhook_secret is not set)")
        body = await capped_body(request, _MAX_BODY)
        if body is None:
            return _error(413, f"a webhook body over {_MAX_BODY} bytes")
        sent = request.headers.get("x-hub-signature-256", "").strip()
        if not sent:
            return _error(401, "unsigned: X-Hub-Signature-256 is missing (set the webhook's secret on GitHub)")
        expected = _PREFIX + hmac.new(secret.get_secret_value().encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(sent.lower().encode(), expected.encode()):
            return _error(401, "the signature does not match this body and the configured github_webhook_secret")
        event = request.headers.get("x-github-event", "")
        if event == "ping":
            return JSONResponse({"status": "pong"}, status_code=200)
        if event != "pull_request":
            return _ignored(f"a {event[:40]!r} event (only pull_request merges are read)")
        try:
            payload = json.loads(body)
        except ValueError:
            return _error(400, "the body is not JSON: set the webhook's content type to application/json")
        if not isinstance(payload, dict) or not isinstance(payload.get("pull_request"), dict):
            return _error(400, "a pull_request event without a pull_request object")
        wanted = self._repository()
        repository = payload.get("repository")
        named = repository.get("full_name") if isinstance(repository, dict) else None
        if wanted and (not isinstance(named, str) or named.lower() != wanted.lower()):
            return _ignored(f"a pull request of another repository than {wanted}")
        pull = payload["pull_request"]
        if payload.get("action") != "closed" or pull.get("merged") is not True:
            return _ignored("not a merge (only a closed pull request that was merged is read)")
        try:
            number, sha, merged_at = _merge(pull)
        except ValueError as exc:
            return _error(400, f"a merged pull request with {exc}")
        threading.Thread(
            target=self._deliver, args=(number, sha, merged_at), name="prodloop-github-hook", daemon=True
        ).start()
        return JSONResponse({"status": "accepted", "pull_request": number, "merge_commit": sha}, status_code=202)

    def _repository(self) -> str | None:
        """owner/name this server serves: the setting, else the remote's URL (a hook of another repository that
        shares the secret is not this one's); None when neither says."""
        from prodloop.tools.ship.github import repository_name

        try:
            return repository_name(self._ctx.settings, self._ctx.settings.repo)
        except ProdloopError:
            return None

    def _deliver(self, number: int, sha: str, merged_at: float) -> None:
        try:
            with self._lock:
                self._on_merge(number, sha, merged_at)
        except ProdloopError as exc:
            logger.error("github webhook for pull request %s: %s", number, str(exc)[:300])
        except Exception as exc:  # the server goes on; the next merge or watch pass tries again
            logger.error("github webhook for pull request %s failed: %s", number, type(exc).__name__)
        finally:
            self.done.set()


def _merge(pull: dict[str, Any]) -> tuple[int, str, float]:
    """(number, merge commit sha, merged_at in epoch seconds) of a merged pull request; ValueError says which field
    is wrong."""
    number = pull.get("number")
    if not isinstance(number, int) or isinstance(number, bool) or number < 1:
        raise ValueError("no number (a positive integer)")
    sha = pull.get("merge_commit_sha")
    if not isinstance(sha, str) or not _SHA.match(sha.lower()):
        raise ValueError("no merge_commit_sha (40 hex digits)")
    stamp = pull.get("merged_at")
    try:
        when = datetime.fromisoformat(stamp) if isinstance(stamp, str) and len(stamp) <= 40 else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise ValueError("no merged_at (an ISO 8601 time with its zone, as 2026-05-01T12:00:00Z)")
    return number, sha.lower(), when.timestamp()


def _ignored(why: str) -> JSONResponse:
    return JSONResponse({"status": "ignored", "why": why}, status_code=200)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)
