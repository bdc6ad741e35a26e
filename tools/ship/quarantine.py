"""Flaky-test quarantine: `propose_quarantine` and `lift_quarantine`, from the CI results `ci_signals` stores.

A test flaky (failed and passed on the same commit) on at least `suite.quarantine_min_rate` of at least
`suite.quarantine_min_commits` commits is quarantined: `@pytest.mark.xfail(strict=False, reason="prodloop quarantine:
...")` directly above its `def`, the source otherwise untouched. `strict=False` is explicit because many repositories
set `xfail_strict = true`: a quarantined test that passes must not fail the run.

A JUnit test id (`tests.test_x::test_y`, `tests.test_x.TestC::test_y`, `test_y[a-b]`) is mapped to a file and
function at the base branch's head: the module path names the file (the longest prefix that is a test file), the rest
the class chain; else the one test file defining the function. Tests that cannot be mapped are reported, not guessed.

Lifting reads how pytest writes JUnit for a non-strict xfail: an xpassed test is a plain passed `testcase`, an xfailed
one a `skipped` (type `pytest.xfail`). So only `passed` with no reruns is clean; a skipped run (an xfail) breaks the
streak. After `suite.lift_after_clean_runs` clean runs in a row (CI runs stored after the quarantine), the decorator is
removed again. With `apply` each is one commit and PR with provenance (actions `quarantined`, `unquarantined`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from prodloop.server.clock import Clock
from prodloop.server.errors import SuiteChangeRefused
from prodloop.server.settings import Settings
from prodloop.server.store import Store, ci, policy
from prodloop.tools.engine._shape import cap, iso, md_inline
from prodloop.tools.engine.git_repo import GitRepo
from prodloop.tools.judge.test_checks import is_test_module
from prodloop.tools.ship.suite_edits import add_decorator, find_function, remove_decorator
from prodloop.tools.ship.suite_ship import Base, ShippedChange, base_of, branch_for, labels_for, ship

MARK = "prodloop quarantine:"


class QuarantineCandidate(BaseModel):
    test_node: str = Field(description="file::[Class::]function at the base branch's head")
    test_path: str
    test_ids: list[str] = Field(description="the JUnit ids it ran under (one per parameter set)")
    flaky_commits: int
    commits: int
    flake_rate: float
    run_urls: list[str] = Field(description="CI runs it failed in, newest first (when CI sent their URLs)")


class UnmappedTest(BaseModel):
    test_id: str
    why: str


class QuarantineProposal(BaseModel):
    base: str
    head: str
    tests: list[QuarantineCandidate]
    unmapped: list[UnmappedTest] = Field(
        description="flaky tests left out, with why: no single function found, or a prodloop regression test"
    )
    already_quarantined: list[str]
    applied: ShippedChange | None = Field(description="the commit and PR, with --apply; else null (proposal only)")
    provenance: list[dict[str, Any]]


class LiftCandidate(BaseModel):
    test_node: str
    quarantined_at: str | None
    runs_since: int = Field(description="CI runs since the quarantine that ran it")
    clean_runs: int = Field(description="the latest of them in a row that passed with no reruns")
    liftable: bool
    why: str


class LiftProposal(BaseModel):
    base: str
    head: str
    required_clean_runs: int
    tests: list[LiftCandidate]
    applied: ShippedChange | None
    provenance: list[dict[str, Any]]


def propose_quarantine(
    store: Store, repo: GitRepo, settings: Settings, clock: Clock, *, by: str, why: str | None = None, apply: bool
) -> QuarantineProposal:
    """The flaky tests over the bars, mapped to their functions; with `apply`, one commit and PR quarantining them."""
    rules = settings.suite
    base = base_of(repo, settings)
    latest = policy.latest_actions(store)
    guarding = {str(r.get("test_node")) for r in policy.provenance_records(store)[0] if policy.is_added(r)}
    found: dict[str, QuarantineCandidate] = {}
    unmapped: list[UnmappedTest] = []
    already: list[str] = []
    for test_id, flaky, commits in ci.flaky_tests(store):
        if commits < rules.quarantine_min_commits or flaky / commits < rules.quarantine_min_rate:
            continue
        located = locate_test(repo, base.sha, test_id)
        if isinstance(located, str):
            unmapped.append(UnmappedTest(test_id=cap(test_id, 500) or "", why=located))
            continue
        path, classes, name = located
        node = "::".join([path, *classes, name])
        action, _, lifted_at = latest.get(node, ("", {}, 0.0))
        if action == "unquarantined":  # judged again only on the runs since its quarantine was lifted
            again = ci.flaky_tests(store, test_ids=[test_id], since=lifted_at)
            flaky, commits = (again[0][1], again[0][2]) if again else (0, 0)
            if commits < rules.quarantine_min_commits or flaky / commits < rules.quarantine_min_rate:
                continue
        if node in guarding:  # hiding a production bug's regression test is a person's decision, by hand
            why = f"{node} is prodloop's regression test of a production issue"
            unmapped.append(UnmappedTest(test_id=cap(test_id, 500) or "", why=why))
            continue
        decorated = _quarantine_line(repo.read(base.sha, path) or "", name, classes)
        if action == "quarantined" or decorated:
            if node not in already:
                already.append(node)
            continue
        rate = round(flaky / commits, 4)
        entry = found.setdefault(node, QuarantineCandidate(test_node=node, test_path=path, test_ids=[],
                                                           flaky_commits=flaky, commits=commits, flake_rate=rate,
                                                           run_urls=[]))  # fmt: skip
        entry.test_ids.append(test_id)
        if rate > entry.flake_rate:
            entry.flaky_commits, entry.commits, entry.flake_rate = flaky, commits, rate
    tests = list(found.values())
    for t in tests:
        t.run_urls = [cap(u, 500) or "" for u in ci.failing_run_urls(store, t.test_ids)]
    proposal = QuarantineProposal(base=base.name, head=base.sha, tests=tests, unmapped=unmapped,
                                  already_quarantined=already, applied=None, provenance=[])  # fmt: skip
    if not apply or not tests:
        return proposal
    now = clock.now()
    branch = branch_for(repo, settings, f"prodloop/quarantine-{(iso(now) or '')[:10]}")
    files: dict[str, str] = {}
    records = []
    for t in tests:
        reason = (f"{MARK} flaky on {t.flaky_commits} of {t.commits} commits; "
                  f"lifted after {rules.lift_after_clean_runs} clean runs")  # fmt: skip
        _, *chain, name = t.test_node.split("::")
        text = files.get(t.test_path, repo.read(base.sha, t.test_path) or "")
        edited = add_decorator(text, name, tuple(chain), f'pytest.mark.xfail(strict=False, reason="{reason}")')
        if edited is None:
            raise SuiteChangeRefused(
                "quarantine", f"{t.test_node} cannot be edited on {base.name}", "quarantine it by hand"
            )
        files[t.test_path] = edited
        records.append({
            "test_node": t.test_node, "test_path": t.test_path, "action": "quarantined", "test_ids": t.test_ids,
            "flaky_commits": t.flaky_commits, "commits": t.commits, "flake_rate": t.flake_rate,
            "run_urls": t.run_urls, "lift_after_clean_runs": rules.lift_after_clean_runs, "reason": reason,
            "accepted_by": cap(by, 200), "why": cap(why, 1000), "pull_request": {"branch": branch, "base": base.name},
            "created_at": iso(now),
        })  # fmt: skip
    lines = [f"- `{t.test_node}`: flaky on {t.flaky_commits} of {t.commits} commits ({t.flake_rate:.0%})"
             + "".join(f"\n  - {md_inline(u, 500)}" for u in t.run_urls) for t in tests]  # fmt: skip
    body = _body(by, why, "These tests failed and passed on the same commit in CI. Each is marked "
                 "`xfail(strict=False)`: it still runs, a failure no longer fails the suite, and prodloop proposes "
                 f"lifting it after {rules.lift_after_clean_runs} clean CI runs in a row.", lines)  # fmt: skip
    title = f"Quarantine {len(tests)} flaky test{'s' * (len(tests) != 1)} (prodloop)"
    proposal.applied = _ship(store, repo, settings, base, branch, files, records, title, body, now)
    proposal.provenance = records
    return proposal


def lift_quarantine(
    store: Store, repo: GitRepo, settings: Settings, clock: Clock, *, by: str, apply: bool
) -> LiftProposal:
    """The quarantined tests and their clean CI runs since; with `apply`, one commit and PR lifting those ready."""
    needed = settings.suite.lift_after_clean_runs
    base = base_of(repo, settings)
    tests: list[LiftCandidate] = []
    for node, (action, record, created) in sorted(policy.latest_actions(store).items()):
        if action != "quarantined":
            continue
        ids = [str(i) for i in record.get("test_ids", [])]
        per_run: dict[int, bool] = {}
        for run, outcome, reruns, commit in ci.results_since(store, ids, created):
            if repo.resolve(commit) is None:
                continue  # a run of a commit this repository does not hold proves nothing of its tests
            per_run[run] = per_run.get(run, True) and outcome == "passed" and reruns == 0
        clean = 0
        for ok in reversed(list(per_run.values())):
            if not ok:
                break
            clean += 1
        path, *classes, name = node.split("::")
        present = _quarantine_line(repo.read(base.sha, path) or "", name, tuple(classes))
        if clean < needed:
            why = f"{clean} of {needed} clean runs in a row since the quarantine"
        elif not present:
            why = f"no prodloop quarantine decorator on it at the head of {base.name} (merged? removed by hand?)"
        else:
            why = f"{clean} clean runs in a row since the quarantine"
        tests.append(LiftCandidate(test_node=node, quarantined_at=iso(created), runs_since=len(per_run),
                                   clean_runs=clean, liftable=clean >= needed and present, why=why))  # fmt: skip
    result = LiftProposal(base=base.name, head=base.sha, required_clean_runs=needed, tests=tests, applied=None,
                          provenance=[])  # fmt: skip
    lifted = [t for t in tests if t.liftable]
    if not apply or not lifted:
        return result
    now = clock.now()
    branch = branch_for(repo, settings, f"prodloop/unquarantine-{(iso(now) or '')[:10]}")
    files: dict[str, str] = {}
    records = []
    for t in lifted:
        path, *classes, name = t.test_node.split("::")
        edited = remove_decorator(files.get(path, repo.read(base.sha, path) or ""), name, tuple(classes), MARK)
        if edited is None:
            raise SuiteChangeRefused("lift", f"the decorator of {t.test_node} cannot be removed", "remove it by hand")
        files[path] = edited
        records.append({"test_node": t.test_node, "test_path": path, "action": "unquarantined",
                        "clean_runs": t.clean_runs, "required_clean_runs": needed, "accepted_by": cap(by, 200),
                        "pull_request": {"branch": branch, "base": base.name}, "created_at": iso(now)})  # fmt: skip
    lines = [f"- `{t.test_node}`: {t.clean_runs} clean CI runs in a row since {t.quarantined_at}" for t in lifted]
    body = _body(by, None, "These quarantined tests passed, with no reruns, in every recent CI run: the quarantine "
                 "decorator is removed and their failures count again.", lines)  # fmt: skip
    title = f"Lift the quarantine of {len(lifted)} test{'s' * (len(lifted) != 1)} (prodloop)"
    result.applied = _ship(store, repo, settings, base, branch, files, records, title, body, now)
    result.provenance = records
    return result


def locate_test(repo: GitRepo, sha: str, test_id: str) -> tuple[str, tuple[str, ...], str] | str:
    """(file, class chain, function) a JUnit test id names at `sha`, or why it cannot be told."""
    classname, _, raw = test_id.rpartition("::")
    name = raw.split("[", 1)[0]
    if not name.isidentifier():
        return "the test id names no Python function"
    tests = {p.removesuffix(".py").replace("/", "."): p for p in repo.files(sha) if is_test_module(p)}
    parts = classname.split(".") if classname else []
    for i in range(len(parts), 0, -1):
        prefix, classes = ".".join(parts[:i]), tuple(parts[i:])
        paths = [p for dotted, p in tests.items() if dotted == prefix or dotted.endswith("." + prefix)]
        if len(paths) == 1 and find_function(repo.read(sha, paths[0]) or "", name, classes) is not None:
            return paths[0], classes, name
    classes = tuple(parts[-1:]) if parts and parts[-1][:1].isupper() else ()
    found = [(p, c) for p in tests.values() for c in {classes, ()}
             if find_function(repo.read(sha, p) or "", name, c) is not None]  # fmt: skip
    if len(found) == 1:
        return found[0][0], found[0][1], name
    return f"{len(found)} test files define {name}" if found else f"no test file defines {name}"


def _quarantine_line(text: str, name: str, classes: tuple[str, ...]) -> bool:
    found = find_function(text, name, classes)
    return found is not None and any(MARK in source for _, _, source in found.decorators)


def _body(by: str, why: str | None, intro: str, lines: list[str]) -> str:
    said = f"Asked by {md_inline(by, 200)}" + (f": {md_inline(why, 1000)}" if why else "")
    return "\n".join([said, "", intro, "", *lines, "", "One provenance line per change in the ledger."]) + "\n"


def _ship(
    store: Store, repo: GitRepo, settings: Settings, base: Base, branch: str, files: dict[str, str],
    records: list[dict[str, Any]], title: str, body: str, now: float,
) -> ShippedChange:  # fmt: skip
    return ship(store, repo, settings, what=title, base=base, branch=branch, files=files, deleted=(), records=records,
                title=title, body=body, labels=labels_for(settings, "flaky"), at=now)  # fmt: skip
