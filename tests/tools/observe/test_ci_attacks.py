"""Review attacks on CI ingestion, classification and /ci/select, each now refused or judged right."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from prodloop.server.errors import HealRefused
from prodloop.tools.judge.heal import heal_test
from prodloop.tools.observe.ci_classify import classify_failure
from prodloop.tools.observe.ci_signals import parse_junit
from tests.conftest import MCP_TOKEN, LiveServer, post
from tests.repos import new_repo
from tests.tools.judge.test_heal import PERCENT, TEST_PRICING, Project, project  # noqa: F401
from tests.tools.observe.test_ci_signals import PROJECT, pushed_from_a_clone


def test_ci_select_cannot_write_refs_of_the_served_repository(
    live_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    """`head` is passed to `git fetch` as a refspec: `src:dst` writes any local ref (tags name deployed releases)."""
    server = live_server()
    served = new_repo(tmp_path / "svc")
    release = served.commit(PROJECT, "calc")
    served.git("tag", "v1.0")
    pushed_from_a_clone(served, tmp_path, {"calc/prices.py": "import os\nos.system('id')\n"}, "eve")  # a stranger's
    auth = {"Authorization": f"Bearer {MCP_TOKEN}"}
    refused = post(f"{server.base_url}/ci/select?base=main&head=%2Brefs/heads/eve:refs/tags/v1.0", b"", auth)
    assert refused.status == 400 and "is not a branch name or a full commit sha" in refused.body["error"]
    tag = served.git("rev-parse", "v1.0^{commit}").strip()
    assert tag == release, "POST /ci/select moved the served repository's tag v1.0 to a stranger's commit"


def test_the_same_test_in_two_suites_of_one_file_is_not_a_rerun() -> None:
    """Merged JUnit of a matrix (one <testsuite> per Python version): a test failing on 3.9 only must stay a failure."""
    data = (
        b'<testsuites><testsuite name="py39"><testcase classname="tests.test_x" name="test_y" time="0.1">'
        b'<failure message="assert 1 == 2">tests/test_x.py:3: AssertionError</failure></testcase></testsuite>'
        b'<testsuite name="py312"><testcase classname="tests.test_x" name="test_y" time="0.1"/></testsuite>'
        b"</testsuites>"
    )
    cases = parse_junit(data)
    assert any(c.outcome == "failed" for c in cases), [(c.test_id, c.outcome, c.reruns) for c in cases]


def test_a_failure_followed_by_a_teardown_error_keeps_the_failure() -> None:
    """pytest writes a test that fails, then errors in teardown, as two testcases of one id (no rerun happened)."""
    data = (
        b'<testsuites><testsuite name="pytest">'
        b'<testcase classname="t" name="test_a"><failure message="assert 1 == 2">t.py:12: AssertionError</failure>'
        b'</testcase><testcase classname="t" name="test_a"><error message="failed on teardown">t.py:6: RuntimeError'
        b"</error></testcase></testsuite></testsuites>"
    )
    [case] = parse_junit(data)
    assert case.reruns == 0 and case.exception_type == "AssertionError", (case.reruns, case.exception_type)


def test_a_bug_landing_with_an_unrelated_intended_change_is_not_test_rot(project: Project) -> None:  # noqa: F811
    """CI last passed on `fixed`; two commits land together: the intended 15% change (with its test updated) and a
    bug in total() that updates no test. test_total's failure is the bug, a regression; it must not be healable."""
    ctx = project.ctx
    project.ci("fixed")
    project.shas["bug"] = project.repo.commit({"shop/pricing.py": PERCENT.replace("q * p", "q + p")}, "total: tidy up")
    project.ci("bug")
    failure = project.failure("test_total")
    found = classify_failure(ctx.store, ctx.git(), failure)
    assert found.kind == "regression", found.evidence
    assert any("changed total, which the test calls, and updated no test" in e for e in found.evidence)
    agrees_with_bug = TEST_PRICING.replace("== 13", "== 11")
    with pytest.raises(HealRefused, match="classified regression"):
        heal_test(ctx.store, ctx.git(), ctx.runner(), ctx.settings, ctx.clock, failure_id=failure,
                  test_code=agrees_with_bug)  # fmt: skip


def test_an_unrelated_new_test_file_in_the_breaking_commit_is_not_test_rot(project: Project) -> None:  # noqa: F811
    """The breaking commit also adds a test for something else: that says nothing about total()'s change."""
    ctx = project.ctx
    project.ci("percent")  # test_total passes here
    project.shas["bug"] = project.repo.commit(
        {"shop/pricing.py": PERCENT.replace("q * p", "q + p"),
         "tests/test_shipping.py": "def test_free_shipping():\n    assert 2 + 2 == 4\n"},
        "add shipping test; tidy pricing",
    )  # fmt: skip
    project.ci("bug")
    found = classify_failure(ctx.store, ctx.git(), project.failure("test_total"))
    assert found.kind != "test_rot", found.evidence


def test_a_failure_on_every_run_of_one_matrix_job_is_not_flaky(project: Project) -> None:  # noqa: F811
    """py39 fails test_checkout_discount on every commit (the code uses a 3.10 feature); py312 passes it. That is a
    deterministic, environment-specific regression, not a flaky test to quarantine."""
    from prodloop.tools.observe.ci_signals import ingest_junit
    from prodloop.tools.ship.quarantine import propose_quarantine

    ctx = project.ctx
    case = b'<testcase classname="tests.test_checkout" name="test_checkout_discount" time="0.1"'
    failing = (b"<testsuites><testsuite>" + case + b'><failure message="TypeError: unsupported operand">'
               b"shop/pricing.py:2: TypeError</failure></testcase></testsuite></testsuites>")  # fmt: skip
    passing = b"<testsuites><testsuite>" + case + b"/></testsuite></testsuites>"
    files = set(ctx.git().files(project.shas["percent"]))
    for name in ("buggy", "fixed", "percent"):
        for job, data in (("py39", failing), ("py312", passing)):
            ingest_junit(ctx.store, ctx.settings, ctx.clock, data, commit=project.shas[name], branch="main", job=job,
                         repo_files=files)  # fmt: skip
    found = classify_failure(ctx.store, ctx.git(), project.failure("test_checkout_discount"))
    proposal = propose_quarantine(ctx.store, ctx.git(), ctx.settings, ctx.clock, by="ci", apply=False)
    assert found.kind != "flaky" and not proposal.tests, (found.evidence, [t.test_node for t in proposal.tests])
