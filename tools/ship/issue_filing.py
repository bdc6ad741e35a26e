"""Filing a triaged issue for people: a GitHub issue (PyGithub), or a markdown file beside the store without a
token. Only an actionable issue, or one a person approved; once per issue (the store remembers where it went, and
on GitHub a marker in the body finds an issue filed before, even from another store).

Every production value in the body is scrubbed at ingest, capped here, and shown inside fenced code blocks, so an
event cannot mention people, link or format the issue; the token goes only into PyGithub's auth.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel

from prodloop.server.clock import Clock
from prodloop.server.errors import NotFoundError, TriageRefused
from prodloop.server.ingest.grouping import exceptions, frames_of
from prodloop.server.settings import Settings
from prodloop.server.store import Store, signals
from prodloop.tools.engine._shape import cap, iso
from prodloop.tools.engine.git_repo import GitRepo
from prodloop.tools.ship import github

LABELS = ["prodloop", "production-error"]


class FiledIssue(BaseModel):
    issue_id: int
    mode: Literal["github", "local"]
    url: str | None
    number: int | None
    path: str | None
    already: bool


def file_signal(store: Store, repo: GitRepo, settings: Settings, clock: Clock, *, issue_id: int) -> FiledIssue:
    signal = signals.get(store, issue_id)
    if signal is None:
        raise NotFoundError("triaged issue", str(issue_id), "run prodloop triage first; it records each issue")
    if signal.decision == "rejected" or (signal.classification != "actionable" and signal.decision != "approved"):
        missing = "; ".join(signal.report.get("missing", [])[:3]) or "a person rejected it"
        raise TriageRefused(issue_id, "filing", f"it is not actionable ({missing})",
                            f"a person may approve it first: prodloop triage approve {issue_id}")  # fmt: skip
    before = signals.filed(store, issue_id)
    if before is not None:
        return FiledIssue(issue_id=issue_id, already=True, **before)
    issue = store.get_issue(issue_id)
    marker = f"<!-- prodloop:issue={issue.fingerprint} -->"
    title = f"[prodloop] {cap(issue.title, 150)} (priority {signal.priority:.0f})"
    body = _body(store, issue_id, signal, marker)
    where: dict[str, Any]
    if settings.github_token is not None:
        existing = next((i for i in github.open_issues(settings, repo.path) if marker in i[2]), None)
        if existing is not None:
            url, number = existing[3], existing[0]
        else:
            url, number = github.create_issue(settings, repo.path, title=title, body=body, labels=LABELS)
        where = {"mode": "github", "url": url, "number": number, "path": None}
    else:
        target = settings.resolved_data_dir / "issues" / f"issue-{issue_id}.md"
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        target.write_text(f"# {title}\n\n{body}", encoding="utf-8")
        target.chmod(0o600)
        where = {"mode": "local", "url": None, "number": None, "path": str(target)}
    signals.set_filed(store, issue_id, where)
    return FiledIssue(issue_id=issue_id, already=False, **where)


def _fenced(value: Any, limit: int) -> str:
    text = (cap(value, limit) or "").replace("```", "'''")
    return f"```text\n{text}\n```"


def _body(store: Store, issue_id: int, signal: signals.SignalRow, marker: str) -> str:
    issue = store.get_issue(issue_id)
    event = json.loads(store.latest_event(issue_id).payload)
    chain = exceptions(event)
    crash = chain[-1] if chain else {}
    frames = frames_of(crash)[-5:]
    crumbs = [c for c in ((event.get("breadcrumbs") or {}).get("values") or []) if isinstance(c, dict)][-5:]
    attribution = signal.report.get("attribution", [])
    releases = (
        store.reader()
        .execute(
            "SELECT DISTINCT release FROM issue_releases WHERE issue_id = ? AND release != '' ORDER BY last_seen DESC"
            " LIMIT 10",
            (issue_id,),
        )
        .fetchall()
    )
    lines = [
        f"Production error **{issue_id}** found by prodloop triage: {signal.classification}, priority "
        f"{signal.priority:.0f}, confidence {signal.confidence:.2f}, tier {signal.tier}.",
        "",
        f"- events: {issue.event_count}, users: {issue.user_count}, first seen {iso(issue.first_seen)}, last seen "
        f"{iso(issue.last_seen)}; onset {iso(signal.onset) if signal.onset else 'unknown'}",
        "",
        "Releases and environment:",
        _fenced(", ".join(str(r[0]) for r in releases) + f"\nenvironment: {event.get('environment')}", 800),
        "",
        "Exception (scrubbed):",
        _fenced(f"{crash.get('type')}: {crash.get('value')}", 600),
        "",
        "Innermost frames:",
        _fenced("\n".join(f"{f.get('filename')}:{f.get('lineno')} in {f.get('function')}" for f in frames), 1500),
        "",
        "Last breadcrumbs:",
        _fenced("\n".join(f"[{c.get('category')}] {c.get('message')}" for c in crumbs), 1500),
        "",
        "Likely causes:",
        _fenced("\n".join(f"{a['cause']} ({a['confidence']}): {'; '.join(a['evidence'])}" for a in attribution), 2000),
        "",
        f"Next: an agent can take it through prodloop (issue {issue_id}) once it is cleared.",
        "",
        marker,
    ]
    return "\n".join(lines)
