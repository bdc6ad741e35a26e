"""Request replay: a web service's production request sent again through its framework's test client.

When no frame on the path can be called with rebuilt arguments (a route handler takes the framework's
`Request`, a dependency reads the session), the event's scrubbed `request` still says what production
sent. The repository's application object is found statically at the deployed commit (a module-level
`app = FastAPI(...)`, `Starlette(...)` or `Flask(...)`; the one whose module is on the crash path first),
and the test sends each distinct production request through `starlette.testclient.TestClient` (ASGI) or
Flask's test client with server errors raised, so the production exception surfaces in the test.

Production data is hostile: only a validated method, a path and JSON-native values become literals in the
test; header values scrubbed to `[Filtered]` and transport headers (host, length, tracing) are left out.
"""

from __future__ import annotations

import ast
import keyword
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from prodloop.tools.engine._shape import pairs_to_dict
from prodloop.tools.engine.git_repo import GitRepo
from prodloop.tools.locate.source_map import module_of
from prodloop.tools.reproduce.call_plan import PlannedCall, RebuiltInput
from prodloop.tools.reproduce.reconstruct import Unusable

Framework = Literal["asgi", "flask"]

# (module, class) -> how its apps are driven in a test.
_APP_CLASSES: dict[tuple[str, str], Framework] = {
    ("fastapi", "FastAPI"): "asgi",
    ("fastapi.applications", "FastAPI"): "asgi",
    ("starlette.applications", "Starlette"): "asgi",
    ("flask", "Flask"): "flask",
    ("flask.app", "Flask"): "flask",
}
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Set by the client or the transport, or by sentry-sdk itself: never part of what the request asked for.
_TRANSPORT_HEADERS = frozenset(
    {"host", "content-length", "connection", "accept-encoding", "transfer-encoding", "sentry-trace", "baggage",
     "traceparent", "tracestate", "keep-alive", "upgrade", "cookie"}
)  # fmt: skip
_FILTERED = "[Filtered]"
_WHOLE = 1_000_000  # header values are sent as they came, never cut
# Names the replay test defines or imports itself: an application bound to one of them would be shadowed.
_HELPER_NAMES = frozenset({"json", "pytest", "replay", "_content", "TestClient", "method", "path", "query", "headers",
                           "body", "exc", "result", "expected"})  # fmt: skip
PARAMS = [("method", "pos"), ("path", "pos"), ("query", "pos"), ("headers", "pos"), ("body", "pos")]


@dataclass(frozen=True)
class App:
    module: str
    name: str
    framework: Framework


@dataclass(frozen=True)
class Replayed:
    """One production request as the test's arguments: each value is JSON-native."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: dict[str, Any]
    left_out: tuple[str, ...]

    def values(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path, "query": self.query, "headers": self.headers,
                "body": self.body}  # fmt: skip


def find_apps(repo: GitRepo, commit: str, near: Iterable[str]) -> list[App]:
    """The repository's module-level application objects, those defined in a file of `near` first."""
    found = repo.memo(("web-apps", commit), lambda: _scan(repo, commit))
    preferred = {module_of(p) for p in near}
    return sorted(found, key=lambda app: (app.module not in preferred, app.module.count("."), app.module))


def _scan(repo: GitRepo, commit: str) -> list[App]:
    out: list[App] = []
    for path in repo.files(commit):
        module = module_of(path)
        if not path.endswith(".py") or any(p.startswith("test") for p in path.split("/")):
            continue
        if not all(p.isascii() and p.isidentifier() and not keyword.iskeyword(p) for p in module.split(".")):
            continue  # a file name is the repository's text: only a plain ASCII dotted name becomes an import
        text = repo.read(commit, path) or ""
        if not any(word in text for word in ("FastAPI", "Starlette", "Flask")):
            continue
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            continue
        out += [App(module, name, kind) for name, kind in _apps_in(tree) if name not in _HELPER_NAMES]
    return out


