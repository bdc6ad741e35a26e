"""A real HTTP server on 127.0.0.1 speaking the part of Sentry's REST API that prodloop pulls from.

It serves events in Sentry's API shape, built from sentry-sdk events by `sdk_event_to_api_event`
(the inverse of what Sentry's event serializer does), checks the bearer token, paginates issues
with Sentry's `Link` header, can be told to fail a path, and records every request it received.

    with FakeSentryAPI(token="t", page_size=2) as fake:
        issue_id = fake.add_issue(sdk_event)
        fake.fail(f"/api/0/organizations/acme/issues/{issue_id}/events/latest/", 500)
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

_ISSUES = re.compile(r"^/api/0/projects/([^/]+)/([^/]+)/issues/$")
_LATEST = re.compile(r"^/api/0/(?:organizations/([^/]+)/)?issues/([^/]+)/events/latest/$")
_EVENT = re.compile(r"^/api/0/projects/([^/]+)/([^/]+)/events/([^/]+)/$")


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # as received, with the query string
    headers: dict[str, str]
    peer: str  # the address the request came from


@dataclass(frozen=True)
class _Failure:
    status: int
    body: bytes
    headers: dict[str, str]


class FakeSentryAPI:
    """Sentry's issues/events API for one organization and project; a context manager."""

    def __init__(
        self, *, token: str, org: str = "acme", project: str = "shop", prefix: str = "", page_size: int = 100
    ) -> None:
        self.token = token
        self.org = org
        self.project = project
        self.prefix = prefix.rstrip("/")
        self.page_size = page_size
        self.requests: list[RecordedRequest] = []
        self._issues: dict[str, list[dict[str, Any]]] = {}  # issue id -> API events, oldest first
        self._failures: dict[str, _Failure] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeSentryAPI:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> FakeSentryAPI:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @property
    def port(self) -> int:
        assert self._server is not None, "start the fake first"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """What a client puts in `base_url` (with the self-hosted prefix, if any)."""
        return f"http://127.0.0.1:{self.port}{self.prefix}"

    # -- what it serves --------------------------------------------------------------------

    def add_issue(self, *sdk_events: dict[str, Any]) -> str:
        """A new issue holding these sentry-sdk events (the last one is its latest); returns its id."""
        issue_id = str(100 + len(self._issues))
        self._issues[issue_id] = [sdk_event_to_api_event(e, group_id=issue_id) for e in sdk_events]
        return issue_id

    def latest(self, issue_id: str) -> dict[str, Any]:
        return self._issues[issue_id][-1]

    def fail(
        self,
        path: str,
        status: int,
        *,
        retry_after: str | None = None,
        location: str | None = None,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> None:
        """Answer `path` (after the prefix, no query) with `status` from now on."""
        headers = {"Content-Type": content_type}
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        if location is not None:
            headers["Location"] = location
        default = json.dumps({"detail": f"fake failure {status}"}).encode()
        self._failures[path] = _Failure(status, default if body is None else body, headers)

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    # -- answering -------------------------------------------------------------------------

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _answer(self, raw_path: str, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        parts = urlsplit(raw_path)
        if not parts.path.startswith(self.prefix + "/"):
            return _json(404, {"detail": "Not found"})
        path = parts.path[len(self.prefix) :]
        failure = self._failures.get(path)
        if failure is not None:
            return failure.status, failure.body, failure.headers
        if headers.get("authorization") != f"Bearer {self.token}":
            return _json(401, {"detail": "Invalid token"})
        query = dict(parse_qsl(parts.query))
        if m := _ISSUES.match(path):
            if (m.group(1), m.group(2)) != (self.org, self.project):
                return _json(404, {"detail": "The requested resource does not exist"})
            return self._issue_page(path, query, headers.get("host", ""))
        if m := _LATEST.match(path):
            if m.group(1) not in (None, self.org) or m.group(2) not in self._issues:
                return _json(404, {"detail": "The requested resource does not exist"})
            return _json(200, self.latest(m.group(2)))
        if m := _EVENT.match(path):
            found = [e for events in self._issues.values() for e in events if e["eventID"] == m.group(3)]
            if (m.group(1), m.group(2)) != (self.org, self.project) or not found:
                return _json(404, {"detail": "The requested resource does not exist"})
            return _json(200, found[0])
        return _json(404, {"detail": "Not found"})

    def _issue_page(self, path: str, query: dict[str, str], host: str) -> tuple[int, bytes, dict[str, str]]:
        per_page = max(1, min(int(query.get("limit") or 100), self.page_size, 100))
        offset = int((query.get("cursor") or "0:0:0").split(":")[1])
        ids = list(self._issues)
        page = [_issue_summary(i, self._issues[i], self.project) for i in ids[offset : offset + per_page]]
        # Sentry's cursors are "value:offset:is_prev"; its Link header names both neighbours.
        base = f"http://{host}{self.prefix}{path}?{urlencode({k: v for k, v in query.items() if k != 'cursor'})}"
        prev_cursor, next_cursor = f"0:{max(offset - per_page, 0)}:1", f"0:{offset + per_page}:0"
        link = ", ".join(
            f'<{base}&cursor={cursor}>; rel="{rel}"; results="{"true" if more else "false"}"; cursor="{cursor}"'
            for rel, cursor, more in (
                ("previous", prev_cursor, offset > 0),
                ("next", next_cursor, offset + per_page < len(ids)),
            )
        )
        status, body, headers = _json(200, page)
        return status, body, {**headers, "Link": link}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        fake: FakeSentryAPI = self.server.fake  # type: ignore[attr-defined]
        headers = {k.lower(): v for k, v in self.headers.items()}
        fake._record(RecordedRequest("GET", self.path, dict(self.headers.items()), self.client_address[0]))
        status, body, extra = fake._answer(self.path, headers)
        self.send_response(status)
        for key, value in extra.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


def _json(status: int, value: Any) -> tuple[int, bytes, dict[str, str]]:
    return status, json.dumps(value).encode(), {"Content-Type": "application/json"}


def _issue_summary(issue_id: str, events: list[dict[str, Any]], project: str) -> dict[str, Any]:
    latest = events[-1]
    return {
        "id": issue_id,
        "shortId": f"{project.upper()}-{issue_id}",
        "title": latest["title"],
        "culprit": latest["culprit"],
        "level": "error",
        "status": "unresolved",
        "type": "error",
        "count": str(len(events)),
        "userCount": 0,
        "firstSeen": events[0]["dateCreated"],
        "lastSeen": latest["dateCreated"],
        "metadata": latest["metadata"],
        "project": {"id": "1", "name": project, "slug": project},
        "permalink": f"https://sentry.example/organizations/acme/issues/{issue_id}/",
    }


# -- sentry-sdk event -> Sentry API event (what Sentry's event serializer returns) -----------------


def sdk_event_to_api_event(event: dict[str, Any], *, group_id: str) -> dict[str, Any]:
    exceptions = [v for v in (event.get("exception") or {}).get("values") or [] if isinstance(v, dict)]
    last = exceptions[-1] if exceptions else {}
    entries: list[dict[str, Any]] = []
    if exceptions:
        values = [_api_exception(v) for v in exceptions]
        has_system = any(f.get("inApp") for v in values for f in (v["stacktrace"] or {}).get("frames", []))
        entries.append(
            {"type": "exception", "data": {"values": values, "excOmitted": None, "hasSystemFrames": has_system}}
        )
    crumbs = (event.get("breadcrumbs") or {}).get("values") or []
    if crumbs:
        entries.append({"type": "breadcrumbs", "data": {"values": [_api_breadcrumb(c) for c in crumbs]}})
    if isinstance(event.get("request"), dict):
        entries.append({"type": "request", "data": _api_request(event["request"])})
    if isinstance(event.get("logentry"), dict):
        entries.append({"type": "message", "data": event["logentry"]})
    tags = [{"key": str(k), "value": str(v)} for k, v in _pairs(event.get("tags"))]
    # Sentry indexes these attributes as tags; the API event has no top-level environment.
    for key in ("environment", "level", "release", "server_name", "transaction", "logger"):
        if event.get(key) and all(t["key"] != key for t in tags):
            tags.append({"key": key, "value": str(event[key])})
    title = f"{last.get('type')}: {last.get('value')}" if last else str(event.get("message") or "<unlabeled event>")
    frames = ((last.get("stacktrace") or {}).get("frames") or []) if last else []
    created = _iso(event.get("timestamp"))
    api: dict[str, Any] = {
        "id": event["event_id"],
        "eventID": event["event_id"],
        "groupID": group_id,
        "projectID": "1",
        "type": "error",
        "platform": event.get("platform"),
        "dateCreated": created,
        "dateReceived": created,
        "title": title,
        "message": "",
        "culprit": frames[-1].get("function") if frames else None,
        "location": frames[-1].get("filename") if frames else None,
        "metadata": {"type": last.get("type"), "value": last.get("value")} if last else {"title": title},
        "entries": entries,
        "tags": tags,
        "user": event.get("user"),
        "contexts": event.get("contexts") or {},
        "context": event.get("extra") or {},
        "packages": event.get("modules") or {},
        "sdk": {"name": (event.get("sdk") or {}).get("name"), "version": (event.get("sdk") or {}).get("version")},
        "release": _api_release(event.get("release"), created),
        "dist": event.get("dist"),
        # Sentry's computed grouping hashes, not the SDK's `fingerprint`
        "fingerprints": [hashlib.md5(title.encode(), usedforsecurity=False).hexdigest()],
        "errors": [],
        "_meta": {},
    }
    api["size"] = len(json.dumps(api))
    return api


def _api_exception(value: dict[str, Any]) -> dict[str, Any]:
    stack = value.get("stacktrace")
    api_stack = None
    if isinstance(stack, dict):
        frames = [_api_frame(f) for f in stack.get("frames") or []]
        api_stack = {
            "frames": frames,
            "framesOmitted": stack.get("frames_omitted"),
            "registers": stack.get("registers"),
            "hasSystemFrames": any(f["inApp"] for f in frames),
        }
    return {
        "type": value.get("type"),
        "value": str(value["value"]) if value.get("value") else None,
        "mechanism": value.get("mechanism"),
        "threadId": value.get("thread_id"),
        "module": value.get("module"),
        "stacktrace": api_stack,
        "rawStacktrace": None,
    }


def _api_frame(frame: dict[str, Any]) -> dict[str, Any]:
    return {
        "filename": frame.get("filename"),
        "absPath": frame.get("abs_path"),
        "module": frame.get("module"),
        "package": frame.get("package"),
        "platform": frame.get("platform"),
        "instructionAddr": frame.get("instruction_addr"),
        "symbolAddr": frame.get("symbol_addr"),
        "function": frame.get("function"),
        "rawFunction": frame.get("raw_function"),
        "symbol": frame.get("symbol"),
        "context": _api_context(frame),
        "lineNo": frame.get("lineno"),
        "colNo": frame.get("colno"),
        "inApp": frame.get("in_app"),
        "trust": None,
        "errors": None,
        "vars": frame.get("vars"),
    }


def _api_context(frame: dict[str, Any]) -> list[list[Any]]:
    """[[lineno, line], ...] over pre_context, context_line and post_context, as Sentry lists it."""
    lineno, line = frame.get("lineno"), frame.get("context_line")
    pre, post = frame.get("pre_context") or [], frame.get("post_context") or []
    if lineno is None or (line is None and not (pre or post)):
        return []
    start = int(lineno) - len(pre)
    lines = [*pre, line, *post]
    return [[start + i, text] for i, text in enumerate(lines)]


def _api_request(request: dict[str, Any]) -> dict[str, Any]:
    query = request.get("query_string")
    return {
        "method": request.get("method"),
        "url": request.get("url"),
        "query": [list(p) for p in parse_qsl(query, keep_blank_values=True)]
        if isinstance(query, str)
        else _pairs(query),
        "fragment": request.get("fragment"),
        "data": request.get("data"),
        "headers": sorted(_pairs(request.get("headers"))),
        "cookies": sorted(_pairs(request.get("cookies"))),
        "env": request.get("env") or None,
        "inferredContentType": _pairs_dict(request.get("headers")).get("Content-Type"),
    }


def _api_breadcrumb(crumb: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": crumb.get("type") or "default",
        "category": crumb.get("category"),
        "level": crumb.get("level") or "info",
        "message": crumb.get("message"),
        "data": crumb.get("data"),
        "timestamp": _iso(crumb.get("timestamp")),
        "event_id": None,
    }


def _api_release(release: Any, created: str | None) -> dict[str, Any] | None:
    if not isinstance(release, str) or not release:
        return None
    return {
        "version": release,
        "shortVersion": release,
        "dateCreated": created,
        "dateReleased": None,
        "authors": [],
        "commitCount": 0,
        "deployCount": 0,
        "newGroups": 0,
        "ref": None,
        "url": None,
    }


def _pairs(value: Any) -> list[list[Any]]:
    if isinstance(value, dict):
        return [[k, v] for k, v in value.items()]
    if isinstance(value, list):
        return [list(p) for p in value if isinstance(p, (list, tuple)) and len(p) == 2]
    return []


def _pairs_dict(value: Any) -> dict[str, Any]:
    return {str(k): v for k, v in _pairs(value)}


def _iso(value: Any) -> str | None:
    """An SDK timestamp (epoch seconds or ISO text) as Sentry's API writes dates."""
    if isinstance(value, (int, float)):
        when = datetime.fromtimestamp(value, UTC)
    elif isinstance(value, str):
        when = datetime.fromisoformat(value)
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
    else:
        return None
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
