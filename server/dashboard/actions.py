"""The actions only a person owns, each a confirmation page and a POST: what it is called, what it asks, and the
existing function that does it (who is the session's person, why the form's required reason)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prodloop.server.context import AppContext
from prodloop.server.errors import InvalidArgument
from prodloop.server.store import signals
from prodloop.tools.budget import reset
from prodloop.tools.observe.andon import release


@dataclass(frozen=True, slots=True)
class Action:
    title: str
    question: str
    done: str
    run: Callable[[AppContext, int, str, str], None]
    back: Callable[[int], str]  # the page to return to, under /dashboard


def _decide(decision: str) -> Callable[[AppContext, int, str, str], None]:
    def run(ctx: AppContext, issue_id: int, who: str, why: str) -> None:
        if not why.strip():
            raise InvalidArgument("why", "a person's decision needs a reason", "write why in the form")
        signals.decide(ctx.store, issue_id, decision, who=who, why=why, at=ctx.clock.now())

    return run


def _release(ctx: AppContext, cord_id: int, who: str, why: str) -> None:
    release(ctx.store, ctx.clock, cord_id, who=who, why=why)


def _reset(ctx: AppContext, issue_id: int, who: str, why: str) -> None:
    reset(ctx.store, ctx.settings.budgets, ctx.clock, issue_id, who=who, why=why)


ACTIONS: dict[str, Action] = {
    "approve": Action(
        "Approve issue {id}", "Clear issue {id} for agent work?", "Issue {id} approved", _decide("approved"),
        lambda i: f"/issues/{i}",
    ),
    "reject": Action(
        "Reject issue {id}", "Refuse agent work on issue {id}?", "Issue {id} rejected", _decide("rejected"),
        lambda i: f"/issues/{i}",
    ),
    "release": Action(
        "Release andon cord {id}", "Lift the quarantine of andon cord {id}?", "Andon cord {id} released", _release,
        lambda i: "/",
    ),
    "reset": Action(
        "Reset the budget of issue {id}", "Reset every counter of issue {id}'s budget?", "Budget of issue {id} reset",
        _reset, lambda i: f"/issues/{i}",
    ),
}  # fmt: skip
