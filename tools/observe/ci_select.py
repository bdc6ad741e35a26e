"""`prodloop ci select --base REF`: the tests that guard what a change touches, most telling first, so they run
before the rest on every change.

For the files the change (merge-base of REF and HEAD .. HEAD) touches: the test files it changed itself; prodloop's
regression tests (provenance) whose production issue ran through a changed file; the test files that import a
changed module. Within each, files of reliability tier 2 (what production says fails) come first. The answer says
how many of the repository's test files that is.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from prodloop.server.errors import CodePathError
from prodloop.server.settings import Settings
from prodloop.server.store import Store, lineage, policy
from prodloop.tools.engine.git_repo import GitRepo
from prodloop.tools.locate.related_tests import related_tests
from prodloop.tools.locate.source_map import module_of
from prodloop.tools.observe.reliability import file_tier

_TEST_NAMES = ("test_", "_test.py")


class SelectedTest(BaseModel):
    path: str
    reasons: list[str]
    tier: int = Field(description="the highest reliability tier of the changed files it guards")


class Selection(BaseModel):
    base: str
    head: str
    changed: list[str]
    tests: list[SelectedTest]
    selected: int
    test_files: int = Field(description="test files in the repository at head")


def select_tests(store: Store, repo: GitRepo, settings: Settings, *, base: str, head: str = "HEAD") -> Selection:
    head_sha, base_sha = repo.resolve(head), repo.resolve(base)
    if head_sha is None or base_sha is None:
        missing = head if head_sha is None else base
        raise CodePathError(str(repo.path), f"has no commit {missing[:80]}", "fetch it, or name a branch or sha")
    since = repo.merge_base(base_sha, head_sha) or base_sha
    changed = sorted(repo.changed_between(since, head_sha))
    all_tests = [f for f in repo.files(head_sha) if _is_test(f)]
    found: dict[str, SelectedTest] = {}

    def add(path: str, reason: str, tier: int) -> None:
        entry = found.setdefault(path, SelectedTest(path=path, reasons=[], tier=1))
        if reason not in entry.reasons:
            entry.reasons.append(reason)
        entry.tier = max(entry.tier, tier)

    present = set(all_tests)
    for path in changed:
        if path in present:
            add(path, "changed by this change", 1)
    sources = [p for p in changed if p.endswith(".py") and not _is_test(p)]
    tiers = {p: file_tier(store, settings.reliability, p).tier for p in sources}
    records, _ = policy.provenance_records(store)
    for record in records:
        test_path = str(record.get("test_path", ""))
        if not policy.is_added(record) or test_path not in present:
            continue
        frames = {lineage.repo_path(f) for f in lineage.issue_files(store, int(record.get("issue_id", 0) or 0))}
        for path in sources:
            if any(f == path or f.endswith("/" + path) for f in frames):
                add(test_path, f"prodloop regression test of issue {record.get('issue_id')} through {path}",
                    tiers[path])  # fmt: skip
    for path in sources:
        for related in related_tests(repo, head_sha, module=module_of(path), function=None, limit=50):
            add(related.path, f"{related.reason} ({path})", tiers[path])
    order = {"changed by this change": 0}
    tests = sorted(found.values(), key=lambda t: (
        min(order.get(r, 1 if r.startswith("prodloop regression") else 2) for r in t.reasons), -t.tier, t.path,
    ))  # fmt: skip
    return Selection(base=base_sha, head=head_sha, changed=changed, tests=tests, selected=len(tests),
                     test_files=len(all_tests))  # fmt: skip


def _is_test(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return path.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))
