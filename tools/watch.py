"""One watch pass over the closing stage of the loop, for `prodloop watch` (cron, CI), the background pass of
`serve --http` and the GitHub merge webhook: follow every PR to its merge and deploy and judge it, pull the andon
cord on deploys that made things worse, and tell the authors of attributed changes (when set). The exit code says
what needs a person or an agent: 6 an andon cord is active, 5 a recent deploy could not be checked (its commits are
not in the repository), 4 a fix had no effect or regressed (another iteration,
or a halted lineage), 3 a deployed fix is still being watched, 0 every deployed fix is fixed (or nothing to watch).
"""

from __future__ import annotations

import logging
import re
from typing import Any, Literal

from pydantic import BaseModel, Field

from prodloop.server.clock import Clock
from prodloop.server.errors import ProdloopError
from prodloop.server.ingest.scrub import secret_findings
from prodloop.server.settings import Settings
from prodloop.server.store import Store, lineage
from prodloop.tools.engine._shape import cap, untrusted_md
from prodloop.tools.engine.git_repo import GitRepo
from prodloop.tools.observe.andon import CordView, check_deploys
from prodloop.tools.observe.post_merge import LineageStep, follow_lineages

logger = logging.getLogger("prodloop.tools")
Outcome = Literal["andon", "unchecked", "no_effect", "watching", "fixed", "idle"]
EXIT_CODES: dict[Outcome, int] = {"idle": 0, "fixed": 0, "watching": 3, "no_effect": 4, "unchecked": 5, "andon": 6}


class WatchReport(BaseModel):
    outcome: Outcome
    exit_code: int
    lineages: list[LineageStep]
    cords_pulled: list[CordView]
    active_cords: int
    unchecked_deploys: list[str] = Field(description="deploys whose commits are not here: the andon could not look")
    notified: list[dict[str, Any]] = Field(default_factory=list, description="authors told on their PRs")


def watch_pass(store: Store, repo: GitRepo, settings: Settings, clock: Clock) -> WatchReport:
    steps = follow_lineages(store, repo, settings, clock)
    pulled, unchecked = check_deploys(store, repo, settings, clock)
    active = len(lineage.cords(store, active_only=True))
    notified = _notify_authors(store, settings) if settings.post_merge.notify_authors else []
    verdicts = {s.verdict for s in steps if s.stage == "deployed"}
    outcome: Outcome = (
        "andon" if active else "unchecked" if unchecked else "no_effect" if verdicts & {"no_effect", "regressed"} else
        "watching" if "watching" in verdicts else "fixed" if "fixed" in verdicts else "idle"
    )  # fmt: skip
    return WatchReport(outcome=outcome, exit_code=EXIT_CODES[outcome], lineages=steps, cords_pulled=pulled,
                       active_cords=active, unchecked_deploys=unchecked, notified=notified)  # fmt: skip


def _notify_authors(store: Store, settings: Settings) -> list[dict[str, Any]]:
    """Comment on the PR that introduced an attributed error (GitHub token needed), once per issue."""
    if settings.github_token is None:
        return []
    from prodloop.tools.ship import github

    done = []
    for issue_id in lineage.unnotified_attributions(store):
        found = lineage.attribution(store, issue_id)
        if found is None:
            continue
        issue = store.get_issue(issue_id)
        try:
            numbers = github.pulls_for_commit(settings, settings.repo, found["commit"])
            if not numbers:
                lineage.set_notified(store, issue_id, {"skipped": "no PR introduced the commit"})
                continue
            body = (
                f"prodloop: this error started {found['minutes_after']:.0f} minutes after the deploy that shipped "
                f"{found['commit'][:12]} (by `{_plain(found['author'])}`), which changed its crash path.\n\n"
                f"Issue {issue_id}, {issue.event_count} events, {issue.user_count} users:\n"
                f"{untrusted_md(issue.title, 300)}"
            )
            if secret_findings(body):  # a secret format never goes to GitHub
                lineage.set_notified(store, issue_id, {"skipped": "the comment would carry a secret"})
                continue
            url = github.comment_on_pull(settings, settings.repo, numbers[0], body)
            lineage.set_notified(store, issue_id, {"pull_request": numbers[0], "comment": url})
            done.append({"issue_id": issue_id, "pull_request": numbers[0], "comment": url})
        except ProdloopError as exc:  # the next pass tries again
            logger.warning("author of issue %s not told: %s", issue_id, str(exc)[:200])
    return done


def _plain(name: str) -> str:
    """A git author name for Markdown: no mention, link, tag or code-span breaking characters."""
    return re.sub(r"[`@<>\[\]()*_#|\\]", "", cap(name, 80) or "")
