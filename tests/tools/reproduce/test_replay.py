"""Request replay: a web service whose crash only a request can reach, through the real sentry-sdk's
Starlette integration, replayed through the framework's test client and judged by every gate."""

from __future__ import annotations

import ast
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from prodloop.server.context import AppContext
from prodloop.server.ingest.importer import import_events
from prodloop.server.settings import load_settings
from prodloop.tools.judge.candidate import run_candidate_for_issue
from prodloop.tools.reproduce.reconstruct import Unusable
from prodloop.tools.reproduce.replay import _apps_in, replayed
from prodloop.tools.reproduce.synthesis import synthesize_regression_test
from tests.repos import GitFixture, committed_repo, new_repo
from tests.sample_service import fix_diff

FILES = {
    ".gitignore": ".prodloop\n__pycache__/\n",
    "web/__init__.py": "",
    "web/rates.py": """
        RATES = {"EUR": 1.0, "USD": 1.08}
    """,
    "web/app.py": """
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        from web.rates import RATES


        async def quote(request):
            payload = await request.json()
            rate = RATES[payload["currency"]]
            return JSONResponse({"shop": request.path_params["shop"], "total": round(payload["amount"] * rate, 2)})


        app = Starlette(routes=[Route("/quote/{shop}", quote, methods=["POST"])])
    """,
    "tests/__init__.py": "",
    "tests/test_app.py": """
        from starlette.testclient import TestClient

        from web.app import app


        def test_quote_in_euros():
            response = TestClient(app).post("/quote/berlin", json={"amount": 10, "currency": "EUR"})
            assert response.json() == {"shop": "berlin", "total": 10.0}
    """,
}

# Storefronts asking for quotes in currencies the service does not know; the client's token is a secret.
TRAFFIC = """
from starlette.testclient import TestClient
from web.app import app

client = TestClient(app, raise_server_exceptions=False)
for shop, currency, amount in [("berlin", "GBP", 10), ("paris", "JPY", 2500), ("berlin", "GBP", 10)]:
    client.post(
        "/quote/" + shop,
        params={"page": "2"},
        json={"amount": amount, "currency": currency},
        headers={"Authorization": "Bearer sk_live_prodloop_canary_51Hx", "X-Storefront": "web-7"},
    )
"""

FIX = fix_diff(
    "web/app.py",
    '    rate = RATES[payload["currency"]]\n',
    '    rate = RATES.get(payload["currency"])\n'
    "    if rate is None:\n"
    '        return JSONResponse({"error": "unknown currency " + payload["currency"]}, status_code=422)\n',
    FILES,
)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> GitFixture:
    return committed_repo(tmp_path_factory.mktemp("replay") / "web", FILES, "web 1.0")


@pytest.fixture(scope="module")
def events(repo: GitFixture) -> list[dict[str, Any]]:
    return repo.capture(TRAFFIC, release=repo.shas[-1])


@pytest.fixture
def ctx(repo: GitFixture, events: list[dict[str, Any]], tmp_path: Path) -> Iterator[AppContext]:
    opened = AppContext.open(load_settings(repo=repo.root, data_dir=tmp_path / "data", gates={"flaky_runs": 2}))
    project = opened.store.create_project("web")
    import_events(opened, project, [(f"e{i}", e) for i, e in enumerate(events)], source="test")
    yield opened
    opened.close()


def test_a_crash_only_a_request_reaches_is_replayed_through_the_test_client_and_passes_every_gate(
    ctx: AppContext, events: list[dict[str, Any]]
) -> None:
    assert len(events) == 3 and all(e.get("request") for e in events)
    result = synthesize_regression_test(*ctx.collaborators(), issue_id=1)
    assert result.test_code is not None, result.attempts
    assert result.attempts[0].frame == "web/app.py::quote" and not result.attempts[0].usable  # a Request argument
    assert result.frame == "web.app.app (POST request replay)"
    assert result.reproduction is not None and "KeyError" in result.reproduction.evidence
    code = result.test_code
    compile(code, "synthesized", "exec")
    assert "from web.app import app" in code and "TestClient(app, raise_server_exceptions=True)" in code
    assert "'/quote/paris'" in code and "'/quote/berlin'" in code  # two distinct requests; the repeat is not a third
    assert code.count("pytest.param(") == 2
    assert "sk_live_prodloop_canary" not in code and "[Filtered]" not in code and "authorization" not in code
    assert "'x-storefront': 'web-7'" in code and "('page', '2')" in code
    assert "sentry-trace" not in code and "baggage" not in code
    checked = run_candidate_for_issue(*ctx.collaborators(), issue_id=1, test_code=code, fix_diff=FIX)
    assert checked.passed, [(g.name, g.passed, g.evidence) for g in checked.gates]


