"""`GitRepo`: the reads prodloop makes of a git repository, through GitPython, cached.

Everything is read from git objects at a given commit, never from the working tree. A
commit's content never changes, so results keyed by commit sha are cached without expiry
(bounded LRU); only name resolution (HEAD, tags) is asked afresh.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import git
from git.exc import BadName, GitCommandError, InvalidGitRepositoryError, NoSuchPathError

from prodloop.server.errors import CodePathError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CommitInfo:
    sha: str
    author: str
    authored_at: float
    summary: str


@dataclass(frozen=True, slots=True)
class BlameRange:
    start: int
    end: int
    commit: CommitInfo


class _LRU:
    def __init__(self, size: int) -> None:
        self._size = size
        self._data: OrderedDict[Hashable, object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]  # type: ignore[return-value]
        value = make()
        with self._lock:
            self._data[key] = value
            while len(self._data) > self._size:
                self._data.popitem(last=False)
        return value


class GitRepo:
    def __init__(self, path: Path, *, cache_size: int = 2048) -> None:
        self.path = path
        try:
            self._repo = git.Repo(path, search_parent_directories=False)
        except (InvalidGitRepositoryError, NoSuchPathError) as exc:
            raise CodePathError(
                str(path), "is not a git repository", "pass --repo with the service's checkout"
            ) from exc
        self._cache = _LRU(cache_size)
        self._lock = threading.Lock()

    def memo(self, key: Hashable, make: Callable[[], T]) -> T:
        """Cache something derived from immutable git content (key it by commit sha)."""
        return self._cache.get(("memo", key), make)

    def _git(self, *args: str) -> str:
        try:
            with self._lock:
                return str(self._repo.git.execute(["git", *args], with_extended_output=False))
        except GitCommandError as exc:
            raise CodePathError(
                str(self.path), f"git {args[0]} failed ({_first_line(exc.stderr)})", "check the revision"
            ) from exc

    # -- names ------------------------------------------------------------------------------

    def resolve(self, rev: str) -> str | None:
        """The commit sha `rev` names (sha, short sha, tag, branch), or None."""
        if not rev or rev.startswith("-"):
            return None
        try:
            with self._lock:
                return str(self._repo.commit(rev).hexsha)
        except (BadName, ValueError, GitCommandError):
            return None

    def head(self) -> str:
        sha = self.resolve("HEAD")
        if sha is None:
            raise CodePathError(str(self.path), "has no commits", "commit the service's code first")
        return sha

    def tags(self) -> list[str]:
        return [line for line in self._git("tag", "--list").splitlines() if line]

    def is_ancestor(self, older: str, newer: str) -> bool:
        with self._lock:
            return bool(self._repo.is_ancestor(self._repo.commit(older), self._repo.commit(newer)))

    def commit_info(self, sha: str) -> CommitInfo:
        def make() -> CommitInfo:
            out = self._git("show", "-s", "--format=%H%x00%an%x00%at%x00%s", sha)
            full, author, at, summary = out.split("\x00", 3)
            return CommitInfo(sha=full, author=author, authored_at=float(at), summary=summary.strip())

        return self._cache.get(("info", sha), make)

    # -- content at a commit ---------------------------------------------------------------

    def files(self, commit: str) -> tuple[str, ...]:
        """Every file path in the tree at `commit`."""
        return self._cache.get(
            ("files", commit),
            lambda: tuple(self._git("ls-tree", "-r", "--name-only", "-z", commit).split("\x00")[:-1] or ()),
        )

    def by_basename(self, commit: str) -> dict[str, tuple[str, ...]]:
        def make() -> dict[str, tuple[str, ...]]:
            index: dict[str, list[str]] = {}
            for path in self.files(commit):
                index.setdefault(path.rsplit("/", 1)[-1], []).append(path)
            return {k: tuple(v) for k, v in index.items()}

        return self._cache.get(("basenames", commit), make)

    def read(self, commit: str, path: str) -> str | None:
        """The file's text at `commit`, or None when absent or not text."""

        def make() -> str | None:
            try:
                with self._lock:
                    blob = self._repo.commit(commit).tree / path
                    data = blob.data_stream.read()
            except (KeyError, ValueError, BadName):
                return None
            try:
                return bytes(data).decode("utf-8")
            except UnicodeDecodeError:
                return None

        return self._cache.get(("read", commit, path), make)

    def exists(self, commit: str, path: str) -> bool:
        return path in self._file_set(commit)

    def _file_set(self, commit: str) -> frozenset[str]:
        return self._cache.get(("fileset", commit), lambda: frozenset(self.files(commit)))

    # -- history ----------------------------------------------------------------------------

    def blame(self, commit: str, path: str) -> tuple[BlameRange, ...]:
        """Line ranges of `path` at `commit` with the commit that last changed each."""

        def make() -> tuple[BlameRange, ...]:
            out = self._git("blame", "--incremental", commit, "--", path)
            ranges: list[BlameRange] = []
            info: dict[str, dict[str, str]] = {}
            lines = out.splitlines()
            i = 0
            while i < len(lines):
                sha, _orig, final, count = lines[i].split()[:4]
                meta = info.setdefault(sha, {})
                i += 1
                while i < len(lines) and not lines[i].startswith("filename "):
                    key, _, value = lines[i].partition(" ")
                    meta[key] = value
                    i += 1
                i += 1  # the filename line closes the entry
                start = int(final)
                commit_info = CommitInfo(
                    sha=sha,
                    author=meta.get("author", ""),
                    authored_at=float(meta.get("author-time", "0")),
                    summary=meta.get("summary", ""),
                )
                ranges.append(BlameRange(start=start, end=start + int(count) - 1, commit=commit_info))
            return tuple(sorted(ranges, key=lambda r: r.start))

        return self._cache.get(("blame", commit, path), make)

    def commits_touching_lines(self, since: str | None, until: str, path: str, start: int, end: int) -> tuple[str, ...]:
        """Commits in (since, until] that changed lines start..end of `path` as they are at `until`."""
        span = f"{since}..{until}" if since else until
        return self._cache.get(
            ("log-L", since, until, path, start, end),
            lambda: tuple(
                line
                for line in self._git("log", "--format=%H", "-s", f"-L{start},{end}:{path}", span).splitlines()
                if len(line) == 40
            ),
        )

    def commits_touching_files(self, since: str | None, until: str, paths: tuple[str, ...]) -> tuple[str, ...]:
        span = f"{since}..{until}" if since else until
        return self._cache.get(
            ("log-files", since, until, paths),
            lambda: tuple(self._git("log", "--format=%H", span, "--", *paths).split()),
        )

    def ancestors(self, commit: str, limit: int) -> tuple[str, ...]:
        return self._cache.get(
            ("ancestors", commit, limit), lambda: tuple(self._git("rev-list", f"--max-count={limit}", commit).split())
        )

    def grep_files(self, commit: str, patterns: tuple[str, ...], pathspecs: tuple[str, ...]) -> tuple[str, ...]:
        """Files at `commit` (under the pathspecs) containing any fixed-string pattern."""

        def make() -> tuple[str, ...]:
            args = ["grep", "-l", "-F", "--no-color"]
            for p in patterns:
                args += ["-e", p]
            try:
                with self._lock:
                    out = self._repo.git.execute(["git", *args, commit, "--", *pathspecs], with_extended_output=False)
            except GitCommandError as exc:
                if exc.status == 1:  # no match
                    return ()
                raise CodePathError(
                    str(self.path), f"git grep failed ({_first_line(exc.stderr)})", "check the repository"
                ) from exc
            return tuple(line.split(":", 1)[1] for line in str(out).splitlines() if ":" in line)

        return self._cache.get(("grep", commit, patterns, pathspecs), make)


def _first_line(text: object) -> str:
    return str(text or "").strip().splitlines()[0][:200] if str(text or "").strip() else "no message"
