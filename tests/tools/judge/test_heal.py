"""Self-healing tests: a real behaviour change rots a test in a real repository, real pytest runs write the JUnit CI
posts, prodloop classifies each failure with evidence (test rot, regression, flaky), heals only the rotted test
through its gates (a weakened heal is refused, a faithful one passes mutation testing and ships as a PR with a
`healed` provenance record), and keeps a prodloop regression test guarding the production bug it was written for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from prodloop.server.context import AppContext
from prodloop.server.errors import HealRefused
from prodloop.server.ingest.importer import import_events
from prodloop.server.settings import load_settings
from prodloop.server.store import policy
from prodloop.tools.judge.heal import HealResult, heal_test
from prodloop.tools.observe.ci_classify import classify_failure, record_decision
from prodloop.tools.observe.ci_signals import ingest_junit
from prodloop.tools.ship.heal_pr import open_heal_pr
from tests.conftest import make_event
from tests.repos import GitFixture, new_repo

TOTAL = "\n\ndef total(items):\n    return sum(q * p for q, p in items)\n"
BUGGY = "def discount(total):\n    return {True: 10}[total >= 100]\n" + TOTAL
FIXED = "def discount(total):\n    return 0 if total < 100 else 10\n" + TOTAL
# The intended change: 15% off from 100 on (the checkout test was updated with it; test_discount was not).
PERCENT = "def discount(total):\n    return 0 if total < 100 else round(total * 0.15)\n" + TOTAL
TEST_PRICING = (
    "from shop.pricing import discount, total\n\n\n"
    "def test_discount():\n    assert discount(150) == 10\n    assert discount(50) == 0\n\n\n"
    "def test_total():\n    assert total([(2, 5), (1, 3)]) == 13\n"
)
TEST_CHECKOUT = "from shop.pricing import discount\n\n\ndef test_checkout_discount():\n    assert discount(120) == 10\n"
TEST_CHECKOUT_15 = (
    "from shop.pricing import discount\n\n\ndef test_checkout_discount():\n    assert discount(120) == 18\n"
)
HEALED = TEST_PRICING.replace("discount(150) == 10", "discount(150) == 22")
HEALED_GUARD_FIRST = HEALED.replace(
    "    assert discount(150) == 22\n    assert discount(50) == 0\n",
    "    assert discount(50) == 0\n    assert discount(150) == 22\n",
)
WEAKENED = TEST_PRICING.replace("discount(150) == 10", "discount(150) >= 0")


@dataclass
class Project:
    ctx: AppContext
    repo: GitFixture
    remote: Path
    shas: dict[str, str]
    tmp: Path

    def ci(self, name: str, *, job: str = "unit") -> None:
        """A real pytest run of the commit's tree, its JUnit XML posted as CI would."""
        sha = self.shas[name]
        tree = self.tmp / f"tree-{name}"
        if not tree.exists():
            subprocess.run(["git", "worktree", "add", "-q", "--detach", str(tree), sha], cwd=self.repo.root, check=True)
        out = self.tmp / f"{name}-{job}.xml"
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                        f"--junitxml={out}", "tests"], cwd=tree, capture_output=True, check=False,
                       env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})  # fmt: skip
        ingest_junit(self.ctx.store, self.ctx.settings, self.ctx.clock, out.read_bytes(), commit=sha, branch="main",
                     job=job, repo_files=set(self.ctx.git().files(sha)))  # fmt: skip

    def rotted(self) -> int:
        """CI passed on `fixed`, then test_discount failed on `percent` (the intended change): its failure group."""
        self.ci("fixed")
        self.ci("percent")
        return self.failure("test_discount")

    def heal(self, failure: int, code: str) -> HealResult:
        ctx = self.ctx
        return heal_test(
            ctx.store, ctx.git(), ctx.runner(), ctx.settings, ctx.clock, failure_id=failure, test_code=code
        )

    def failure(self, test: str) -> int:
        row = (
            self.ctx.store.reader()
            .execute("SELECT id FROM ci_failures WHERE test_id LIKE ? ORDER BY id DESC", (f"%::{test}",))
            .fetchone()
        )
        return int(row[0])


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    repo = new_repo(tmp_path / "shop")
    base = {"shop/__init__.py": "", "tests/__init__.py": "", "tests/test_checkout.py": TEST_CHECKOUT}
    shas = {"buggy": repo.commit({**base, "shop/pricing.py": BUGGY}, "discount table")}
    shas["fixed"] = repo.commit({"shop/pricing.py": FIXED, "tests/test_pricing.py": TEST_PRICING}, "fix small totals")
    shas["percent"] = repo.commit(
        {"shop/pricing.py": PERCENT, "tests/test_checkout.py": TEST_CHECKOUT_15}, "Discount is 15% from 100 on"
    )
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo.root), str(remote)], check=True)
    subprocess.run(["git", "remote", "add", "origin", str(remote)], cwd=repo.root, check=True)
    settings = load_settings(repo=repo.root, data_dir=tmp_path / "data", gates={"flaky_runs": 2}, base_branch="main")
    ctx = AppContext.open(settings)
    yield Project(ctx, repo, remote, shas, tmp_path)
    ctx.close()


