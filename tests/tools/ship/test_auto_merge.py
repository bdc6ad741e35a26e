"""Review attacks on the auto-merge eligibility label."""

from __future__ import annotations

import pytest

from prodloop.server.settings import AutoMergeSettings
from prodloop.server.store.receipts import MutationResult
from prodloop.tools.ship.auto_merge import eligibility


def _mutation() -> MutationResult:
    return MutationResult.model_validate(
        {"receipt_id": "r", "scope": "fix", "functions": ["x"], "not_executed": [], "tests": [], "mutants": 4,
         "killed": 4, "survived": 0, "timeout": 0, "no_tests": 0, "suspicious": 0, "score": 1.0, "min_score": 0.8,
         "passed": True, "survivors": [], "seconds": 0.0, "note": ""}
    )  # fmt: skip


@pytest.mark.parametrize(
    "path",
    [".pre-commit-config.yaml", "Jenkinsfile", ".travis.yml", "azure-pipelines.yml", "uv.lock", "poetry.lock",
     "Pipfile", "sitecustomize.py", "src/shop/_version.pth", "MANIFEST.in", "mypy.ini", ".coveragerc"],
)  # fmt: skip
def test_a_fix_touching_build_ci_or_startup_files_is_not_labelled(path: str) -> None:
    diff = f"--- a/{path}\n+++ b/{path}\n@@ -1 +1 @@\n-a\n+b\n"
    assert not eligibility(AutoMergeSettings(), _mutation(), diff, {path}).eligible


def test_lines_of_a_binary_patch_count_towards_the_size() -> None:
    diff = (
        "diff --git a/shop/_speedups.so b/shop/_speedups.so\nnew file mode 100644\nindex 0000000..1111111\n"
        "GIT binary patch\nliteral 4096\n" + "zcmeH@Jx;?w5QU#7fhxB^Q6k!P3KBF(OuS?t0009300000000000000000\n" * 80
        + "\nliteral 0\nHcmV?d00001\n\n"
    )  # fmt: skip
    assert not eligibility(AutoMergeSettings(), _mutation(), diff, {"shop/_speedups.so"}).eligible


def test_removed_lines_that_start_with_two_dashes_are_counted() -> None:
    """`--x` is a line of Python; removed it reads `---x`, which the count skips like a file header."""
    body = "".join(f"---x{i}\n" for i in range(50))
    diff = f"--- a/shop/m.py\n+++ b/shop/m.py\n@@ -1,50 +0,0 @@\n{body}"
    assert not eligibility(AutoMergeSettings(), _mutation(), diff, {"shop/m.py"}).eligible


def test_a_small_fix_to_a_python_module_is_eligible() -> None:
    diff = "--- a/shop/m.py\n+++ b/shop/m.py\n@@ -3,2 +3,2 @@ def f():\n-    return a\n+    return b\n     pass\n"
    result = eligibility(AutoMergeSettings(), _mutation(), diff, {"shop/m.py"})
    assert result.eligible and "a fix of 2 line(s) in 1 file(s)" in result.reasons[1]
