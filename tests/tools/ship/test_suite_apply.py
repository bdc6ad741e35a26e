"""apply_suite_changes on a real repository with a bare remote: accepted proposals become one pushed commit (a quiet
test moved behind the slower suite's marker, a test of vanished code deleted) with provenance in the ledger and the
store; real pytest runs of the pushed tree deselect the moved test; a path not proposed is refused before anything is
built; GitHub mode opens the PR through a local GitHub API server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from prodloop.server.clock import FixedClock
from prodloop.server.errors import InvalidArgument
from prodloop.server.store import Store, policy
from prodloop.tools.engine.git_repo import GitRepo
from prodloop.tools.ship.suite_apply import SuiteChangeResult, apply_suite_changes
from tests.fakes.github_api import FakeGitHub
from tests.tools.ship.suite_project import PROJECT, Project, new_project, outcomes

LATER = FixedClock(at=1_780_000_000.0 + 40 * 86_400)  # forty days after the project's commits
TOKEN = "ghp_" + "su1te" * 7


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """The project with shop/legacy.py deleted on main (tests/test_legacy.py now imports nothing that exists)."""
    made = new_project(tmp_path)
    made.git.commit({"shop/legacy.py": None}, "drop legacy")
    made.push_main()
    return made


def _apply(project: Project, accept: list[str], **kw: object) -> SuiteChangeResult:
    store = Store(project.settings.database_path)
    repo = GitRepo(project.git.root)
    try:
        return apply_suite_changes(store, repo, project.settings, LATER, accept=accept, by="Grace", why="quiet code",
                                   quiet_days=30)  # fmt: skip
    finally:
        repo.close()
        store.close()


def test_a_quiet_test_is_moved_and_a_vanished_ones_test_removed_in_one_pushed_commit(project: Project) -> None:
    main = project.git.shas[-1]
    result = _apply(project, ["tests/test_tax.py", "tests/test_legacy.py"])

    assert (result.mode, result.base, result.branch) == ("local", "main", "prodloop/suite-2026-07-07")
    assert [(c.test_path, c.action) for c in result.changes] == [
        ("tests/test_tax.py", "moved"), ("tests/test_legacy.py", "removed")
    ]  # fmt: skip
    assert project.remote_branches() == {"main", result.branch}
    parents = subprocess.run(["git", "-C", str(project.remote), "rev-list", "--parents", "-n", "1", result.commit],
                             capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    assert parents == [result.commit, main]  # one commit on top of main
    changed = subprocess.run(["git", "-C", str(project.remote), "diff", "--name-status", main, result.commit],
                             capture_output=True, text=True, check=True).stdout.split("\n")  # fmt: skip
    assert sorted(filter(None, changed)) == ["A\ttests/.prodloop/provenance.jsonl", "D\ttests/test_legacy.py",
                                             "M\tpyproject.toml", "M\ttests/test_tax.py"]  # fmt: skip
    # The moved file: the mark after the docstring and imports, every other line as it was.
    assert project.show(result.commit, "tests/test_tax.py") == (
        '"""Tax."""\n\nfrom shop.tax import RATE\nimport pytest\n\npytestmark = pytest.mark.slow_suite\n\n\n'
        "def test_rate():\n    assert RATE == 3\n"
    )
    pyproject = project.show(result.commit, "pyproject.toml")
    assert pyproject == str(PROJECT["pyproject.toml"]).replace(
        '    "db: talks to a database",\n', '    "db: talks to a database",\n    "slow_suite: moved out of the default'
        ' run by prodloop (its code is quiet in git and in production)",\n'
    )  # fmt: skip
    assert result.marker_registered_in == "pyproject.toml" and 'pytest -m "not slow_suite"' in result.note
    ledger = [json.loads(line) for line in project.show(result.commit, "tests/.prodloop/provenance.jsonl").split("\n")
              if line]  # fmt: skip
    assert [(r["test_node"], r["action"], r["accepted_by"], r["why"]) for r in ledger] == [
        ("tests/test_tax.py", "moved", "Grace", "quiet code"),
        ("tests/test_legacy.py", "removed", "Grace", "quiet code"),
    ]
    assert ledger[1]["reasons"] == ["imports shop.legacy, which no longer exists"]
    assert ledger[0]["pull_request"] == {"branch": result.branch, "base": "main"}
    store = Store(project.settings.database_path)
    try:
        stored, total = policy.provenance_records(store)
        rows = store.reader().execute("SELECT test_path, created_at, pull_request_id FROM provenance").fetchall()
    finally:
        store.close()
    assert total == 2 and [r["action"] for r in stored] == ["moved", "removed"]
    assert rows == [("tests/test_tax.py", LATER.now(), None), ("tests/test_legacy.py", LATER.now(), None)]
    description = Path(result.description_path or "").read_text()
    assert description.startswith("# Test suite: move 1, remove 1 (prodloop)\n\nAccepted by Grace: quiet code")
    assert "- `tests/test_legacy.py`: remove\n  - imports shop.legacy, which no longer exists" in description

    # Real pytest on the pushed tree: the moved test runs by default and is deselected by the marker.
    tree = project.checkout(result.branch, "pushed")
    code, every = project.pytest(tree, "all", counter=1)
    assert code == 0 and outcomes(every)["tests.test_tax::test_rate"] == "passed"
    assert not any("test_legacy" in test for test in outcomes(every))
    code, fast = project.pytest(tree, "fast", "-m", "not slow_suite", counter=1)
    assert code == 0 and "tests.test_tax::test_rate" not in outcomes(fast)
    assert outcomes(fast)["tests.test_pricing::test_apple"] == "passed"


def test_accepting_a_path_that_is_not_proposed_is_refused_and_nothing_is_pushed(project: Project) -> None:
    for accept, said in (
        (["tests/test_tax.py", "tests/__init__.py"], "tests/__init__.py has no proposal at the head of main"),
        (["tests/test_nowhere.py"], "tests/test_nowhere.py has no proposal"),
    ):
        with pytest.raises(InvalidArgument, match=said) as caught:
            _apply(project, accept)
        assert "nothing was built" in str(caught.value)
    assert project.remote_branches() == {"main"}
    assert not (project.settings.resolved_data_dir / "pull-requests").exists()
    store = Store(project.settings.database_path)
    try:
        assert policy.provenance_records(store)[1] == 0
    finally:
        store.close()


def test_a_moved_test_is_not_proposed_again_and_a_kept_proposal_cannot_be_accepted(project: Project) -> None:
    _apply(project, ["tests/test_tax.py"])
    with pytest.raises(InvalidArgument, match=r"tests/test_tax\.py has no proposal"):
        _apply(project, ["tests/test_tax.py"])


def test_github_mode_opens_the_pull_request_with_the_token(tmp_path: Path) -> None:
    with FakeGitHub(token=TOKEN) as fake:
        made = new_project(tmp_path, github_token=TOKEN, github_base_url=fake.base_url, github_repo="acme/shop")
        made.git.commit({"shop/legacy.py": None}, "drop legacy")
        made.push_main()
        result = _apply(made, ["tests/test_legacy.py"])
        assert (result.mode, result.number, result.description_path) == ("github", 1, None)
        assert result.url == "https://github.example/acme/shop/pull/1"
        pull = fake.pulls[1]
        assert (pull["head"]["ref"], pull["base"]["ref"], pull["title"]) == (
            result.branch, "main", "Test suite: move 0, remove 1 (prodloop)"
        )  # fmt: skip
        assert [label["name"] for label in pull["labels"]] == ["prodloop", "test-suite"]
        assert "`tests/test_legacy.py`: remove" in pull["body"]
        assert TOKEN not in json.dumps([r.body for r in fake.requests])
    store = Store(made.settings.database_path)
    try:
        (record,), _ = policy.provenance_records(store)
    finally:
        store.close()
    assert record["pull_request"] == {"branch": result.branch, "base": "main", "url": result.url, "number": 1}


def test_the_command_line_lists_proposals_and_applies_them(project: Project) -> None:
    where = ["--repo", str(project.git.root), "--data-dir", str(project.settings.resolved_data_dir)]
    cli = [sys.executable, "-m", "prodloop.server.cli", "suite"]
    listed = subprocess.run([*cli, "proposals", "--quiet-days", "30", "--json", *where], capture_output=True,
                            text=True, check=False)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    actions = {p["test_path"]: p["action"] for p in json.loads(listed.stdout)["proposals"]}
    assert actions["tests/test_legacy.py"] == "remove"
    refused = subprocess.run([*cli, "apply", "tests/test_nowhere.py", "--by", "Grace", "--why", "x", *where],
                             capture_output=True, text=True, check=False)  # fmt: skip
    assert refused.returncode == 2 and "has no proposal" in refused.stderr
    done = subprocess.run([*cli, "apply", "tests/test_legacy.py", "--by", "Grace", "--why", "gone", *where],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["changes"] == [
        {"test_path": "tests/test_legacy.py", "action": "removed",
         "reasons": ["imports shop.legacy, which no longer exists"]}
    ]  # fmt: skip
    log = subprocess.run([*cli, "log", "--json", *where], capture_output=True, text=True, check=False)
    assert [(e["action"], e["test"]) for e in json.loads(log.stdout)["entries"]] == [
        ("removed", "tests/test_legacy.py")
    ]
