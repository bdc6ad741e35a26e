"""The text edits of suite changes: a module mark, a decorator and its removal, a marker declared where the
repository declares markers; every line not edited stays as it was, and what cannot be edited safely is refused."""

from __future__ import annotations

import pytest

from prodloop.tools.ship.suite_edits import add_decorator, add_pytestmark, register_marker, remove_decorator

MARK = "pytest.mark.slow_suite"


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("import pytest\n\npytestmark = pytest.mark.db\n", f"import pytest\n\npytestmark = [pytest.mark.db, {MARK}]\n"),
        ("import pytest\npytestmark = [\n    pytest.mark.db,\n]\n",
         f"import pytest\npytestmark = [\n    pytest.mark.db,\n    {MARK},\n]\n"),
        ("import pytest\npytestmark = (pytest.mark.a,)  # why\n",
         f"import pytest\npytestmark = [pytest.mark.a, {MARK}]  # why\n"),
        ("def test_a():\r\n    pass\r\n",
         f"import pytest\r\n\r\npytestmark = {MARK}\r\n\r\ndef test_a():\r\n    pass\r\n"),
        (f"import pytest\npytestmark = [{MARK}]\n", f"import pytest\npytestmark = [{MARK}]\n"),
    ],
)  # fmt: skip
def test_the_module_is_marked_and_an_existing_pytestmark_becomes_a_list(before: str, after: str) -> None:
    assert add_pytestmark(before, "slow_suite") == after


def test_unparsable_source_is_not_edited() -> None:
    assert add_pytestmark("def broken(:\n", "slow_suite") is None
    assert add_decorator("def broken(:\n", "broken", (), "pytest.mark.xfail") is None


def test_a_decorator_goes_above_a_methods_def_and_comes_off_again_exactly() -> None:
    text = (
        "import pytest\n\n\nclass TestC:\n    @pytest.mark.parametrize('a', [1])\n    def test_p(self, a):\n"
        "        pass\n"
    )
    marked = add_decorator(
        text, "test_p", ("TestC",), 'pytest.mark.xfail(strict=False, reason="prodloop quarantine: x")'
    )
    assert marked == text.replace(
        "    def test_p", '    @pytest.mark.xfail(strict=False, reason="prodloop quarantine: x")\n    def test_p'
    )
    assert remove_decorator(marked or "", "test_p", ("TestC",), "prodloop quarantine:") == text
    assert remove_decorator(text, "test_p", ("TestC",), "prodloop quarantine:") is None  # not there: nothing guessed
    assert add_decorator(text, "test_p", ("Other",), "pytest.mark.xfail") is None


STRICT_TOML = '[tool.pytest.ini_options]\naddopts = "--strict-markers"\n'


@pytest.mark.parametrize(
    ("configs", "path", "declared"),
    [
        ({"pyproject.toml": '[tool.pytest.ini_options]\nmarkers = ["db: x"]\n'}, "pyproject.toml",
         '[tool.pytest.ini_options]\nmarkers = ["db: x", "slow_suite: why"]\n'),
        ({"pyproject.toml": STRICT_TOML}, "pyproject.toml", STRICT_TOML + 'markers = ["slow_suite: why"]\n'),
        ({"setup.cfg": "[tool:pytest]\nmarkers =\n  db: x\naddopts = -q\n"}, "setup.cfg",
         "[tool:pytest]\nmarkers =\n  db: x\n  slow_suite: why\naddopts = -q\n"),
        ({"pytest.ini": "[pytest]\naddopts = --strict-markers\n", "pyproject.toml": STRICT_TOML}, "pytest.ini",
         "[pytest]\naddopts = --strict-markers\nmarkers =\n    slow_suite: why\n"),
    ],
)  # fmt: skip
def test_the_marker_is_declared_where_pytest_reads_markers(configs: dict[str, str], path: str, declared: str) -> None:
    done = register_marker(configs, "slow_suite", "why")
    assert (done.path, done.text) == (path, declared)


def test_a_repository_without_markers_or_strict_markers_is_left_alone() -> None:
    for configs in ({}, {"pytest.ini": "[pytest]\naddopts = -q\n"}, {"pyproject.toml": "[tool.ruff]\n"}):
        done = register_marker(configs, "slow_suite", "why")
        assert (done.path, done.text) == (None, None)
        assert 'pytest -m "not slow_suite"' in done.note
