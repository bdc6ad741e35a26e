"""Routes of the dashboard, mounted at `/dashboard` on the HTTP app.

Access: `/dashboard/login` takes the MCP bearer token (compared in constant time) and the person's name, once, and
sets a session cookie (HttpOnly, SameSite=Strict, Path=/dashboard, Secure over https) naming a random session held
server-side; every other page redirects to the login without it. Each action is a confirmation page whose POST form
carries the session's CSRF token: without it, or with another, the POST is refused with 403."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router

from prodloop.server.context import AppContext
from prodloop.server.dashboard import views
from prodloop.server.dashboard.actions import ACTIONS
from prodloop.server.dashboard.sessions import COOKIE, Session, Sessions, csrf_matches, token_matches
from prodloop.server.errors import NotFoundError, ProdloopError

logger = logging.getLogger("prodloop.server")

PREFIX = "/dashboard"
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self';"
    " frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

_CSRF_REFUSED = "The form's CSRF token is missing or wrong: open the action again from the dashboard."
_WHY_NEEDED = "Write why: it is kept with the decision."

Page = Callable[[Request, Session], Awaitable[Response]]


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    env.globals["root"] = PREFIX
    env.filters["when"] = lambda at: (time.strftime("%Y-%m-%d %H:%M", time.gmtime(at)) + " UTC") if at else ""
    env.filters["pct"] = lambda v: "" if v is None else f"{100 * float(v):.0f}%"
    env.filters["hours"] = lambda h: "–" if h is None else (f"{h:.1f} h" if h >= 1 else f"{60 * h:.0f} min")
    env.filters["q"] = lambda v: quote(str(v), safe="/:")
    # Text for a <pre>, escaped by autoescape like any value (tojson's \u0027 escapes are for <script> contexts).
    env.filters["pretty"] = lambda v: json.dumps(v, indent=1, ensure_ascii=False, sort_keys=True, default=str)
    return env


def dashboard_routes(ctx: AppContext, token: str) -> list[BaseRoute]:
    """`/dashboard` and everything under it."""
    sessions = Sessions(ctx.clock)
    env = _environment()

    def render(template: str, /, status: int = 200, **values: Any) -> HTMLResponse:
        html = env.get_template(template).render(**values)
        return HTMLResponse(html, status_code=status, headers=_HEADERS)

    def signed_in(page: Page) -> Callable[[Request], Awaitable[Response]]:
        async def guarded(request: Request) -> Response:
            session = sessions.get(request.cookies.get(COOKIE))
            if session is None:
                return RedirectResponse(f"{PREFIX}/login", status_code=303, headers=_HEADERS)
            return await page(request, session)

        return guarded

    async def login_form(request: Request) -> Response:
        return render("login.html", error=None, person="")

    async def login(request: Request) -> Response:
        form = await request.form()
        given, person = str(form.get("token", "")), str(form.get("person", "")).strip()[:100]
        if not token_matches(given, token) or not person:
            error = "Wrong token." if person else "Give your name: actions are recorded with it."
            return render("login.html", status=401, error=error, person=person)
        session = sessions.start(person)
        response = RedirectResponse(f"{PREFIX}/", status_code=303, headers=_HEADERS)
        response.set_cookie(
            COOKIE, session.id, max_age=int(session.expires_at - ctx.clock.now()), path=PREFIX, httponly=True,
            samesite="strict", secure=request.url.scheme == "https",
        )  # fmt: skip
        return response

    async def logout(request: Request) -> Response:
        sessions.end(request.cookies.get(COOKIE))
        response = RedirectResponse(f"{PREFIX}/login", status_code=303, headers=_HEADERS)
        response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict")
        return response

    async def page(name: str, session: Session, make: Callable[[], dict[str, Any]]) -> Response:
        try:
            values = await run_in_threadpool(make)
        except NotFoundError as exc:
            return render("message.html", status=404, session=session, title="Not found", text=str(exc))
        except ProdloopError as exc:
            return render("message.html", status=400, session=session, title="Cannot show this", text=str(exc))
        return render(name, session=session, **values)

    async def overview(request: Request, session: Session) -> Response:
        return await page("overview.html", session, lambda: views.overview(ctx))

    async def issue(request: Request, session: Session) -> Response:
        issue_id = int(request.path_params["issue_id"])
        return await page("issue.html", session, lambda: views.issue(ctx, issue_id))

    async def reliability(request: Request, session: Session) -> Response:
        path = request.query_params.get("path", "")[:500]
        return await page("map.html", session, lambda: views.reliability(ctx, path))

    async def suite(request: Request, session: Session) -> Response:
        return await page("suite.html", session, lambda: views.suite(ctx))

    async def action(request: Request, session: Session) -> Response:
        name, target = request.path_params["action"], int(request.path_params["target"])
        act = ACTIONS.get(name)
        if act is None:
            return render("message.html", status=404, session=session, title="Not found", text="No such action.")
        values = {"session": session, "act": act, "action": name, "target": target, "back": act.back(target)}
        if request.method == "GET":
            return render("confirm.html", error=None, why="", **values)
        form = await request.form()
        if not csrf_matches(session, _text(form.get("csrf"))):
            return render("message.html", status=403, session=session, title="Refused", text=_CSRF_REFUSED)
        why = str(form.get("why", "")).strip()
        if not why:
            return render("confirm.html", status=400, error=_WHY_NEEDED, why="", **values)
        try:
            await run_in_threadpool(act.run, ctx, target, session.person, why)
        except NotFoundError as exc:
            return render("confirm.html", status=404, error=str(exc), why=why, **values)
        except ProdloopError as exc:
            return render("confirm.html", status=400, error=str(exc), why=why, **values)
        logger.info("dashboard: %s %d by %s", name, target, session.person)
        return render("done.html", text=act.done.format(id=target), **values)

    async def to_overview(request: Request) -> Response:
        return RedirectResponse(f"{PREFIX}/", status_code=307)

    router = Router(
        routes=[
            Route("/login", login_form, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["GET", "POST"]),
            Route("/", signed_in(overview), methods=["GET"]),
            Route("/issues/{issue_id:int}", signed_in(issue), methods=["GET"]),
            Route("/map", signed_in(reliability), methods=["GET"]),
            Route("/suite", signed_in(suite), methods=["GET"]),
            Route("/actions/{action:str}/{target:int}", signed_in(action), methods=["GET", "POST"]),
        ]
    )
    return [Route(PREFIX, to_overview, methods=["GET"]), Mount(PREFIX, app=router)]


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
