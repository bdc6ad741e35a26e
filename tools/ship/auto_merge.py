"""Auto-merge eligibility of a prodloop PR: labelled when every gate passed (a PR exists only then), the mutation
score is at least `auto_merge.min_mutation_score` (stricter than the gates'), and the change is a test plus a small
fix: at most `max_fix_lines` lines added or removed in at most `max_fix_files` files, none of them the build, CI,
packaging or test configuration (where a small change reaches far). prodloop labels; merging stays the
repository's decision (a merge queue or a person acting on the label)."""

from __future__ import annotations

from pydantic import BaseModel

from prodloop.server.settings import AutoMergeSettings
from prodloop.server.store.receipts import MutationResult

_FAR_REACHING = ("conftest.py", "setup.py", "setup.cfg", "pyproject.toml", "tox.ini", "noxfile.py", "pytest.ini",
                 "requirements", "Makefile", "Dockerfile")  # fmt: skip
_FAR_FOLDERS = (".github/", ".ci/", ".gitlab", ".circleci/", "ci/")


class Eligibility(BaseModel):
    eligible: bool
    reasons: list[str]


def eligibility(
    cfg: AutoMergeSettings, mutation: MutationResult, fix_diff: str, fix_files: set[str]
) -> Eligibility:  # fmt: skip
    lines = sum(
        1 for line in fix_diff.splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    )  # fmt: skip
    reasons, blocked = [], False
    score = mutation.score if mutation.score is not None else 0.0
    if score >= cfg.min_mutation_score:
        reasons.append(f"mutation score {mutation.score} >= {cfg.min_mutation_score}")
    else:
        reasons.append(f"mutation score {mutation.score} is under the auto-merge bar {cfg.min_mutation_score}")
        blocked = True
    if lines <= cfg.max_fix_lines and len(fix_files) <= cfg.max_fix_files:
        reasons.append(f"a test plus a fix of {lines} line(s) in {len(fix_files)} file(s)")
    else:
        reasons.append(f"the fix changes {lines} line(s) in {len(fix_files)} file(s): over "
                       f"{cfg.max_fix_lines} lines / {cfg.max_fix_files} files")  # fmt: skip
        blocked = True
    far = sorted(f for f in fix_files if f.rsplit("/", 1)[-1].startswith(_FAR_REACHING) or f.startswith(_FAR_FOLDERS))
    if far:
        reasons.append(f"the fix changes build, CI or test configuration ({', '.join(far[:3])})")
        blocked = True
    return Eligibility(eligible=not blocked, reasons=reasons)