def test_the_characterized_replay_asserts_what_the_fixed_service_answers(ctx: AppContext) -> None:
    from prodloop.tools.reproduce.characterize import characterize

    result = synthesize_regression_test(*ctx.collaborators(), issue_id=1)
    assert result.call is not None
    stronger, note = characterize(ctx.git(), ctx.runner(), result.call, FIX)
    assert stronger is not None, note
    assert "(422, {'error': 'unknown currency GBP'})" in stronger
    assert "(422, {'error': 'unknown currency JPY'})" in stronger


def _event(**request: Any) -> dict[str, Any]:
    return {"request": {"method": "POST", "url": "http://svc/orders", "headers": {}, **request}}


@pytest.mark.parametrize(
    ("request_fields", "reason"),
    [
        ({"method": "GET\nimport os"}, "not an HTTP method"),
        ({"url": "http://svc"}, None),  # the root path is a path
        ({"url": "javascript:alert(1)"}, "no usable path"),
        ({"data": "[Filtered]"}, "scrubbed"),
        ({"data": {"a": {"b": float("nan")}}}, "not plain data"),
    ],
)
def test_a_hostile_or_scrubbed_request_is_refused_with_the_reason(
    request_fields: dict[str, Any], reason: str | None
) -> None:
    if reason is None:
        assert replayed(_event(**request_fields)).path == "/"
        return
    with pytest.raises(Unusable, match=reason):
        replayed(_event(**request_fields))


def test_application_objects_are_found_through_every_import_form() -> None:
    source = (
        "import fastapi as fa\nimport flask\nfrom starlette.applications import Starlette as S\n"
        "api = fa.FastAPI()\nsite = flask.Flask(__name__)\ninner: S = S()\nnot_an_app = dict()\n"
        "def factory():\n    hidden = fa.FastAPI()\n"
    )
    assert _apps_in(ast.parse(source)) == [("api", "asgi"), ("site", "flask"), ("inner", "asgi")]


def test_synthesis_without_an_application_says_why_replay_was_not_tried(
    tmp_path: Path, events: list[dict[str, Any]], make_ctx: Callable[..., AppContext]
) -> None:
    bare = new_repo(tmp_path / "bare")
    files = dict(FILES)
    files["web/app.py"] = FILES["web/app.py"].replace("app = Starlette(", "def build():\n    return Starlette(")
    bare.commit(files, "no module-level app")
    ctx = AppContext.open(load_settings(repo=bare.root, data_dir=tmp_path / "d"))
    try:
        import_events(ctx, ctx.store.create_project("web"), [("e", dict(events[0], release=bare.shas[-1]))], source="t")
        result = synthesize_regression_test(*ctx.collaborators(), issue_id=1)
    finally:
        ctx.close()
    assert result.test_code is None
    assert any(a.frame == "request replay" and "no module-level" in a.reason for a in result.attempts)


