"""CI failures as signals: real pytest runs of a small project write JUnit XML; it is grouped, mapped to the code,
kept per commit, and a seeded flaky test is found; hostile or broken files are refused and store nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from prodloop.server.context import AppContext
from prodloop.server.errors import EventFileError, InvalidArgument
from prodloop.server.settings import load_settings
from prodloop.tools.observe.ci_signals import ingest_junit
from tests.conftest import MCP_TOKEN, LiveServer, post
from tests.repos import GitFixture, new_repo

PROJECT = {
    "calc/__init__.py": "",
    "calc/prices.py": 'PRICES = {"apple": 3}\n\n\ndef price(sku):\n    return PRICES[sku]\n',
    "tests/__init__.py": "",
    "tests/test_prices.py": (
        "import os\n\nimport pytest\n\nfrom calc.prices import price\n\n\n"
        "def test_apple():\n    assert price('apple') == 3\n\n\n"
        "def test_kiwi():\n    assert price('kiwi') == 0\n\n\n"
        "@pytest.fixture\ndef broken():\n    raise RuntimeError('fixture down')\n\n\n"
        "def test_with_broken_fixture(broken):\n    assert broken\n\n\n"
        "@pytest.mark.skip(reason='later')\ndef test_later():\n    pass\n\n\n"
        "def test_flaky():\n    marker = os.environ['FLAKY_MARKER']\n"
        "    if not os.path.exists(marker):\n        open(marker, 'w').close()\n"
        "        raise AssertionError('first attempt fails')\n"
    ),
}


def _pytest(root: Path, out: Path, marker: Path, *extra: str) -> bytes:
    env = {**os.environ, "FLAKY_MARKER": str(marker)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", *extra]
    subprocess.run([*command, f"--junitxml={out}", "tests"], cwd=root, env=env, capture_output=True, check=False)
    return out.read_bytes()


@pytest.fixture
def project(tmp_path: Path) -> Iterator[tuple[AppContext, Path, str]]:
    repo = new_repo(tmp_path / "calc")
    sha = repo.commit(PROJECT, "calc")
    ctx = AppContext.open(load_settings(repo=repo.root, data_dir=tmp_path / "data"))
    yield ctx, repo.root, sha
    ctx.close()


def test_real_pytest_runs_are_grouped_mapped_and_a_flaky_test_is_found(
    project: tuple[AppContext, Path, str], tmp_path: Path
) -> None:
    ctx, root, sha = project
    files = {"calc/prices.py", "tests/test_prices.py"}
    marker = tmp_path / "marker"
    first = _pytest(root, tmp_path / "one.xml", marker)
    report = ingest_junit(ctx.store, ctx.settings, ctx.clock, first, commit=sha, branch="main", job="unit",
                          repo_files=files)  # fmt: skip
    assert (report.tests, report.passed, report.failed, report.skipped) == (5, 1, 3, 1)
    groups = {g.test_id.rsplit("::", 1)[-1]: g for g in report.failures}
    assert groups["test_kiwi"].exception_type == "KeyError"
    assert groups["test_kiwi"].location == "calc/prices.py:5"  # the crash line in the code under test
    assert groups["test_with_broken_fixture"].exception_type == "RuntimeError"
    assert groups["test_flaky"].exception_type == "AssertionError" and all(g.new for g in report.failures)
    assert report.flaky == []
    # The same commit again: the flaky test passes now (the marker exists): flaky on this commit.
    second = _pytest(root, tmp_path / "two.xml", marker)
    again = ingest_junit(ctx.store, ctx.settings, ctx.clock, second, commit=sha, branch="main", job="unit",
                         repo_files=files)  # fmt: skip
    assert [f.test_id.rsplit("::", 1)[-1] for f in again.flaky] == ["test_flaky"]
    assert again.flaky[0].flake_rate == 1.0
    kiwi = next(g for g in again.failures if g.test_id.endswith("test_kiwi"))
    assert not kiwi.new and kiwi.count == 2  # the same group, seen twice
    # The same file for the same commit and job: acknowledged, not counted twice.
    assert ingest_junit(ctx.store, ctx.settings, ctx.clock, second, commit=sha, job="unit").duplicate
    from prodloop.tools.observe.metrics import metrics

    measured = metrics(ctx.store)  # four tests ran on the commit (one skipped), one of them flaky
    assert (measured.ci_runs, measured.flake_rate) == (2, 0.25)


def test_a_real_pytest_rerun_that_passed_is_flaky_on_its_first_run(
    project: tuple[AppContext, Path, str], tmp_path: Path
) -> None:
    """pytest-rerunfailures writes the failed attempt as an extra testcase of the same id: folded, it is a rerun."""
    ctx, root, sha = project
    data = _pytest(root, tmp_path / "rerun.xml", tmp_path / "marker", "--reruns", "1")
    assert data.count(b'name="test_flaky"') == 2  # the attempt that failed, then the pass
    report = ingest_junit(ctx.store, ctx.settings, ctx.clock, data, commit=sha, job="unit")
    assert [f.test_id for f in report.flaky] == ["tests.test_prices::test_flaky"]
    assert report.tests == 5 and "tests.test_prices::test_flaky" not in {g.test_id for g in report.failures}
    kiwi = (
        ctx.store.reader()
        .execute("SELECT reruns, outcome FROM ci_results WHERE test_id = 'tests.test_prices::test_kiwi'")
        .fetchone()
    )
    assert tuple(kiwi) == (1, "failed")  # rerun once, failed both times: a failure, not flaky


RERUN = (
    b'<?xml version="1.0" encoding="utf-8"?>\n<testsuites><testsuite name="pytest" tests="3">\n'
    b'<testcase classname="tests.test_net" name="test_fetch" time="0.5">'
    b'<rerunFailure message="timeout">E TimeoutError</rerunFailure></testcase>\n'
    b'<testcase classname="tests.test_net" name="test_page" time="0.1">'
    b"<system-out><![CDATA[<!DOCTYPE html><html></html>]]></system-out></testcase>\n"
    b'<testcase classname="tests.test_net" name="test_auth" time="0.1">'
    b'<failure message="token AKIAABCDEFGHIJKLMNOP rejected">tests/test_net.py:9: PermissionError</failure>'
    b"</testcase>\n</testsuite></testsuites>"
)


def test_a_rerun_that_passed_is_flaky_and_secrets_in_failure_text_are_scrubbed(
    project: tuple[AppContext, Path, str],
) -> None:
    ctx, _, sha = project
    report = ingest_junit(ctx.store, ctx.settings, ctx.clock, RERUN, commit=sha)  # HTML inside the output is fine
    assert [f.test_id for f in report.flaky] == ["tests.test_net::test_fetch"]
    (auth,) = report.failures
    assert auth.exception_type == "PermissionError" and auth.location == "tests/test_net.py:9"
    stored = ctx.store.reader().execute("SELECT message FROM ci_failures").fetchone()[0]
    assert "AKIAABCDEFGHIJKLMNOP" not in stored


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (
            b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><testsuite>&b;</testsuite>',
            "DOCTYPE",
        ),
        (b"<testsuite><testcase name='x'>", "not well-formed"),
        (b"<html><body/></html>", "not <testsuites> or <testsuite>"),
    ],
)
def test_hostile_or_broken_results_are_refused_and_store_nothing(
    project: tuple[AppContext, Path, str], data: bytes, said: str
) -> None:
    ctx, _, sha = project
    with pytest.raises(EventFileError, match=said):
        ingest_junit(ctx.store, ctx.settings, ctx.clock, data, commit=sha)
    with pytest.raises(InvalidArgument, match="not a commit sha"):
        ingest_junit(ctx.store, ctx.settings, ctx.clock, RERUN, commit="--upload-pack=x")
    assert ctx.store.reader().execute("SELECT count(*) FROM ci_runs").fetchone()[0] == 0


def test_the_command_line_ingests_a_file_and_lists_flaky_tests(
    project: tuple[AppContext, Path, str], tmp_path: Path
) -> None:
    ctx, root, sha = project
    ctx.close()
    results = tmp_path / "r.xml"
    results.write_bytes(RERUN)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRODLOOP_")}
    where = ["--repo", str(root), "--data-dir", str(tmp_path / "data")]
    cli = [sys.executable, "-m", "prodloop.server.cli", "ci"]
    run = subprocess.run([*cli, "ingest", str(results), "--commit", sha, "--branch", "main", *where],
                         capture_output=True, text=True, env=env, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["failed"] == 1
    listed = subprocess.run([sys.executable, "-m", "prodloop.server.cli", "ci", "flaky", *where],
                            capture_output=True, text=True, env={**env, "COLUMNS": "200"}, check=False)  # fmt: skip
    assert "tests.test_net::test_fetch" in listed.stdout
    bad = subprocess.run([sys.executable, "-m", "prodloop.server.cli", "ci", "ingest", str(tmp_path / "none.xml"),
                          "--commit", sha, *where], capture_output=True, text=True, env=env, check=False)  # fmt: skip
    assert bad.returncode == 2 and "cannot be read" in bad.stderr


def test_ci_posts_results_over_http_with_the_token(live_server: Callable[..., LiveServer]) -> None:
    server = live_server()
    url = f"{server.base_url}/ci/results?commit={'a' * 40}&branch=main&job=unit"
    auth = {"Authorization": f"Bearer {MCP_TOKEN}", "Content-Type": "application/xml"}
    assert post(url, RERUN, {"Content-Type": "application/xml"}).status == 401  # no token, nothing stored
    assert server.ctx.store.reader().execute("SELECT count(*) FROM ci_runs").fetchone()[0] == 0
    done = post(url, RERUN, auth)
    assert done.status == 200 and done.body["failed"] == 1 and done.body["flaky"][0]["test_id"].endswith("fetch")
    refused = post(url, b"<!DOCTYPE x><testsuite/>", auth)
    assert refused.status == 400 and "DOCTYPE" in refused.body["error"]
    assert post(f"{server.base_url}/ci/results", RERUN, auth).status == 400  # no commit
    assert server.ctx.store.reader().execute("SELECT count(*) FROM ci_runs").fetchone()[0] == 1


def test_selection_puts_a_changes_own_tests_then_prodlogs_regression_tests_then_importers_first(
    tmp_path: Path,
) -> None:
    from prodloop.server.ingest.importer import import_events
    from prodloop.server.store import policy, receipts
    from prodloop.tools.observe.ci_select import select_tests
    from tests.sample_service import SampleService

    service = SampleService(tmp_path / "shop")
    service.git.commit({"tests/test_regression.py": "from shop.checkout import handle\n\n\ndef test_r():\n    pass\n",
                        "tests/test_auth.py": "def test_a():\n    pass\n",
                        "tests/test_loyalty.py": "from shop.loyalty import points_needed\n"}, "more tests")  # fmt: skip
    base = service.git.git("rev-parse", "HEAD")
    ctx = AppContext.open(load_settings(repo=service.root, data_dir=tmp_path / "data"))
    try:
        import_events(ctx, ctx.store.create_project("shop"), [("e", service.event("unknown_sku"))], source="test")
        receipts.save(ctx.store, receipts.Receipt("r" * 32, 1, "e", "c", "tests/test_regression.py", "test_r", "",
                                                  "", "", "", True, (), 0.0, 0.0))  # fmt: skip
        slot, _ = policy.reserve_pull_request(ctx.store, 1, "r" * 32, max_per_issue=3, max_per_day=9, now=0.0)
        assert slot is not None
        policy.complete_pull_request(ctx.store, policy.PullRequestRow(slot, 1, "r" * 32, "b", "c", None, None, "local",
                                                                      0.0),
                                     {"test_node": "tests/test_regression.py::test_r",
                                      "test_path": "tests/test_regression.py", "issue_id": 1})  # fmt: skip
        service.git.commit({"shop/pricing.py": "PRICES = {}\n\n\ndef line_total(item):\n    return 0\n",
                            "tests/test_auth.py": "def test_a():\n    assert True\n"}, "change")  # fmt: skip
        selection = select_tests(ctx.store, ctx.git(), ctx.settings, base=base)
    finally:
        ctx.close()
    assert selection.changed == ["shop/pricing.py", "tests/test_auth.py"]
    assert [t.path for t in selection.tests] == ["tests/test_auth.py", "tests/test_regression.py",
                                                 "tests/test_pricing.py"]  # fmt: skip
    assert "prodloop regression test of issue 1 through shop/pricing.py" in selection.tests[1].reasons
    assert selection.selected == 3 and selection.test_files == 4


def pushed_from_a_clone(served: GitFixture, tmp_path: Path, files: dict[str, str], branch: str) -> str:
    """A developer's change (a PR's head) pushed to the served repository's remote, which the repository itself has
    not fetched: the commit's sha."""
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(served.root), str(remote)], check=True)
    served.git("remote", "add", "origin", str(remote))
    dev = tmp_path / "dev"
    subprocess.run(["git", "clone", "-q", str(remote), str(dev)], check=True)
    for path, text in files.items():
        (dev / path).write_text(text)
    who = ["-c", "user.name=Dev", "-c", "user.email=dev@example.com"]
    subprocess.run(["git", *who, "commit", "-qam", "a change"], cwd=dev, check=True)
    subprocess.run(["git", "push", "-q", "origin", f"HEAD:refs/heads/{branch}"], cwd=dev, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=dev, capture_output=True, text=True).stdout.strip()


