"""Auto-merge eligibility of a prodloop PR: labelled when every gate passed (a PR exists only then), the mutation
score is at least `auto_merge.min_mutation_score` (stricter than the gates'), and the change is a test plus a small
fix: at most `max_fix_lines` lines added or removed (counted hunk by hunk) in at most `max_fix_files` files, each an
existing Python module of the code (no start-up, build, CI or configuration file, where a small change reaches far;
no file added, deleted, renamed, re-moded or binary). prodloop labels; merging stays the repository's decision (a
merge queue or a person acting on the label)."""

from __future__ import annotations

import re

from pydantic import BaseModel

from prodloop.server.settings import AutoMergeSettings
from prodloop.server.store.receipts import MutationResult

# Allowed, not denied: a fix may touch only existing Python modules of the code itself. Files Python or a tool runs
# on its own (at start-up, at collection, at build) reach far from a small diff.
_STARTUP = {"conftest.py", "setup.py", "noxfile.py", "sitecustomize.py", "usercustomize.py", "fabfile.py",
            "__main__.py", "tasks.py"}  # fmt: skip
_STRUCTURE = ("GIT binary patch", "Binary files ", "new file mode", "deleted file mode", "old mode", "new mode",
              "rename from", "copy from", "similarity index")  # fmt: skip
_HUNK = re.compile(r"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")


class Eligibility(BaseModel):
    eligible: bool
    reasons: list[str]


def eligibility(
    cfg: AutoMergeSettings, mutation: MutationResult, fix_diff: str, fix_files: set[str]
) -> Eligibility:  # fmt: skip
    lines = changed_lines(fix_diff)
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
    outside = sorted(f for f in fix_files if not f.endswith(".py") or f.rsplit("/", 1)[-1] in _STARTUP
                     or f.startswith(".") or "/." in f)  # fmt: skip
    if outside:
        reasons.append(f"the fix changes more than Python modules of the code ({', '.join(outside[:3])})")
        blocked = True
    shape = sorted({marker.strip() for marker in _STRUCTURE for line in fix_diff.splitlines()
                    if line.startswith(marker)})  # fmt: skip
    if shape:
        reasons.append(f"the fix adds, deletes, renames or re-modes files or carries binary data ({', '.join(shape)})")
        blocked = True
    return Eligibility(eligible=not blocked, reasons=reasons)


def changed_lines(diff: str) -> int:
    """Lines a unified diff adds or removes, read hunk by hunk (a removed line may itself start with `--`)."""
    count, old_left, new_left = 0, 0, 0
    for line in diff.splitlines():
        if old_left > 0 or new_left > 0:
            kind = line[:1]
            if kind == "-":
                old_left, count = old_left - 1, count + 1
            elif kind == "+":
                new_left, count = new_left - 1, count + 1
            elif kind == "\\":
                continue  # "\ No newline at end of file"
            else:
                old_left, new_left = old_left - 1, new_left - 1
            continue
        hunk = _HUNK.match(line)
        if hunk:
            old_left, new_left = int(hunk.group(1) or 1), int(hunk.group(2) or 1)
    return count