def _apps_in(tree: ast.Module) -> list[tuple[str, Framework]]:
    names: dict[str, tuple[str, str]] = {}  # local name -> (module, attribute or "")
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                names[alias.asname or alias.name] = (node.module, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                bound = alias.name if alias.asname else alias.name.split(".")[0]
                names[alias.asname or bound] = (bound, "")
    out: list[tuple[str, Framework]] = []
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
        if isinstance(node, ast.AnnAssign):
            target = node.target
        value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
        if not isinstance(target, ast.Name) or not isinstance(value, ast.Call):
            continue
        kind = _framework_of(value.func, names)
        if kind is not None:
            out.append((target.id, kind))
    return out


def _framework_of(func: ast.expr, names: dict[str, tuple[str, str]]) -> Framework | None:
    if isinstance(func, ast.Name) and func.id in names:
        return _APP_CLASSES.get(names[func.id])
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in names:
        module, attribute = names[func.value.id]
        return _APP_CLASSES.get((f"{module}.{attribute}" if attribute else module, func.attr))
    return None


def replayed(event: dict[str, Any]) -> Replayed:
    """The event's request as arguments of the test, or Unusable with what is missing."""
    request = event.get("request")
    if not isinstance(request, dict):
        raise Unusable("the event carries no request")
    method = request.get("method")
    if not isinstance(method, str) or method.upper() not in _METHODS:
        raise Unusable("the request's method is missing or not an HTTP method")
    url = request.get("url")
    if not isinstance(url, str) or not url:
        raise Unusable("the request's URL is missing")
    split = urlsplit(url)
    path = split.path or "/"
    if not path.startswith("/") or any(ord(c) < 0x20 for c in path):
        raise Unusable("the request's URL has no usable path")
    left_out: list[str] = []
    query = _pairs(request.get("query_string")) or _pairs(split.query)
    if any(_FILTERED in v for _, v in query):
        left_out.append("query values scrubbed to [Filtered] (sent as they are)")
    headers: dict[str, str] = {}
    for name, value in pairs_to_dict(request.get("headers"), _WHOLE).items():
        lowered = name.lower()
        if lowered in _TRANSPORT_HEADERS:
            continue
        if _FILTERED in value:
            left_out.append(f"header {lowered} (scrubbed)")
            continue
        headers[lowered] = value
    body = _body(request.get("data"), headers.get("content-type", ""), method.upper())
    if body is None:
        left_out.append("the body (the event holds none)")
    return Replayed(method.upper(), path, query, headers, body or {}, tuple(left_out))


def _pairs(raw: Any) -> list[tuple[str, str]]:
    """A query string as sentry-sdk and relay send it: a string, a dict or a list of pairs (a key may repeat)."""
    if isinstance(raw, str):
        return parse_qsl(raw, keep_blank_values=True)
    if isinstance(raw, dict):
        raw = list(raw.items())
    if not isinstance(raw, list):
        return []
    return [(k, v) for k, v in (p for p in raw if isinstance(p, list | tuple) and len(p) == 2)
            if isinstance(k, str) and isinstance(v, str)]  # fmt: skip


def _body(data: Any, content_type: str, method: str) -> dict[str, Any] | None:
    if data is None or data == "":
        return {} if method in {"GET", "HEAD", "DELETE", "OPTIONS"} else None
    if not _json_native(data):
        raise Unusable("the request body is not plain data")
    if data == _FILTERED:
        raise Unusable("the request body was scrubbed ([Filtered])")
    if isinstance(data, dict | list) and "json" in content_type:
        return {"json": data}
    if isinstance(data, dict) and all(isinstance(v, str) for v in data.values()):
        return {"data": data}
    if isinstance(data, str):
        return {"content": data}
    return {"json": data}


def _json_native(value: Any, depth: int = 0) -> bool:
    if depth > 20:
        return False
    if value is None or isinstance(value, bool | int | str):
        return True
    if isinstance(value, float):
        return value == value and value not in (float("inf"), float("-inf"))
    if isinstance(value, list):
        return all(_json_native(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_native(v, depth + 1) for k, v in value.items())
    return False


def planned_replay(app: App, request: Replayed) -> PlannedCall:
    """The call a replay test makes: `replay(method, path, query, headers, body)` on `app`."""
    values = request.values()
    inputs = [RebuiltInput(parameter=name, value=repr(values[name]), source="request") for name, _ in PARAMS]
    return PlannedCall(
        module=app.module, callee="replay", import_name=app.name, params=list(PARAMS), inputs=inputs,
        values=values, helper=app.framework,
    )  # fmt: skip


def helper_source(framework: str, app_name: str) -> list[str]:
    """The test's `replay` function for the framework (prodloop's own text; only `app_name`, a checked
    identifier, comes from the repository)."""
    if not app_name.isidentifier():
        raise ValueError(f"not an identifier: {app_name!r}")
    if framework == "asgi":
        return [
            "def replay(method, path, query, headers, body):",
            '    """Send one production request again; a server error raises, as it did in production."""',
            f"    with TestClient({app_name}, raise_server_exceptions=True) as client:",
            "        response = client.request(method, path, params=query, headers=headers, **body)",
            "    return response.status_code, _content(response)",
            *_CONTENT,
        ]
    if framework == "flask":
        return [
            "def replay(method, path, query, headers, body):",
            '    """Send one production request again; a server error raises, as it did in production."""',
            f'    {app_name}.config["PROPAGATE_EXCEPTIONS"] = True',
            f"    client = {app_name}.test_client()",
            "    body = {('data' if k == 'content' else k): v for k, v in body.items()}  # werkzeug says data=",
            "    response = client.open(path=path, method=method, query_string=query, headers=headers, **body)",
            "    return response.status_code, _content(response)",
            *_CONTENT,
        ]
    raise ValueError(f"unknown framework {framework!r}")


_CONTENT = [
    "",
    "",
    "def _content(response):",
    '    """The response body as data when it is JSON, else as text."""',
    "    text = response.get_data(as_text=True) if hasattr(response, 'get_data') else response.text",
    "    try:",
    "        return json.loads(text)",
    "    except ValueError:",
    "        return text",
]


def helper_imports(framework: str) -> list[str]:
    base = ["import json"]
    return base + (["from starlette.testclient import TestClient"] if framework == "asgi" else [])