def test_ci_asks_the_server_which_tests_guard_a_change_and_metrics_say_what_it_saves(
    live_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    """The runner has no store: the server chooses, fetching the PR's head from its remote; once CI's full results
    for that head arrive, metrics say what share of the suite's time the selection was."""
    server = live_server()
    served = new_repo(tmp_path / "svc")
    served.commit({**PROJECT, "tests/test_other.py": "def test_o():\n    pass\n"}, "calc")
    prices = 'PRICES = {"apple": 4}\n\n\ndef price(sku):\n    return PRICES[sku]\n'
    head = pushed_from_a_clone(served, tmp_path, {"calc/prices.py": prices}, "feature")
    lacks = subprocess.run(["git", "cat-file", "-e", head], cwd=served.root, capture_output=True, check=False)
    assert lacks.returncode != 0  # the served repository lacks the head until CI asks
    url = f"{server.base_url}/ci/select?base=main&head={head}"
    assert post(url, b"", {}).status == 401
    auth = {"Authorization": f"Bearer {MCP_TOKEN}"}
    done = post(url, b"", auth)
    assert done.status == 200, done.body
    assert done.body["paths"] == ["tests/test_prices.py"] and done.body["test_files"] == 2
    assert post(f"{server.base_url}/ci/select?base=main", b"", auth).status == 400
    full = (
        b'<testsuites><testsuite name="pytest">'
        b'<testcase classname="tests.test_prices" name="test_apple" time="1.0"/>'
        b'<testcase classname="tests.test_other" name="test_o" time="3.0"/></testsuite></testsuites>'
    )
    assert post(f"{server.base_url}/ci/results?commit={head}&job=all", full,
                {**auth, "Content-Type": "application/xml"}).status == 200  # fmt: skip
    from prodloop.tools.observe.metrics import metrics

    measured = metrics(server.ctx.store)
    assert (measured.selections, measured.selected_time_share, measured.ci_time_saved) == (1, 0.25, 0.75)
