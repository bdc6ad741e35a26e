"""Building real git repositories and real sentry-sdk events from the code in them."""

from __future__ import annotations

import os
import subprocess
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.sdk_events import capture_events


@dataclass
class GitFixture:
    root: Path
    shas: list[str] = field(default_factory=list)
    _tick: int = 0

    def git(self, *args: str) -> str:
        env = {
            **os.environ,
            "GIT_AUTHOR_DATE": f"{1_780_000_000 + self._tick * 3600} +0000",
            "GIT_COMMITTER_DATE": f"{1_780_000_000 + self._tick * 3600} +0000",
        }
        done = subprocess.run(["git", "-C", str(self.root), *args], capture_output=True, text=True, env=env, check=True)
        return done.stdout.strip()

    def commit(self, files: dict[str, str | None], message: str, author: str = "Ada Dev") -> str:
        for rel, body in files.items():
            path = self.root / rel
            if body is None:
                self.git("rm", "-q", rel)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(body).lstrip())
            self.git("add", rel)
        self._tick += 1
        self.git("-c", f"user.name={author}", "-c", f"user.email={author.split()[0].lower()}@example.com",
                 "commit", "-q", "-m", message)  # fmt: skip
        sha = self.git("rev-parse", "HEAD")
        self.shas.append(sha)
        return sha

    def tag(self, name: str, rev: str = "HEAD") -> None:
        self.git("tag", name, rev)

    def checkout(self, rev: str) -> None:
        self.git("checkout", "-q", rev)

    def capture(
        self, script: str, *, release: str = "", cwd_rev: str | None = None, pythonpath: tuple[Path, ...] = ()
    ) -> list[dict[str, Any]]:
        """Run `script` (a path in the repo, or code) under a real sentry-sdk; the events it reports."""
        if cwd_rev is not None:
            self.checkout(cwd_rev)
        target = self.root / script if (self.root / script).exists() else self.root.parent / "_script.py"
        if target.name == "_script.py":
            target.write_text(textwrap.dedent(script))
        return capture_events(cwd=self.root, pythonpath=(self.root, *pythonpath), script=target, release=release)


def committed_repo(path: Path, files: dict[str, str | None], message: str) -> GitFixture:
    """A new repository at `path` holding `files` in one commit."""
    fixture = new_repo(path)
    fixture.commit(files, message)
    return fixture


def new_repo(path: Path) -> GitFixture:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    return GitFixture(root=path)
