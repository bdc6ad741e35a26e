"""Pulling events from Sentry's REST API (sentry.io or self-hosted) into the store.

The client speaks only the three endpoints prodloop needs, over the standard library, and
maps every failure at this boundary to `SentryAPIError`. The auth token goes out only as an
unredirected `Authorization` header to `base_url`: a redirect is refused, never followed with it.

Sentry's API serves events in its own shape (`eventID`, `entries`, camelCase frames);
`api_event_to_sdk_event` turns one back into what sentry-sdk sends, so a pulled event is
scrubbed and grouped by the same pipeline as a live one.
"""

from __future__ import annotations

import http.client
import json
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from pydantic import SecretStr

from prodloop.server.context import AppContext
from prodloop.server.errors import ConfigError, InvalidArgument, SentryAPIError
from prodloop.server.ingest.importer import ImportReport, import_events
from prodloop.server.store import Project

_MAX_BODY = 16 * 1024 * 1024
_MAX_PAGE = 100  # Sentry's own cap on one page of issues
_SCOPES = "project:read and event:read (org:read for organization endpoints)"
_LINK = re.compile(r'<([^>]*)>((?:\s*;\s*[A-Za-z]+\s*=\s*"[^"]*")*)')
_LINK_PARAM = re.compile(r'([A-Za-z]+)\s*=\s*"([^"]*)"')
_FIX_URL = "check that sentry_base_url points at Sentry itself, not a login page or a proxy"