def test_the_headless_loop_takes_a_replayed_crash_to_a_pushed_branch(
    tmp_path: Path, events: list[dict[str, Any]]
) -> None:
    from prodloop.tools.loop import run_loop

    service = committed_repo(tmp_path / "svc", FILES, "web 1.0")
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    service.git("remote", "add", "origin", str(remote))
    service.git("push", "-q", "origin", "main")
    subprocess.run(["git", "-C", str(service.root), "apply"], input=FIX, text=True, check=True)
    ctx = AppContext.open(load_settings(repo=service.root, data_dir=tmp_path / "data", gates={"flaky_runs": 2}))
    try:
        moved = [dict(e, release=service.shas[-1]) for e in events]
        import_events(ctx, ctx.store.create_project("web"), [(f"e{i}", e) for i, e in enumerate(moved)], source="t")
        report = run_loop(*ctx.collaborators(), issue_id=1)
    finally:
        ctx.close()
    assert report.outcome == "pr_opened", [(s.name, s.detail) for s in report.steps]
    assert report.mutation_score is not None and report.mutation_score >= 0.8
    assert report.pull_request is not None and report.pull_request.branch
    assert report.test_code is not None and "unknown currency GBP" in report.test_code
    pushed = subprocess.run(
        ["git", "-C", str(remote), "show", "--name-only", "--format=", report.pull_request.branch],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert sorted(pushed) == ["tests/.prodloop/provenance.jsonl", "tests/test_prodloop_issue_1.py", "web/app.py"]


FLASK_FILES = {
    **FILES,
    "web/app.py": """
        from flask import Flask, jsonify, request

        from web.rates import RATES

        app = Flask(__name__)


        @app.post("/quote/<shop>")
        def quote(shop):
            payload = request.get_json()
            rate = RATES[payload["currency"]]
            return jsonify(shop=shop, total=round(payload["amount"] * rate, 2))
    """,
    "tests/test_app.py": """
        from web.app import app


        def test_quote_in_euros():
            response = app.test_client().post("/quote/berlin", json={"amount": 10, "currency": "EUR"})
            assert response.get_json() == {"shop": "berlin", "total": 10.0}
    """,
}

FLASK_TRAFFIC = """
from web.app import app

client = app.test_client()
for shop, currency, amount in [("berlin", "GBP", 10), ("paris", "JPY", 2500)]:
    client.post("/quote/" + shop, json={"amount": amount, "currency": currency},
                headers={"Authorization": "Bearer sk_live_prodloop_canary_51Hx"})
"""


def test_a_flask_crash_is_replayed_through_flasks_test_client(tmp_path: Path) -> None:
    service = committed_repo(tmp_path / "flask-svc", FLASK_FILES, "web 1.0 on flask")
    events = service.capture(FLASK_TRAFFIC, release=service.shas[-1])
    assert len(events) == 2 and all(e.get("request") for e in events)
    fix = fix_diff(
        "web/app.py",
        '    rate = RATES[payload["currency"]]\n',
        '    rate = RATES.get(payload["currency"])\n'
        "    if rate is None:\n"
        '        return jsonify(error="unknown currency " + payload["currency"]), 422\n',
        FLASK_FILES,
    )
    ctx = AppContext.open(load_settings(repo=service.root, data_dir=tmp_path / "data", gates={"flaky_runs": 1}))
    try:
        import_events(ctx, ctx.store.create_project("web"), [(f"e{i}", e) for i, e in enumerate(events)], source="t")
        result = synthesize_regression_test(*ctx.collaborators(), issue_id=1)
        assert result.test_code is not None, result.attempts
        assert "app.test_client()" in result.test_code and "sk_live" not in result.test_code
        assert result.reproduction is not None and "KeyError raised from web/app.py" in result.reproduction.evidence
        checked = run_candidate_for_issue(*ctx.collaborators(), issue_id=1, test_code=result.test_code, fix_diff=fix)
    finally:
        ctx.close()
    assert checked.passed, [(g.name, g.passed, g.evidence) for g in checked.gates]


@pytest.mark.parametrize("framework", ["asgi", "flask"])
def test_the_replay_helper_sends_json_form_and_text_bodies(framework: str) -> None:
    from prodloop.tools.reproduce.replay import helper_imports, helper_source

    if framework == "flask":
        from flask import Flask, request

        app: Any = Flask(__name__)

        @app.post("/echo")
        def echo() -> Any:
            return {
                "json": request.get_json(silent=True),
                "form": dict(request.form),
                "text": request.get_data(as_text=True),
            }
    else:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def echo_asgi(request: Request) -> JSONResponse:
            raw = (await request.body()).decode()
            form = dict(await request.form()) if "form" in request.headers.get("content-type", "") else {}
            data = None
            if "json" in request.headers.get("content-type", ""):
                data = await request.json()
            return JSONResponse({"json": data, "form": form, "text": raw})

        app = Starlette(routes=[Route("/echo", echo_asgi, methods=["POST"])])
    namespace: dict[str, Any] = {"app": app}
    exec("\n".join([*helper_imports(framework), *helper_source(framework, "app")]), namespace)  # noqa: S102
    replay = namespace["replay"]
    status, sent = replay("POST", "/echo", [("q", "1")], {}, {"json": {"a": [1, 2]}})
    assert status == 200 and sent["json"] == {"a": [1, 2]}
    status, sent = replay("POST", "/echo", [], {}, {"data": {"sku": "kiwi"}})
    assert status == 200 and sent["form"] == {"sku": "kiwi"}
    status, sent = replay("POST", "/echo", [], {"content-type": "text/plain"}, {"content": "plain text"})
    assert status == 200 and sent["text"] == "plain text"
