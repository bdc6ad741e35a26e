"""Flaky quarantine on a real repository with a bare remote and real pytest runs: a test that flips on a counter file
is found flaky from real JUnit XML, quarantined by a pushed commit that adds exactly its decorator, runs as xfail or
xpass (never a failure) under the project's xfail_strict, and is lifted by a commit removing exactly that decorator
after K clean runs (an xfailed run, JUnit `skipped`, is not clean). The suite change log lists every change in order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from prodloop.server.clock import FixedClock
from prodloop.server.context import AppContext
from prodloop.server.ingest.importer import import_events
from prodloop.server.settings import Settings
from prodloop.server.store import policy, receipts
from prodloop.tools.engine.git_repo import GitRepo
from prodloop.tools.observe.ci_signals import ingest_junit
from prodloop.tools.ship.quarantine import (
    LiftProposal,
    QuarantineProposal,
    lift_quarantine,
    locate_test,
    propose_quarantine,
)
from prodloop.tools.ship.suite import suggest_suite_changes
from prodloop.tools.ship.suite_apply import apply_suite_changes
from prodloop.tools.ship.suite_log import suite_log
from tests.conftest import make_event
from tests.tools.ship.suite_project import PRICING_TESTS, Project, new_project, outcomes

FLAKY = "tests.test_pricing::test_flaky"
NODE = "tests/test_pricing.py::test_flaky"
REASON = "prodloop quarantine: flaky on 3 of 3 commits; lifted after 3 clean runs"
DECORATOR = f'@pytest.mark.xfail(strict=False, reason="{REASON}")\n'


class Loop:
    """The project, its store and a clock that moves one minute per CI run."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.settings: Settings = project.settings
        self.clock = FixedClock(at=1_780_000_000.0 + 40 * 86_400)
        self.ctx = AppContext.open(self.settings, clock=self.clock)
        self.store = self.ctx.store
        self.repo = GitRepo(project.git.root)

    def ci(self, tree: Path, commit: str, name: str, *, counter: int | None = None) -> dict[str, str]:
        """One CI run: real pytest on `tree`, its JUnit ingested for `commit`; the outcomes."""
        self.clock.at += 60
        code, junit = self.project.pytest(tree, name, counter=counter)
        assert code in (0, 1)
        ingest_junit(self.store, self.settings, self.clock, junit, commit=commit, branch="main", job="unit",
                     run_url=f"https://ci.example/runs/{name}")  # fmt: skip
        return outcomes(junit)

    def quarantine(self, **kw: Any) -> QuarantineProposal:
        self.clock.at += 60
        return propose_quarantine(self.store, self.repo, self.settings, self.clock, by="Grace", **kw)

    def lift(self, **kw: Any) -> LiftProposal:
        self.clock.at += 60
        return lift_quarantine(self.store, self.repo, self.settings, self.clock, by="Grace", **kw)

    def close(self) -> None:
        self.repo.close()
        self.ctx.close()


@pytest.fixture
def loop(tmp_path: Path) -> Any:
    made = Loop(new_project(tmp_path, suite={"lift_after_clean_runs": 3}))
    yield made
    made.close()


def _flaky_on_three_commits(loop: Loop) -> str:
    """Three commits, CI twice on each: the flaky test fails once and passes once on every one."""
    project = loop.project
    for n in range(3):
        sha = project.git.commit({"README.md": f"shop {n}\n"}, f"docs {n}")
        project.push_main()
        tree = project.checkout(sha, f"c{n}")
        first = loop.ci(tree, sha, f"c{n}-1", counter=0)
        second = loop.ci(tree, sha, f"c{n}-2")
        assert (first[FLAKY], second[FLAKY]) == ("failure:", "passed")
        assert first["tests.test_pricing.TestBulk::test_bulk[2]"] == "passed"
    return sha


