"""A real HTTP server on 127.0.0.1 speaking the part of GitHub's REST API that open_pr calls.

    GET  /repos/{owner}/{repo}                      the repository
    POST /repos/{owner}/{repo}/pulls                create a pull request
    POST /repos/{owner}/{repo}/issues/{n}/labels    label it (a pull request or an issue)
    GET  /repos/{owner}/{repo}/pulls/{n}            read it back
    POST /repos/{owner}/{repo}/issues               file an issue
    GET  /repos/{owner}/{repo}/issues               open issues (pull requests among them, as GitHub lists them)
    POST /repos/{owner}/{repo}/issues/{n}/comments  comment on an issue or a pull request
    GET  /repos/{owner}/{repo}/commits/{sha}/pulls  the pull requests that introduced a commit

It checks the bearer token, records every request with its JSON body, and answers with the
fields PyGithub reads. Mounted under /api/v3 like GitHub Enterprise. Tests set what GitHub
would know (`merge_pull`, `link_commit`) and make a path fail (`fail`).
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

_PREFIX = "/api/v3"
_REPO = re.compile(r"^/repos/([^/]+)/([^/]+)$")
_PULLS = re.compile(r"^/repos/([^/]+)/([^/]+)/pulls$")
_PULL = re.compile(r"^/repos/([^/]+)/([^/]+)/pulls/(\d+)$")
_LABELS = re.compile(r"^/repos/([^/]+)/([^/]+)/issues/(\d+)/labels$")
_ISSUES = re.compile(r"^/repos/([^/]+)/([^/]+)/issues$")
_COMMENTS = re.compile(r"^/repos/([^/]+)/([^/]+)/issues/(\d+)/comments$")
_COMMIT_PULLS = re.compile(r"^/repos/([^/]+)/([^/]+)/commits/([^/]+)/pulls$")


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class FakeGitHub:
    def __init__(self, *, token: str, owner: str = "acme", repo: str = "shop") -> None:
        self.token = token
        self.owner = owner
        self.repo = repo
        self.requests: list[RecordedRequest] = []
        self.pulls: dict[int, dict[str, Any]] = {}
        self.issues: dict[int, dict[str, Any]] = {}  # shares its numbers with pulls, as on GitHub
        self.comments: dict[int, list[str]] = {}  # issue or pull request number -> comment bodies, in order
        self.commit_pulls: dict[str, list[int]] = {}  # commit sha -> the pull requests that introduced it
        self.failures: dict[str, tuple[int, str]] = {}  # path under the prefix -> (status, message) it answers
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}{_PREFIX}"

    def __enter__(self) -> FakeGitHub:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        path = handler.path.split("?", 1)[0]
        with self._lock:
            self.requests.append(RecordedRequest(method, path, dict(handler.headers), body))
        if (
            handler.headers.get("Authorization") != f"token {self.token}"
            and handler.headers.get("Authorization") != f"Bearer {self.token}"
        ):
            return self._send(handler, 401, {"message": "Bad credentials"})
        if not path.startswith(_PREFIX):
            return self._send(handler, 404, {"message": "Not Found"})
        path = path[len(_PREFIX) :]
        if path in self.failures:
            status, message = self.failures[path]
            return self._send(handler, status, {"message": message})
        for pattern, route in (
            (_REPO, self._repo),
            (_PULLS, self._create_pull),
            (_PULL, self._get_pull),
            (_LABELS, self._labels),
            (_ISSUES, self._issues),
            (_COMMENTS, self._comment),
            (_COMMIT_PULLS, self._commit_pulls),
        ):
            match = pattern.match(path)
            if match:
                if (match.group(1), match.group(2)) != (self.owner, self.repo):
                    return self._send(handler, 404, {"message": "Not Found"})
                status, data = route(method, match, body)
                return self._send(handler, status, data)
        return self._send(handler, 404, {"message": "Not Found"})

    def _repo_json(self) -> dict[str, Any]:
        full = f"{self.owner}/{self.repo}"
        return {
            "id": 1, "name": self.repo, "full_name": full, "url": f"{self.base_url}/repos/{full}",
            "html_url": f"https://github.example/{full}", "default_branch": "main", "owner": {"login": self.owner},
        }  # fmt: skip

    def _repo(self, method: str, match: re.Match[str], body: Any) -> tuple[int, Any]:
        return (200, self._repo_json()) if method == "GET" else (405, {"message": "Method Not Allowed"})

    def _create_pull(self, method: str, match: re.Match[str], body: Any) -> tuple[int, Any]:
        if method != "POST" or not isinstance(body, dict):
            return 405, {"message": "Method Not Allowed"}
        missing = [k for k in ("title", "head", "base") if not body.get(k)]
        if missing:
            return 422, {"message": f"Validation Failed: missing {missing}"}
        if any(p["head"]["ref"] == body["head"] for p in self.pulls.values()):
            return 422, {"message": f"A pull request already exists for {self.owner}:{body['head']}."}
        return 201, self._new_pull(body)

    def _new_pull(self, body: dict[str, Any]) -> dict[str, Any]:
        full = f"{self.owner}/{self.repo}"
        with self._lock:
            number = len(self.pulls) + len(self.issues) + 1
            pull = {
                "id": 100 + number, "number": number, "state": "open", "title": body["title"], "body": body.get("body"),
                "draft": bool(body.get("draft")), "url": f"{self.base_url}/repos/{full}/pulls/{number}",
                "html_url": f"https://github.example/{full}/pull/{number}",
                "issue_url": f"{self.base_url}/repos/{full}/issues/{number}",
                "head": {"ref": body["head"]}, "base": {"ref": body["base"]}, "labels": [],
                "merged": False, "merge_commit_sha": None, "merged_at": None,
            }  # fmt: skip
            self.pulls[number] = pull
        return pull

    def _get_pull(self, method: str, match: re.Match[str], body: Any) -> tuple[int, Any]:
        pull = self.pulls.get(int(match.group(3)))
        return (200, pull) if pull else (404, {"message": "Not Found"})

    def _issues(self, method: str, match: re.Match[str], body: Any) -> tuple[int, Any]:
        if method == "GET":
            listed = [i for i in self.issues.values() if i["state"] == "open"]
            listed += [{**p, "pull_request": {"url": p["url"]}} for p in self.pulls.values()]
            return 200, sorted(listed, key=lambda i: -i["number"])
        if not isinstance(body, dict) or not body.get("title"):
            return 422, {"message": "Validation Failed: missing title"}
        return 201, self._new_issue(str(body["title"]), body.get("body"), list(body.get("labels") or []))

    def _comment(self, method: str, match: re.Match[str], body: Any) -> tuple[int, Any]:
        number = int(match.group(3))
        if method != "POST":
            return 405, {"message": "Method Not Allowed"}
        if number not in self.pulls and number not in self.issues:
            return 404, {"message": "Not Found"}
        if not isinstance(body, dict) or not isinstance(body.get("body"), str) or not body["body"]:
            return 422, {"message": "Validation Failed: body is missing"}
        with self._lock:
            said = self.comments.setdefault(number, [])
            said.append(body["body"])
            ident = 9000 + sum(len(c) for c in self.comments.values())
        full = f"{self.owner}/{self.repo}"
        return 201, {
            "id": ident, "body": body["body"], "url": f"{self.base_url}/repos/{full}/issues/comments/{ident}",
            "html_url": f"https://github.example/{full}/pull/{number}#issuecomment-{ident}",
            "issue_url": f"{self.base_url}/repos/{full}/issues/{number}", "user": {"login": "prodloop-bot"},
        }  # fmt: skip

    def _commit_pulls(self, method: str, match: re.Match[str], body: Any) -> tuple[int, Any]:
        sha = match.group(3).lower()
        if sha not in self.commit_pulls:  # GitHub's answer for a commit it does not hold
            return 422, {"message": f"No commit found for SHA: {sha}"}
        return 200, [self.pulls[n] for n in self.commit_pulls[sha] if n in self.pulls]

    def add_pull(self, head: str, base: str = "main", title: str = "A change") -> int:
        """A pull request a person opened."""
        return int(self._new_pull({"title": title, "head": head, "base": base})["number"])

    def merge_pull(self, number: int, merge_commit_sha: str, merged_at: str = "2026-05-01T12:00:00Z") -> None:
        """GitHub's record of a merge: the PR closed, merged, with its merge commit."""
        with self._lock:
            self.pulls[number].update(
                state="closed", merged=True, merge_commit_sha=merge_commit_sha, merged_at=merged_at,
                closed_at=merged_at,
            )  # fmt: skip

    def link_commit(self, sha: str, *numbers: int) -> None:
        """Commit `sha` came in through these pull requests."""
        with self._lock:
            self.commit_pulls[sha.lower()] = list(numbers)

    def fail(self, path: str, status: int, message: str = "Server Error") -> None:
        """Answer every request to `path` (under the API prefix, e.g. `/repos/acme/shop/pulls/3`) with `status`."""
        self.failures[path] = (status, message)

    def add_user_issue(self, title: str, body: str) -> int:
        """An issue a user filed by hand (no prodloop marker)."""
        return int(self._new_issue(title, body, [])["number"])

    def _new_issue(self, title: str, body: str | None, labels: list[str]) -> dict[str, Any]:
        full = f"{self.owner}/{self.repo}"
        with self._lock:
            number = len(self.pulls) + len(self.issues) + 1
            issue = {
                "id": 500 + number, "number": number, "state": "open", "title": title, "body": body,
                "url": f"{self.base_url}/repos/{full}/issues/{number}",
                "html_url": f"https://github.example/{full}/issues/{number}",
                "labels": [{"name": n} for n in labels],
            }  # fmt: skip
            self.issues[number] = issue
        return issue

    def _labels(self, method: str, match: re.Match[str], body: Any) -> tuple[int, Any]:
        pull = self.pulls.get(int(match.group(3))) or self.issues.get(int(match.group(3)))
        if pull is None or not isinstance(body, list):
            return 404, {"message": "Not Found"}
        pull["labels"] += [{"name": name} for name in body]
        return 200, pull["labels"]

    def _send(self, handler: BaseHTTPRequestHandler, status: int, data: Any) -> None:
        raw = json.dumps(data).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(raw)))
        handler.end_headers()
        handler.wfile.write(raw)
