"""A small project for the suite-change tests: a real git repository with a bare remote, a pytest configuration as
strict as prodloop's own (strict markers, xfail_strict, warnings as errors), and real pytest runs writing JUnit XML."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prodloop.server.settings import Settings, load_settings
from tests.repos import GitFixture, new_repo

PYPROJECT = """\
[project]
name = "shop"
version = "0"

[tool.pytest.ini_options]
addopts = "--strict-config --strict-markers -p no:cacheprovider -p no:randomly"
xfail_strict = true
filterwarnings = ["error"]
markers = [
    "db: talks to a database",
]
"""

PRICING_TESTS = '''\
"""Prices, and a test that flips on a counter file (FLAKY_COUNTER): it fails on even counts."""

import os
from pathlib import Path

import pytest

from shop.pricing import price


def test_apple():
    assert price("apple") == 3


def test_flaky():
    counter = Path(os.environ["FLAKY_COUNTER"])
    seen = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(seen + 1))
    assert seen % 2 == 1, "even count"


class TestBulk:
    @pytest.mark.parametrize("qty", [1, 2])
    def test_bulk(self, qty):
        assert price("apple") * qty >= 3
'''

PROJECT: dict[str, str | None] = {
    "pyproject.toml": PYPROJECT,
    "shop/__init__.py": "",
    "shop/pricing.py": 'PRICES = {"apple": 3}\n\n\ndef price(sku):\n    return PRICES[sku]\n',
    "shop/tax.py": "RATE = 3\n",
    "shop/legacy.py": "def old():\n    return 2\n",
    "tests/__init__.py": "",
    "tests/test_pricing.py": PRICING_TESTS,
    "tests/test_tax.py": '"""Tax."""\n\nfrom shop.tax import RATE\n\n\ndef test_rate():\n    assert RATE == 3\n',
    "tests/test_legacy.py": "from shop.legacy import old\n\n\ndef test_old():\n    assert old() == 2\n",
}


@dataclass
class Project:
    git: GitFixture
    remote: Path
    settings: Settings
    work: Path

    def push_main(self, rev: str = "HEAD") -> None:
        self.git.git("push", "-q", "-f", "origin", f"{rev}:refs/heads/main")

    def checkout(self, rev: str, name: str) -> Path:
        """The tree of `rev` (a branch or commit of the remote) in a fresh clone: what CI would test."""
        where = self.work / name
        subprocess.run(["git", "clone", "-q", str(self.remote), str(where)], check=True)
        subprocess.run(["git", "-C", str(where), "checkout", "-q", rev], check=True)
        return where

    def pytest(self, tree: Path, name: str, *args: str, counter: int | None = None) -> tuple[int, bytes]:
        """A real pytest run of `tree` writing JUnit XML; `counter` sets the flaky test's counter first."""
        path = self.work / "counter"
        if counter is not None:
            path.write_text(str(counter))
        out = self.work / f"{name}.xml"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PRODLOOP_"))}
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", f"--junitxml={out}", *args, "tests"], cwd=tree,
                              env={**env, "FLAKY_COUNTER": str(path)}, capture_output=True, text=True,
                              check=False)  # fmt: skip
        return done.returncode, out.read_bytes()

    def remote_branches(self) -> set[str]:
        listed = subprocess.run(["git", "-C", str(self.remote), "for-each-ref", "--format=%(refname:short)",
                                 "refs/heads"], capture_output=True, text=True, check=True)  # fmt: skip
        return set(listed.stdout.split())

    def show(self, rev: str, path: str) -> str:
        done = subprocess.run(["git", "-C", str(self.remote), "show", f"{rev}:{path}"], capture_output=True,
                              text=True, check=True)  # fmt: skip
        return done.stdout


def new_project(root: Path, **settings: Any) -> Project:
    fixture = new_repo(root / "shop")
    fixture.commit(PROJECT, "shop")
    remote = root / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    fixture.git("remote", "add", "origin", str(remote))
    fixture.git("push", "-q", "origin", "main")
    work = root / "work"
    work.mkdir()
    return Project(fixture, remote, load_settings(repo=fixture.root, data_dir=root / "data", **settings), work)


def outcomes(junit: bytes) -> dict[str, str]:
    """Each test case's outcome as pytest wrote it: passed, failed, error, or skipped:<type>."""
    found = {}
    for case in ET.fromstring(junit).iter("testcase"):  # noqa: S314 - pytest's own output
        test = f"{case.get('classname')}::{case.get('name')}"
        kind = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
        found[test] = "passed" if kind is None else f"{kind.tag}:{kind.get('type', '')}"
    return found
