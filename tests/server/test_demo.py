"""`prodloop demo`, the README's main job: a real crash reaches an agent, scrubbed."""

from __future__ import annotations

import http.cookiejar
import io
import urllib.parse
import urllib.request

from rich.console import Console

from prodloop.server.demo import run_demo


def test_demo_takes_a_real_crash_to_an_agents_view() -> None:
    buffer = io.StringIO()
    pages: dict[str, str] = {}

    def visit(url: str, token: str) -> None:
        """What `--keep` serves: the dashboard, logged in with the printed token, shows the demo's result."""
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        form = urllib.parse.urlencode({"person": "newcomer", "token": token}).encode()
        with opener.open(url + "login", data=form, timeout=30) as reply:
            pages["overview"] = reply.read().decode()
        with opener.open(url + "suite", timeout=30) as reply:
            pages["suite"] = reply.read().decode()

    seen = run_demo(Console(file=buffer, width=200), keep=visit)
    assert seen["issue"]["title"] == "KeyError: 'kiwi'"
    crash = seen["context"]["frames"][-1]
    assert (crash["filename"], crash["function"]) == ("shop/pricing.py", "line_total")
    assert seen["context"]["release"] == "shop@1.0.0"
    code_path = seen["code_path"]
    assert code_path["release"]["source"] == "package-version"
    assert code_path["culprit"]["qualname"] == "line_total"
    assert code_path["related_tests"][0]["path"] == "tests/test_pricing.py"
    loop = seen["loop"]
    assert loop["outcome"] == "pr_opened", loop["needed"]
    assert all(g["passed"] for g in loop["gates"])
    assert loop["mutation_score"] >= 0.8
    assert "assert result == 0" in loop["test_code"]
    assert seen["crash_to_pr_seconds"] > 0
    printed = buffer.getvalue()
    assert "service crashed and reported" in printed
    assert "KeyError: 'kiwi'" in printed
    assert "pr_opened: crash to PR in" in printed
    assert printed.rstrip().splitlines()[-1].startswith(f"Dashboard {seen['dashboard']}  (log in with the token ")
    assert "KeyError: &#39;kiwi&#39;" in pages["overview"] and "Log out" in pages["overview"]
    assert "regression test of production issue" in pages["suite"]