def test_an_intended_change_rots_a_test_which_is_healed_through_the_gates_and_shipped(project: Project) -> None:
    failure = project.rotted()
    found = classify_failure(project.ctx.store, project.ctx.git(), failure)
    assert found.kind == "test_rot", found.evidence
    assert found.last_pass == project.shas["fixed"] and found.failing_commit == project.shas["percent"]
    assert any("tests/test_checkout.py" in e for e in found.evidence)  # the author updated that test with the change
    assert [s.commit for s in found.suspects] == [project.shas["percent"]]
    assert found.code_under_test == ["shop/pricing.py"]

    ctx = project.ctx
    weakened = project.heal(failure, WEAKENED)
    gates = {g.name: g for g in weakened.gates}
    assert not weakened.passed and gates["not_weakened"].passed is False
    assert "discount(150)" in gates["not_weakened"].evidence
    assert gates["passes_on_head"].passed is None  # a weakened test is never run
    with pytest.raises(HealRefused, match="gates not passed: not_weakened"):
        open_heal_pr(ctx.store, ctx.git(), ctx.runner(), ctx.settings, ctx.clock, heal_id=weakened.heal_id)

    healed = project.heal(failure, HEALED)
    gates = {g.name: g for g in healed.gates}
    assert healed.passed, [(g.name, g.evidence) for g in healed.gates]
    assert gates["fails_unhealed"].passed and gates["keeps_guarding"].passed
    assert healed.mutation is not None and healed.mutation.scope == "change"
    assert healed.mutation.functions == ["shop/pricing.py::discount"] and healed.mutation.killed >= 1

    pr = open_heal_pr(ctx.store, ctx.git(), ctx.runner(), ctx.settings, ctx.clock, heal_id=healed.heal_id)
    assert pr.mode == "local" and pr.branch.startswith("prodloop/heal-")
    pushed = subprocess.run(["git", "show", f"{pr.branch}:tests/test_pricing.py"], cwd=project.remote,
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert pushed == HEALED
    changed = subprocess.run(["git", "diff", "--name-only", f"{pr.branch}~1", pr.branch], cwd=project.remote,
                             capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    assert changed == ["tests/.prodloop/provenance.jsonl", "tests/test_pricing.py"]
    records = [r for r in policy.provenance_records(ctx.store)[0] if r.get("action") == "healed"]
    assert len(records) == 1 and records[0]["classification"] == "test_rot" and records[0]["kind"] == "heal"
    assert records[0]["ci_failure_id"] == failure and records[0]["mutation_score"] == healed.mutation.score
    from prodloop.tools.ship.suite_log import suite_log

    [logged] = [e for e in suite_log(ctx.store).entries if e.action == "healed"]
    assert logged.test == "tests/test_pricing.py::test_discount" and logged.branch == pr.branch
    assert logged.reasons[0].startswith(f"test_rot (CI failure {failure}), mutation score")
    # The base holds the healed test now (merged): a second PR of the same heal is refused, nothing pushed.
    subprocess.run(["git", "push", "-q", str(project.remote), f"{pr.commit}:refs/heads/main"], cwd=project.repo.root,
                   check=True)  # fmt: skip
    with pytest.raises(HealRefused, match="already shipped"):  # one heal, one pull request
        open_heal_pr(ctx.store, ctx.git(), ctx.runner(), ctx.settings, ctx.clock, heal_id=healed.heal_id)
    again = project.heal(failure, HEALED)
    with pytest.raises(HealRefused, match=r"main changed tests/test_pricing\.py since it was healed"):
        open_heal_pr(ctx.store, ctx.git(), ctx.runner(), ctx.settings, ctx.clock, heal_id=again.heal_id)


def test_a_prodloop_regression_test_must_keep_failing_on_the_bug_it_guards(project: Project) -> None:
    """prodloop added test_discount for a production KeyError (small totals) at the buggy commit: healed, it must
    still raise that KeyError there, not stop short at the new assertion."""
    ctx = project.ctx
    before = 1_780_000_000 - 86_400  # seen in production before the change (the repository's commits are later)
    issue = import_events(ctx, ctx.store.create_project("shop"), [("e", make_event(timestamp=before))], source="t")
    assert ctx.store.get_issue(1).exception_type == "KeyError" and issue
    node = "tests/test_pricing.py::test_discount"
    policy.save_provenance(ctx.store, [{"action": "added", "test_node": node, "test_path": "tests/test_pricing.py",
                                        "issue_id": 1, "deployed_commit": project.shas["buggy"]}], 0.0)  # fmt: skip
    failure = project.rotted()
    # The new expectation first: on the buggy commit it fails on 22 != 10 and never reaches the small total.
    cut_short = project.heal(failure, HEALED)
    gates = {g.name: g for g in cut_short.gates}
    assert gates["not_weakened"].passed and gates["passes_on_head"].passed
    assert not cut_short.passed and gates["keeps_guarding"].passed is False
    assert "never raises KeyError" in gates["keeps_guarding"].evidence
    guarded = project.heal(failure, HEALED_GUARD_FIRST)
    gates = {g.name: g for g in guarded.gates}
    assert guarded.passed, [(g.name, g.evidence) for g in guarded.gates]
    assert "issue 1 (KeyError on" in gates["keeps_guarding"].evidence


def test_a_crash_in_changed_code_is_a_regression_and_is_not_healed(project: Project) -> None:
    ctx = project.ctx
    project.ci("fixed")
    project.shas["broken"] = project.repo.commit(
        {"shop/pricing.py": PERCENT.replace("for q, p in items", "for q, p, _ in items")}, "unpack three"
    )
    project.ci("broken")
    failure = project.failure("test_total")
    found = classify_failure(ctx.store, ctx.git(), failure)
    assert found.kind == "regression" and any("raised in the code" in e for e in found.evidence), found.evidence
    with pytest.raises(HealRefused, match="classified regression"):
        project.heal(failure, HEALED)
    # An assertion failing after a code change that updated no test is a regression too, until a person says not.
    rot = project.failure("test_discount")
    assert classify_failure(ctx.store, ctx.git(), rot).kind == "test_rot"  # percent changed with checkout's test
    record_decision(ctx.store, ctx.clock, failure, kind="test_rot", by="ana", why="the tuple format changed on purpose")
    decided = classify_failure(ctx.store, ctx.git(), failure)
    assert decided.kind == "test_rot" and decided.decided_by == "ana" and "ana classified" in decided.evidence[0]


def test_a_test_that_failed_and_passed_on_one_commit_is_flaky(project: Project, tmp_path: Path) -> None:
    ctx = project.ctx
    project.ci("fixed")
    project.shas["flaky"] = project.repo.commit({"tests/test_flaky.py": (
        "import os\nimport pathlib\n\n\ndef test_sometimes():\n"
        f"    marker = pathlib.Path({str(tmp_path / 'flip')!r})\n"
        "    first = not marker.exists()\n    marker.touch()\n    assert not first\n"
    )}, "a flaky test")  # fmt: skip
    project.ci("flaky", job="unit")  # fails (the marker is not there yet)
    project.ci("flaky", job="unit")  # the same job again: passes
    found = classify_failure(ctx.store, ctx.git(), project.failure("test_sometimes"))
    assert found.kind == "flaky" and "both failed and passed" in found.evidence[0]
    assert json.loads(found.model_dump_json())["next_step"].startswith("do not heal")


def test_a_ci_regression_becomes_an_issue_its_failing_test_reproduces_and_the_fix_ships_alone(project: Project) -> None:
    from prodloop.tools.judge.candidate import run_candidate_for_issue
    from prodloop.tools.judge.mutation import mutate_validate
    from prodloop.tools.observe.ci_issue import open_regressions
    from prodloop.tools.ship.pull_request import open_pr

    ctx = project.ctx
    ctx.settings.triage.mode = "off"  # the issue's clearance is not what this test is about
    project.ci("fixed")
    broken = PERCENT.replace("for q, p in items", "for q, p, _ in items")
    project.shas["broken"] = project.repo.commit({"shop/pricing.py": broken}, "unpack three")
    project.repo.git("push", "-q", "origin", "HEAD:main")
    project.ci("broken")
    failure = project.failure("test_total")
    observe = (ctx.store, ctx.git(), ctx.settings, ctx.clock)
    assert open_regressions(*observe, [failure], branch="feature") == []  # only the default branch's failures
    [opened] = open_regressions(*observe, [failure], branch="main")
    assert opened.kind == "regression" and opened.issue_id is not None
    issue = ctx.store.get_issue(opened.issue_id)
    assert issue.exception_type == "ValueError"
    again = open_regressions(*observe, [failure], branch="refs/heads/main")  # the same group: the same issue
    assert again[0].issue_id == opened.issue_id and ctx.store.get_issue(opened.issue_id).event_count == 2
    fix = subprocess.run(["git", "diff", project.shas["broken"], project.shas["percent"], "--", "shop/pricing.py"],
                         cwd=project.repo.root, capture_output=True, text=True, check=True).stdout  # fmt: skip
    candidate = run_candidate_for_issue(*ctx.collaborators(), issue_id=opened.issue_id, fix_diff=fix,
                                        test_file="tests/test_pricing.py", test_name="test_total")  # fmt: skip
    gates = {g.name: g for g in candidate.gates}
    assert gates["reproduces"].passed, gates["reproduces"].evidence  # the failing test is the reproduction
    assert candidate.passed, [(g.name, g.evidence) for g in candidate.gates if not g.passed]
    assert mutate_validate(*ctx.collaborators(), receipt_id=candidate.receipt_id).passed
    pr = open_pr(*ctx.collaborators(), receipt_id=candidate.receipt_id)
    changed = subprocess.run(["git", "diff", "--name-only", f"{pr.branch}~1", pr.branch], cwd=project.remote,
                             capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    assert changed == ["shop/pricing.py", "tests/.prodloop/provenance.jsonl"]  # the test is on main already