class _RefuseRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect comes back as an HTTPError (3xx); the token is never replayed elsewhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class SentryAPIClient:
    def __init__(self, base_url: str, org: str, project: str, token: SecretStr, *, timeout: float = 10.0) -> None:
        parts = urlsplit(base_url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("sentry_base_url", "is not an http(s) URL", "give e.g. https://sentry.io")
        if parts.username or parts.password:
            raise ConfigError("sentry_base_url", "carries credentials", "remove them; the token goes in sentry_token")
        self.base_url = base_url.strip().rstrip("/")
        self.org = org
        self.project = project
        self._token = token
        self._timeout = timeout
        self._opener = urllib.request.build_opener(_RefuseRedirect)

    def __repr__(self) -> str:
        return f"SentryAPIClient(base_url={self.base_url!r}, org={self.org!r}, project={self.project!r})"

    def list_issues(self, limit: int = 25) -> list[dict[str, Any]]:
        """Up to `limit` issues of the project, following the `Link` header's next cursor."""
        path = f"/api/0/projects/{_seg(self.org)}/{_seg(self.project)}/issues/"
        what = f"organization {self.org} or project {self.project}"
        issues: list[dict[str, Any]] = []
        cursor: str | None = None
        seen: set[str] = set()
        while len(issues) < limit:
            query = {"limit": str(min(limit - len(issues), _MAX_PAGE))}
            if cursor is not None:
                query["cursor"] = cursor
            page, link = self._get(f"{path}?{urlencode(query)}", what)
            if not isinstance(page, list):
                raise SentryAPIError(f"GET {self.base_url}{path}", "the answer is not a JSON list", _FIX_URL)
            issues.extend(item for item in page if isinstance(item, dict))
            cursor = _next_cursor(link)
            if not page or cursor is None or cursor in seen:
                break
            seen.add(cursor)
        return issues[:limit]

    def latest_event(self, issue_id: str) -> dict[str, Any]:
        path = f"/api/0/organizations/{_seg(self.org)}/issues/{_seg(issue_id)}/events/latest/"
        return self._get_object(path, f"issue {issue_id} in organization {self.org}")

    def event(self, event_id: str) -> dict[str, Any]:
        path = f"/api/0/projects/{_seg(self.org)}/{_seg(self.project)}/events/{_seg(event_id)}/"
        return self._get_object(path, f"event {event_id} in project {self.org}/{self.project}")

    def _get_object(self, path: str, what: str) -> dict[str, Any]:
        body, _ = self._get(path, what)
        if not isinstance(body, dict):
            raise SentryAPIError(f"GET {self.base_url}{path}", "the answer is not a JSON object", _FIX_URL)
        return body

    def _get(self, path_and_query: str, what: str) -> tuple[Any, str | None]:
        url = self.base_url + path_and_query
        # the scheme was checked to be http(s) in __init__
        request = urllib.request.Request(url, method="GET", headers={"Accept": "application/json"})  # noqa: S310
        request.add_unredirected_header("Authorization", f"Bearer {self._token.get_secret_value()}")
        label = f"GET {url}"
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                raw = response.read(_MAX_BODY + 1)
                link = response.headers.get("Link")
                content_type = response.headers.get("Content-Type") or "none"
        except urllib.error.HTTPError as exc:
            with exc:
                detail = _detail(exc.read(64 * 1024), self._token)
                raise self._status_error(label, exc.code, exc.headers.get("Retry-After"), detail, what) from exc
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            why = type(reason).__name__ if isinstance(reason, BaseException) else str(reason)[:80]
            raise SentryAPIError(
                label,
                f"cannot reach {self.base_url} ({why})",
                "check sentry_base_url (self-hosted Sentry has its own address), the network and any proxy",
            ) from exc
        if len(raw) > _MAX_BODY:
            raise SentryAPIError(label, f"the answer is over {_MAX_BODY} bytes", "ask for fewer issues at once")
        try:
            return json.loads(raw), link
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise SentryAPIError(label, f"the answer is not JSON (Content-Type {content_type[:60]})", _FIX_URL) from exc

    def _status_error(self, label: str, status: int, retry_after: str | None, detail: str, what: str) -> SentryAPIError:
        said = f"HTTP {status}{f': {detail}' if detail else ''}"
        if status in (401, 403):
            return SentryAPIError(
                label,
                f"the token was refused ({said})",
                f"create an auth token with the scopes {_SCOPES} at {self.base_url}/settings/account/api/auth-tokens/"
                " and set PRODLOOP_SENTRY_TOKEN",
            )
        if status == 404:
            return SentryAPIError(
                label,
                f"{what} was not found ({said})",
                "check sentry_org and sentry_project (the slugs in the Sentry URL) and that the token's user sees them",
            )
        if status == 429:
            wait = f"retry after {retry_after.strip()[:40]} s" if retry_after else "retry after a minute"
            return SentryAPIError(label, f"Sentry rate limited the token ({said})", f"{wait}, or pull fewer issues")
        if status >= 500:
            return SentryAPIError(
                label, f"Sentry failed ({said})", "retry later; for self-hosted Sentry read its web and worker logs"
            )
        if 300 <= status < 400:
            return SentryAPIError(
                label, f"Sentry answered with a redirect ({said})", "set sentry_base_url to the address it redirects to"
            )
        return SentryAPIError(label, f"Sentry refused the request ({said})", _FIX_URL)


def _seg(value: str) -> str:
    """One path segment, so an id from the API cannot walk to another endpoint."""
    return quote(str(value), safe="")


def _detail(body: bytes, token: SecretStr) -> str:
    """Sentry's `detail` message of an error answer, capped and with the token masked if echoed."""
    try:
        parsed = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return ""
    text = parsed.get("detail") if isinstance(parsed, dict) else None
    if not isinstance(text, str):
        return ""
    secret = token.get_secret_value()
    return (text.replace(secret, "[Filtered]") if secret else text)[:200]


def _next_cursor(link: str | None) -> str | None:
    """The cursor of the `rel="next"` link when Sentry says it has results."""
    for match in _LINK.finditer(link or ""):
        params = {k.lower(): v for k, v in _LINK_PARAM.findall(match.group(2))}
        if params.get("rel") == "next" and params.get("results") == "true":
            return params.get("cursor") or None
    return None


def _is_auth_failure(exc: SentryAPIError) -> bool:
    cause = exc.__cause__
    return isinstance(cause, urllib.error.HTTPError) and cause.code in (401, 403)


def pull_from_sentry(ctx: AppContext, project: Project, client: SentryAPIClient, *, limit: int = 25) -> ImportReport:
    """Store the latest event of up to `limit` issues; one issue failing is reported, a refused token aborts."""
    if limit < 1:
        raise InvalidArgument("limit", f"is {limit}", "pull at least 1 issue")
    fetched: list[tuple[str, dict[str, Any]]] = []
    refused: list[tuple[str, str]] = []
    for issue in client.list_issues(limit):
        if not isinstance(issue.get("id"), (str, int)):
            refused.append(("sentry issue ?", "the issue list gave an issue without an id"))
            continue
        issue_id = str(issue["id"])[:64]
        where = f"sentry issue {issue_id}"
        try:
            api_event = client.latest_event(issue_id)
        except SentryAPIError as exc:
            if _is_auth_failure(exc):
                raise
            refused.append((where, str(exc)))
            continue
        fetched.append((where, api_event_to_sdk_event(api_event)))
    report = import_events(ctx, project, fetched, source="sentry-api")
    report.refused[:0] = refused
    return report


# -- Sentry's API event shape -> sentry-sdk event shape -------------------------------------------

_COPIED = ("platform", "level", "logger", "transaction", "server_name", "dist", "user", "contexts", "sdk")
_FROM_TAGS = ("environment", "level", "logger", "transaction", "server_name", "release", "dist")


def api_event_to_sdk_event(api_event: Mapping[str, Any]) -> dict[str, Any]:
    """The sentry-sdk event that Sentry's API event describes; Sentry's computed fingerprints are dropped."""
    event: dict[str, Any] = {"event_id": api_event.get("eventID") or api_event.get("id")}
    timestamp = _epoch(api_event.get("dateCreated")) or _epoch(api_event.get("dateReceived"))
    if timestamp is not None:
        event["timestamp"] = timestamp
    event.update({k: api_event[k] for k in _COPIED if api_event.get(k) is not None})
    pairs = _dicts(api_event.get("tags"))
    tags = [[str(t["key"]), str(t["value"])] for t in pairs if t.get("key") is not None and t.get("value") is not None]
    if tags:
        event["tags"] = tags
    release = api_event.get("release")
    release = release.get("version") if isinstance(release, dict) else release
    if isinstance(release, str) and release:
        event["release"] = release
    for key, value in tags:
        if key in _FROM_TAGS and key not in event:
            event[key] = value
    if isinstance(api_event.get("context"), dict):
        event["extra"] = api_event["context"]
    if isinstance(api_event.get("packages"), dict):
        event["modules"] = api_event["packages"]
    if isinstance(api_event.get("message"), str) and api_event["message"]:
        event["message"] = api_event["message"]
    for entry in _dicts(api_event.get("entries")):
        _add_entry(event, str(entry.get("type")), entry.get("data"))
    return event


def _add_entry(event: dict[str, Any], kind: str, data: Any) -> None:
    if not isinstance(data, dict):
        return
    if kind == "exception":
        event["exception"] = {"values": [_exception(v) for v in _dicts(data.get("values"))]}
    elif kind == "threads":
        event["threads"] = {"values": [_exception(v) for v in _dicts(data.get("values"))]}
    elif kind == "request":
        renames = {"query": "query_string", "method": "method", "url": "url", "fragment": "fragment", "data": "data"}
        request = {new: data[old] for old, new in renames.items() if data.get(old) not in (None, "", [])}
        request.update({k: data[k] for k in ("headers", "cookies", "env") if data.get(k)})
        event["request"] = request
    elif kind == "breadcrumbs":
        event["breadcrumbs"] = {"values": [_breadcrumb(c) for c in _dicts(data.get("values"))]}
    elif kind == "message":
        entry = {k: data[k] for k in ("formatted", "message", "params") if data.get(k) is not None}
        if entry:
            event["logentry"] = entry


def _exception(value: dict[str, Any]) -> dict[str, Any]:
    """One exception (or thread) value; camelCase keys become the SDK's snake_case."""
    renames = {"threadId": "thread_id", "crashed": "crashed", "current": "current", "name": "name", "id": "id"}
    out = {k: value[k] for k in ("type", "value", "module", "mechanism") if value.get(k) is not None}
    out.update({new: value[old] for old, new in renames.items() if value.get(old) is not None})
    stack = value.get("stacktrace")
    if isinstance(stack, dict):
        frames = {"frames": [_frame(f) for f in _dicts(stack.get("frames"))]}
        if stack.get("framesOmitted"):
            frames["frames_omitted"] = stack["framesOmitted"]
        out["stacktrace"] = frames
    return out


_FRAME_KEYS = {
    "filename": "filename", "absPath": "abs_path", "module": "module", "function": "function",
    "rawFunction": "raw_function", "package": "package", "platform": "platform", "lineNo": "lineno",
    "colNo": "colno", "inApp": "in_app", "vars": "vars", "instructionAddr": "instruction_addr",
    "symbol": "symbol", "symbolAddr": "symbol_addr",
}  # fmt: skip


def _frame(frame: dict[str, Any]) -> dict[str, Any]:
    """An API frame; its `context` of [lineno, line] pairs splits around `lineNo` into pre/line/post."""
    out = {new: frame[old] for old, new in _FRAME_KEYS.items() if frame.get(old) is not None}
    lines = [c for c in frame.get("context") or [] if isinstance(c, list) and len(c) == 2]
    lineno = frame.get("lineNo")
    at = next((i for i, (n, _) in enumerate(lines) if n == lineno), None)
    if at is not None:
        out["pre_context"] = [str(line) for _, line in lines[:at]]
        out["context_line"] = str(lines[at][1])
        out["post_context"] = [str(line) for _, line in lines[at + 1 :]]
    return out


def _breadcrumb(crumb: dict[str, Any]) -> dict[str, Any]:
    out = {k: crumb[k] for k in ("type", "category", "level", "message", "data") if crumb.get(k) is not None}
    when = crumb.get("timestamp")
    stamp = when if isinstance(when, (int, float)) else _epoch(when)
    if stamp is not None:
        out["timestamp"] = stamp
    return out


def _epoch(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