def test_a_flaky_test_is_quarantined_runs_as_xfail_and_is_lifted_after_clean_runs(loop: Loop) -> None:
    project = loop.project
    main = _flaky_on_three_commits(loop)
    listed = loop.quarantine(apply=False)
    assert [(t.test_node, t.flaky_commits, t.commits, t.flake_rate) for t in listed.tests] == [(NODE, 3, 3, 1.0)]
    assert listed.tests[0].run_urls == [f"https://ci.example/runs/c{n}-1" for n in (2, 1, 0)]
    assert listed.applied is None and project.remote_branches() == {"main"}

    done = loop.quarantine(apply=True, why="blocks merges")
    assert done.applied is not None and done.applied.base == "main"
    commit = done.applied.commit
    assert project.remote_branches() == {"main", done.applied.branch}
    assert done.applied.branch.startswith("prodloop/quarantine-")
    # The commit adds exactly the decorator (and the provenance line), every other byte as it was.
    quarantined = project.show(commit, "tests/test_pricing.py")
    assert quarantined == PRICING_TESTS.replace("def test_flaky", DECORATOR + "def test_flaky")
    names = subprocess.run(["git", "-C", str(project.remote), "diff", "--name-only", main, commit],
                           capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    assert names == ["tests/.prodloop/provenance.jsonl", "tests/test_pricing.py"]
    (line,) = project.show(commit, "tests/.prodloop/provenance.jsonl").splitlines()
    record = json.loads(line)
    assert (record["action"], record["test_node"], record["test_ids"], record["flaky_commits"]) == (
        "quarantined", NODE, [FLAKY], 3
    )  # fmt: skip
    assert record["run_urls"][0] == "https://ci.example/runs/c2-1" and record["why"] == "blocks merges"
    assert loop.quarantine(apply=False).already_quarantined == [NODE]  # not proposed twice

    # CI on the quarantined tree: the flaky test is an xfail (JUnit skipped) or an xpass (passed), never a failure,
    # although the project sets xfail_strict = true.
    project.push_main(commit)  # the PR is merged
    tree = project.checkout(commit, "quarantined")
    xfail = loop.ci(tree, commit, "q-1", counter=0)
    assert xfail[FLAKY] == "skipped:pytest.xfail" and "failure:" not in xfail.values()
    xpass = loop.ci(tree, commit, "q-2")
    assert xpass[FLAKY] == "passed"
    lift = loop.lift(apply=False)
    assert [(t.test_node, t.runs_since, t.clean_runs, t.liftable) for t in lift.tests] == [(NODE, 2, 1, False)]
    loop.ci(tree, commit, "q-3", counter=1)
    loop.ci(tree, commit, "q-4", counter=1)
    loop.ci(tree, commit, "q-5", counter=0)  # an xfail breaks the streak
    assert loop.lift(apply=False).tests[0].clean_runs == 0
    for n in range(6, 9):
        assert loop.ci(tree, commit, f"q-{n}", counter=1)[FLAKY] == "passed"
    ready = loop.lift(apply=True)
    assert [(t.clean_runs, t.liftable) for t in ready.tests] == [(3, True)]
    assert ready.applied is not None and ready.applied.branch.startswith("prodloop/unquarantine-")
    assert project.show(ready.applied.commit, "tests/test_pricing.py") == PRICING_TESTS
    names = subprocess.run(["git", "-C", str(project.remote), "diff", "--name-only", commit, ready.applied.commit],
                           capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    assert names == ["tests/.prodloop/provenance.jsonl", "tests/test_pricing.py"]
    lifted = json.loads(project.show(ready.applied.commit, "tests/.prodloop/provenance.jsonl").splitlines()[-1])
    assert (lifted["action"], lifted["clean_runs"], lifted["test_node"]) == ("unquarantined", 3, NODE)
    assert loop.lift(apply=False).tests == []  # lifted: no longer quarantined
    assert loop.quarantine(apply=False).tests == []  # its old flakes do not quarantine it again


def test_the_change_log_lists_every_suite_change_in_order(loop: Loop) -> None:
    project = loop.project
    _add_regression_test_record(loop)
    project.git.commit({"shop/legacy.py": None}, "drop legacy")
    project.push_main()
    applied = apply_suite_changes(loop.store, loop.repo, loop.settings, loop.clock, accept=["tests/test_tax.py",
                                  "tests/test_legacy.py"], by="Grace", why="quiet", quiet_days=30)  # fmt: skip
    project.push_main(applied.commit)  # merged
    project.git.git("reset", "-q", "--hard", applied.commit)
    _flaky_on_three_commits(loop)
    quarantined = loop.quarantine(apply=True)
    assert quarantined.applied is not None
    project.push_main(quarantined.applied.commit)
    tree = project.checkout(quarantined.applied.commit, "q")
    for n in range(3):
        loop.ci(tree, quarantined.applied.commit, f"q-{n}", counter=1)
    assert loop.lift(apply=True).applied is not None

    log = suite_log(loop.store, limit=50)
    assert [(e.action, e.test) for e in log.entries] == [
        ("added", "tests/test_regression.py::test_r"), ("moved", "tests/test_tax.py"),
        ("removed", "tests/test_legacy.py"), ("quarantined", NODE), ("unquarantined", NODE),
    ]  # fmt: skip
    assert log.total == 5 and log.next_cursor is None
    assert log.entries[0].issue_id == 1 and log.entries[0].branch == "prodloop/1-keyerror"
    assert log.entries[2].reasons[0] == "imports shop.legacy, which no longer exists"
    assert log.entries[4].reasons == ["3 clean CI runs in a row"]
    first = suite_log(loop.store, limit=2)
    assert first.next_cursor == "suite-log:2" and len(first.entries) == 2
    rest = suite_log(loop.store, limit=50, cursor=first.next_cursor)
    assert [e.action for e in rest.entries] == ["removed", "quarantined", "unquarantined"]
    assert [e.action for e in suite_log(loop.store, test_path="tests/test_tax.py").entries] == ["moved"]


def test_a_quarantined_or_moved_record_is_not_taken_for_a_test_prodloop_added(loop: Loop) -> None:
    """Readers of provenance that mean prodloop's regression tests read only `added` records."""
    policy.save_provenance(loop.store, [{"test_node": NODE, "test_path": "tests/test_pricing.py",
                                         "action": "quarantined", "test_ids": [FLAKY]}], loop.clock.now())  # fmt: skip
    found = suggest_suite_changes(loop.store, loop.repo, loop.clock, quiet_days=30)
    pricing = next(p for p in found.proposals if p.test_path == "tests/test_pricing.py")
    assert (pricing.action, pricing.provenance) == ("move_to_slow_suite", None)
    assert not any("added by prodloop" in r for p in found.proposals for r in p.reasons)


@pytest.mark.parametrize(
    ("test_id", "expected"),
    [
        ("tests.test_pricing::test_flaky", ("tests/test_pricing.py", (), "test_flaky")),
        ("tests.test_pricing.TestBulk::test_bulk[2]", ("tests/test_pricing.py", ("TestBulk",), "test_bulk")),
        ("test_pricing::test_apple", ("tests/test_pricing.py", (), "test_apple")),  # pytest run from tests/
        ("elsewhere.TestBulk::test_bulk[1]", ("tests/test_pricing.py", ("TestBulk",), "test_bulk")),  # by name
        ("tests.test_pricing::test_gone", "no test file defines test_gone"),
        ("tests.test_pricing::not a name", "the test id names no Python function"),
    ],
)
def test_a_junit_test_id_is_mapped_to_its_file_and_function_or_reported(
    loop: Loop, test_id: str, expected: object
) -> None:
    assert locate_test(loop.repo, loop.project.git.shas[-1], test_id) == expected


def test_a_test_defined_in_two_files_is_reported_not_guessed(loop: Loop) -> None:
    loop.project.git.commit({"tests/test_other.py": "def test_apple():\n    pass\n"}, "another apple")
    assert locate_test(loop.repo, loop.project.git.shas[-1], "gone.module::test_apple") == (
        "2 test files define test_apple"
    )


def _add_regression_test_record(loop: Loop) -> None:
    """A regression test prodloop added earlier: the record open_pr stores (the old format, with no action)."""
    loop.clock.at += 60
    import_events(loop.ctx, loop.store.create_project("shop"), [("e", make_event())], source="test")
    receipts.save(loop.store, receipts.Receipt("r" * 32, 1, "e", "c", "tests/test_regression.py", "test_r", "", "",
                                               "", "", True, (), 0.0, 0.0))  # fmt: skip
    slot, _ = policy.reserve_pull_request(loop.store, 1, "r" * 32, max_per_issue=3, max_per_day=9,
                                          now=loop.clock.now())  # fmt: skip
    assert slot is not None
    row = policy.PullRequestRow(slot, 1, "r" * 32, "prodloop/1-keyerror", "c", None, None, "local", loop.clock.now())
    policy.complete_pull_request(loop.store, row, {"test_node": "tests/test_regression.py::test_r",
                                                   "test_path": "tests/test_regression.py", "issue_id": 1})  # fmt: skip


def test_the_command_line_lists_quarantine_and_lift_and_applying_needs_a_person(loop: Loop) -> None:
    _flaky_on_three_commits(loop)
    loop.ctx.close()
    where = ["--repo", str(loop.project.git.root), "--data-dir", str(loop.settings.resolved_data_dir)]
    cli = [sys.executable, "-m", "prodloop.server.cli", "ci"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRODLOOP_")}
    listed = subprocess.run([*cli, "quarantine", *where], capture_output=True, text=True, env=env, check=False)
    assert listed.returncode == 0, listed.stderr
    assert [t["test_node"] for t in json.loads(listed.stdout)["tests"]] == [NODE]
    refused = subprocess.run([*cli, "quarantine", "--apply", *where], capture_output=True, text=True, env=env,
                             check=False)  # fmt: skip
    assert refused.returncode == 2 and "--by NAME" in refused.stderr
    assert loop.project.remote_branches() == {"main"}
    lift = subprocess.run([*cli, "lift", *where], capture_output=True, text=True, env=env, check=False)
    assert lift.returncode == 0 and json.loads(lift.stdout)["tests"] == []


def test_a_flaky_prodloop_regression_test_is_left_to_a_person_not_quarantined(loop: Loop) -> None:
    """Hiding the test that guards a production bug is a person's decision, never a proposal."""
    _flaky_on_three_commits(loop)
    policy.save_provenance(loop.store, [{"test_node": NODE, "test_path": "tests/test_pricing.py", "issue_id": 1,
                                         "action": "added"}], loop.clock.now())  # fmt: skip
    listed = loop.quarantine(apply=False)
    assert listed.tests == []
    assert [(u.test_id, u.why) for u in listed.unmapped] == [
        (FLAKY, f"{NODE} is prodloop's regression test of a production issue")
    ]
