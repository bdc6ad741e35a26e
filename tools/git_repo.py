"""`GitRepo`: the reads prodloop makes of a git repository, through GitPython, cached.

Everything is read from git objects at a given commit, never from the working tree. A
commit's content never changes, so results keyed by commit sha are cached without expiry
(bounded LRU); only name resolution (HEAD, tags) is asked afresh.
"""

from __future__ import annotations

import os
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

# Every git command prodloop runs on the host: no hooks, no fsmonitor daemon, no pager or editor, no `ext::`
# transport, no prompt, no system config. What a repository or a test could write must never run on the host.
HARDENED_CONFIG = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.pager=cat",
    "core.editor=false",
    "core.askPass=",
    "protocol.ext.allow=never",
    "credential.interactive=never",
)


def git_command(*args: str) -> list[str]:
    """argv of a hardened host git command (see HARDENED_CONFIG)."""
    return ["git", *(part for item in HARDENED_CONFIG for part in ("-c", item)), *args]


def git_env() -> dict[str, str]:
    """The host environment for git, without system config and without prompts."""
    return {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"}


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

    def put(self, key: Hashable, value: object) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)

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
        self._repo.git.set_persistent_git_options(c=list(HARDENED_CONFIG))
        self._repo.git.update_environment(GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0")
        self._cache = _LRU(cache_size)
        self._lock = threading.Lock()

    def memo(self, key: Hashable, make: Callable[[], T]) -> T:
        """Cache something derived from immutable git content (key it by commit sha)."""
        return self._cache.get(("memo", key), make)

    def _git(self, *args: str) -> str:
        """One git subprocess (thread-safe: each call is its own process)."""
        try:
            return str(self._repo.git.execute(git_command(*args), with_extended_output=False))
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

    def tags(self) -> dict[str, str]:
        """Every tag and the commit it names (annotated tags peeled), in one call; asked afresh each time."""
        out = self._git("for-each-ref", "--format=%(refname:short)%00%(objectname)%00%(*objectname)", "refs/tags")
        tags = {}
        for line in out.splitlines():
            name, obj, peeled = [*line.split("\x00"), "", ""][:3]
            tags[name] = peeled or obj
        return tags

    def previous_tag(self, commit: str) -> str | None:
        """The nearest tag reachable from `commit`'s parents (what `git describe` finds)."""
        try:
            out = self._repo.git.execute(
                git_command("describe", "--tags", "--abbrev=0", f"{commit}^"), with_extended_output=False
            )
        except GitCommandError:
            return None
        return str(out).strip() or None

    def is_ancestor(self, older: str, newer: str) -> bool:
        with self._lock:
            return bool(self._repo.is_ancestor(self._repo.commit(older), self._repo.commit(newer)))

    def commit_info(self, sha: str) -> CommitInfo:
        def make() -> CommitInfo:
            return _parse_info(self._git("show", "-s", f"--format={_INFO_FORMAT}", sha).strip())

        return self._cache.get(("info", sha), make)

    def _log_infos(self, *args: str) -> tuple[str, ...]:
        """Run a `git log` whose lines are commit infos, caching each; the shas in order."""
        shas = []
        for line in self._git("log", f"--format={_INFO_FORMAT}", *args).splitlines():
            if line.count("\x00") == 3 and len(line.split("\x00", 1)[0]) == 40:
                info = _parse_info(line)
                self._cache.put(("info", info.sha), info)
                shas.append(info.sha)
        return tuple(shas)

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

    def present(self, commit: str, paths: tuple[str, ...]) -> frozenset[str]:
        """Which of `paths` exist at `commit` (one small ls-tree, not the whole tree)."""
        return self._cache.get(
            ("present", commit, paths),
            lambda: (
                frozenset(self._git("ls-tree", "--name-only", "-z", commit, "--", *paths).split("\x00")) & set(paths)
            ),
        )

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
            lambda: self._log_infos("-s", f"-L{start},{end}:{path}", span),
        )

    def commits_touching_files(self, since: str | None, until: str, paths: tuple[str, ...]) -> tuple[str, ...]:
        span = f"{since}..{until}" if since else until
        return self._cache.get(
            ("log-files", since, until, paths),
            lambda: self._log_infos(span, "--", *paths),
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
                out = self._repo.git.execute(git_command(*args, commit, "--", *pathspecs), with_extended_output=False)
            except GitCommandError as exc:
                if exc.status == 1:  # no match
                    return ()
                raise CodePathError(
                    str(self.path), f"git grep failed ({_first_line(exc.stderr)})", "check the repository"
                ) from exc
            return tuple(line.split(":", 1)[1] for line in str(out).splitlines() if ":" in line)

        return self._cache.get(("grep", commit, patterns, pathspecs), make)


_INFO_FORMAT = "%H%x00%an%x00%at%x00%s"


def _parse_info(line: str) -> CommitInfo:
    sha, author, at, summary = line.split("\x00", 3)
    return CommitInfo(sha=sha, author=author, authored_at=float(at), summary=summary.strip())


def _first_line(text: object) -> str:
    return str(text or "").strip().splitlines()[0][:200] if str(text or "").strip() else "no message"
