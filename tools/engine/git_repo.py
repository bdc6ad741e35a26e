"""`GitRepo`: prodloop's only boundary to git. No other module runs `git` or opens `git.Repo`.

Reads come from git objects at a given commit, never from the working tree. A commit's
content never changes, so results keyed by commit sha are cached without expiry (bounded
LRU); only name resolution (HEAD, tags) is asked afresh. Writes (worktrees for test runs,
the PR commit, fetch and push) run hardened git commands (`HARDENED_CONFIG`) with every
ref, branch and remote checked so that none can be read as an option; every failure is a
`GitError`.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import git
from git.exc import BadName, GitCommandError, InvalidGitRepositoryError, NoSuchPathError

from prodloop.server.errors import CodePathError, GitError
from prodloop.tools.engine._lru import LRU

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


# Commands that talk to a remote: they read the user's global config (credential helpers, URL rewrites, proxies)
# beside the hardened settings; every other command reads none of it (no signing, aliases or filters of the user's).
_NETWORK = frozenset({"fetch", "push", "ls-remote"})


def git_command(*args: str) -> list[str]:
    """argv of a hardened host git command (see HARDENED_CONFIG)."""
    trusted = (f"safe.directory={d}" for d in _safe_directories())
    return ["git", *(part for item in (*HARDENED_CONFIG, *trusted) for part in ("-c", item)), *args]


def git_env(*, network: bool = False) -> dict[str, str]:
    """The host environment for git: no system config, no prompts, and the user's global config only for
    commands that talk to a remote."""
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"}
    if not network:
        env["GIT_CONFIG_GLOBAL"] = os.devnull
    return env


_SAFE: list[tuple[str, ...]] = []


def _safe_directories() -> tuple[str, ...]:
    """The repositories the user's global config trusts although another user owns them (`safe.directory`):
    kept when the global config is not read, read once (a config read runs nothing)."""
    if not _SAFE:
        try:
            done = subprocess.run(
                ["git", "config", "--global", "--get-all", "safe.directory"], capture_output=True, text=True,
                timeout=20, env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1"},
            )  # fmt: skip
            found = tuple(line for line in done.stdout.splitlines() if line and not line.startswith("-"))
        except (OSError, subprocess.TimeoutExpired):
            found = ()
        _SAFE.append(found)
    return _SAFE[0]


_FETCHABLE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")
_FULL_SHA = re.compile(r"[0-9a-f]{40}")


def checked_name(name: str, what: str) -> str:
    """`name` (a ref, branch or remote) when git can only read it as a name: no leading `-`, no control chars."""
    if not name or name.startswith("-") or any(ord(c) < 32 or c == "\x7f" for c in name):
        raise GitError(name[:80], f"is not usable as a git {what}", f"give a {what} that does not start with '-'")
    return name


def run_git(
    cwd: Path, *args: str, stdin: str | None = None, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """One hardened git command in `cwd` (a repository or one of its worktrees); the caller reads returncode."""
    try:
        return subprocess.run(
            git_command("-C", str(cwd), *args), input=stdin, capture_output=True, encoding="utf-8", errors="replace",
            timeout=timeout, env={**git_env(network=bool(args) and args[0] in _NETWORK), **(env or {})},
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError(
            str(cwd), f"git {args[0]} did not finish ({type(exc).__name__})", "check git and the repository"
        ) from exc


_URL_CREDENTIALS = re.compile(r"(\w+://)[^/@\s]+@")  # user:token@ in a URL git echoes back


def _checked(done: subprocess.CompletedProcess[str], where: Path, what: str, fix: str) -> str:
    if done.returncode != 0:
        said = _URL_CREDENTIALS.sub(r"\1", _first_line(done.stderr or done.stdout))
        raise GitError(str(where), f"{what} failed ({said})", fix)
    return done.stdout


@dataclass(frozen=True, slots=True)
class CommitInfo:
    sha: str
    author: str
    authored_at: float
    summary: str


@dataclass(frozen=True, slots=True)
class RevertBuilt:
    """What `GitRepo.build_revert` made: `commit` (None when nothing was reverted or a merge conflicted), the commits
    it reverted (newest first) with each revert's message, those it skipped with why, and the commit that conflicted
    with its paths."""

    commit: str | None
    reverted: tuple[str, ...]
    messages: tuple[tuple[str, str], ...]
    skipped: tuple[tuple[str, str], ...]
    conflict: tuple[str, tuple[str, ...]] | None


@dataclass(frozen=True, slots=True)
class BlameRange:
    start: int
    end: int
    commit: CommitInfo


class GitRepo:
    def __init__(self, path: Path, *, cache_size: int = 2048) -> None:
        self.path = path
        try:
            self._repo = git.Repo(path, search_parent_directories=False)
        except (InvalidGitRepositoryError, NoSuchPathError) as exc:
            raise CodePathError(
                str(path), "is not a git repository", "pass --repo with the service's checkout"
            ) from exc
        self._repo.git.set_persistent_git_options(
            c=[*HARDENED_CONFIG, *(f"safe.directory={d}" for d in _safe_directories())]
        )
        self._repo.git.update_environment(
            GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0", GIT_CONFIG_GLOBAL=os.devnull
        )
        self._cache = LRU(cache_size)
        self._lock = threading.Lock()

    def close(self) -> None:
        """Stop the git processes GitPython keeps running to read this repository's objects."""
        self._repo.close()

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
        """Every tag and the commit it names (annotated tags peeled), in one call; cached while the tag refs on disk
        are unchanged (`_tag_state`), else asked afresh."""
        state = self._tag_state()
        if state is None:
            return self._tags()
        return dict(self._cache.get(("tags", state), self._tags))

    def _tags(self) -> dict[str, str]:
        out = self._git("for-each-ref", "--format=%(refname:short)%00%(objectname)%00%(*objectname)", "refs/tags")
        tags = {}
        for line in out.splitlines():
            name, obj, peeled = [*line.split("\x00"), "", ""][:3]
            tags[name] = peeled or obj
        return tags

    def previous_tag(self, commit: str) -> str | None:
        """The nearest tag reachable from `commit`'s parents (what `git describe` finds)."""
        state = self._tag_state()
        if state is None:
            return self._previous_tag(commit)
        return self._cache.get(("describe", commit, state), lambda: self._previous_tag(commit))

    def _previous_tag(self, commit: str) -> str | None:
        try:
            out = self._repo.git.execute(
                git_command("describe", "--tags", "--abbrev=0", f"{commit}^"), with_extended_output=False
            )
        except GitCommandError:
            return None
        return str(out).strip() or None

    def _tag_state(self) -> tuple[object, ...] | None:
        """What changes on disk whenever a tag is made, moved or deleted: `packed-refs` and the `refs/tags` folders
        (git writes a ref through a lock file renamed into its folder: a new inode). None when the refs live
        elsewhere (a reftable repository): no caching then."""
        common = Path(self._repo.common_dir)
        if (common / "reftable").exists():
            return None
        state: list[object] = []
        try:
            packed = (common / "packed-refs").stat()
            state.append((packed.st_mtime_ns, packed.st_size, packed.st_ino))
        except FileNotFoundError:
            state.append(None)
        for folder, _, _ in os.walk(common / "refs" / "tags"):
            with os.scandir(folder) as entries:  # names and inodes: a ref rewritten within one clock tick shows too
                state.append((folder, os.stat(folder).st_mtime_ns, tuple(sorted((e.name, e.inode()) for e in entries))))
        return tuple(state)

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

    def commits_since(self, when: float, until: str, paths: tuple[str, ...]) -> tuple[str, ...]:
        """Commits reachable from `until` made at or after `when` (seconds) that touched `paths` (files or folders)."""
        literal = [f":(literal){p}" for p in paths]
        return self._log_infos(f"--since=@{int(when)}", checked_name(until, "commit"), "--", *literal)

    def touching_per_range(self, ranges: list[tuple[str, str]], paths: tuple[str, ...]) -> list[int]:
        """For each (since, until) pair of commits (deploys after one another), how many commits of since..until
        touched `paths`: two git runs for any number of ranges. Each commit of the span carries the set of touching
        commits among its ancestors (a bitset, built in topological order); a range's count is until's set minus
        since's. The span starts at the first range's `since`; a range whose `since` lies before it (a rollback)
        is counted on its own."""
        if not ranges:
            return []
        key = ("touching-ranges", tuple(ranges), paths)  # commits never change: the answer is cached
        return list(self._cache.get(key, lambda: tuple(self._touching_per_range(ranges, paths))))

    def _touching_per_range(self, ranges: list[tuple[str, str]], paths: tuple[str, ...]) -> list[int]:
        base = checked_name(ranges[0][0], "commit")
        tips = list(dict.fromkeys(checked_name(c, "commit") for pair in ranges for c in pair))
        literal = [f":(literal){p}" for p in paths]  # a path's own `*` or `:(...)` is no pattern
        dag = self._git("rev-list", "--topo-order", "--reverse", "--parents", *tips, "--not", base)
        touching = set(self._git("rev-list", *tips, "--not", base, "--", *literal).split())
        index = {sha: i for i, sha in enumerate(touching)}
        bits: dict[str, int] = {}
        for line in dag.splitlines():
            sha, *parents = line.split()
            mask = 1 << index[sha] if sha in index else 0
            for parent in parents:
                mask |= bits.get(parent, 0)
            bits[sha] = mask
        counts = []
        for since, until in ranges:
            if since != base and since not in bits:  # a rollback to an ancestor of the span: counted on its own
                counts.append(len(self._log_infos(f"{since}..{until}", "--", *literal)))
            else:
                counts.append((bits.get(until, 0) & ~bits.get(since, 0)).bit_count())
        return counts

    def ancestors(self, commit: str, limit: int) -> tuple[str, ...]:
        return self._cache.get(
            ("ancestors", commit, limit), lambda: tuple(self._git("rev-list", f"--max-count={limit}", commit).split())
        )

    def landed_on(self, commit: str, tip: str, *, since: float, marker: str) -> tuple[str, str] | None:
        """Where a PR's commit landed on `tip`'s first-parent history (the default branch), and how: `ancestor` (the
        commit itself, fast-forwarded), `merge` (the merge commit that brought it), `trailer` (a squash or rebase
        keeping `marker`, the PR's `Prodloop-Receipt` line, in its message) or `patch` (a squash or rebase of the same
        change: equal `git patch-id`). Only commits made since `since` (seconds) are searched. None: not landed."""
        commit, tip = checked_name(commit, "commit"), checked_name(tip, "commit")
        window = f"--since=@{int(since) - 86_400}"  # committer clocks drift; a day of slack
        if self.resolve(commit) is not None and self.is_ancestor(commit, tip):
            # The first-parent commits of tip that descend from commit: the oldest one brought it (a merge), or is
            # its child on the branch itself (a fast-forward).
            path = self._git("rev-list", "--first-parent", "--ancestry-path", "--reverse", f"{commit}..{tip}").split()
            if not path or self._git("rev-parse", f"{path[0]}^1").strip() == commit:
                return commit, "ancestor"
            return path[0], "merge"
        # The trailer itself (its key and exact value in the message's trailer block), not a mention of it.
        key, _, value = marker.partition(": ")
        logged = self._git("log", "--first-parent", window, "-F", f"--grep={value}",
                           f"--format=%H%x00%(trailers:key={key},valueonly,separator=%x01)%x02", tip)  # fmt: skip
        found = [sha.strip() for sha, _, values in (r.partition("\x00") for r in logged.split("\x02"))
                 if value in (v.strip() for v in values.split("\x01"))]  # fmt: skip
        if found:
            return found[-1], "trailer"
        if self.resolve(commit) is None:
            return None
        mine = self._patch_ids(["diff-tree", "-p", "--no-color", "--no-ext-diff", "--no-textconv", commit])
        if not mine:
            return None
        theirs = self._patch_ids(["log", "-p", "--no-color", "--no-ext-diff", "--no-textconv", "--first-parent", window,
                                  "--format=commit %H", tip])  # fmt: skip
        landed = [sha for pid, sha in theirs.items() if pid in mine]
        return (landed[0], "patch") if landed else None

    def _patch_ids(self, args: list[str]) -> dict[str, str]:
        """`git patch-id --stable` of what a `git log -p` / `diff-tree -p` prints: patch id -> commit."""
        shown = self._run(self.path, *args, timeout=120)
        if shown.returncode != 0 or not shown.stdout.strip():
            return {}
        text = shown.stdout if shown.stdout.startswith("commit ") else f"commit {'0' * 40}\n{shown.stdout}"
        ids = self._run(self.path, "patch-id", "--stable", stdin=text, timeout=120)
        out: dict[str, str] = {}
        for line in ids.stdout.splitlines():
            pid, _, sha = line.partition(" ")
            out.setdefault(pid, sha)
        return out

    def merge_base(self, one: str, other: str) -> str | None:
        done = self._run(self.path, "merge-base", "--end-of-options", checked_name(one, "commit"),
                         checked_name(other, "commit"))  # fmt: skip
        return done.stdout.strip() or None if done.returncode == 0 else None

    def first_parent_since(self, tip: str, since: str) -> tuple[str, ...]:
        """The commits `tip` added over `since` (its first-parent history; merges stand for what they brought),
        oldest first."""
        out = self._git(
            "rev-list", "--first-parent", "--reverse", f"{checked_name(since, 'commit')}..{checked_name(tip, 'commit')}"
        )
        return tuple(out.split())

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

    # -- the working tree, worktrees and remotes ----------------------------------------------

    def _no_filters(self) -> dict[str, str]:
        """Git's environment form of config that switches off every filter and merge driver the repository's config
        defines: a checkout or a diff of the working tree would otherwise run its clean or smudge command on the
        host, and a merge its driver, for any file a stranger's `.gitattributes` names. A merge driver becomes
        `false`: the merge of such a file is a conflict for a person, never a silent result. (The environment form,
        not `-c`: a name may hold `=`.)"""

        def make() -> dict[str, str]:
            listed = run_git(
                self.path, "config", "--null", "--name-only", "--get-regexp", r"^(filter|merge)\.", timeout=30
            )
            keys = [key.partition(".") for key in listed.stdout.split("\0") if key]
            names = {(kind, rest.rpartition(".")[0]) for kind, _, rest in keys}
            off = {"filter": (("smudge", ""), ("clean", ""), ("process", ""), ("required", "false")),
                   "merge": (("driver", "false"),)}  # fmt: skip
            env: dict[str, str] = {}
            n = 0
            for kind, name in sorted(names):
                for setting, value in off[kind] if name else ():  # `merge.renames` has no driver name
                    env[f"GIT_CONFIG_KEY_{n}"], env[f"GIT_CONFIG_VALUE_{n}"] = f"{kind}.{name}.{setting}", value
                    n += 1
            return {**env, "GIT_CONFIG_COUNT": str(n)} if n else {}

        return self._cache.get(("no-filters",), make)

    def _run(
        self, cwd: Path, *args: str, stdin: str | None = None, timeout: float = 60, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Every git command of this repository (or one of its worktrees, which share its config): hardened, and
        with the repository's filters off, whatever the command reads or writes."""
        return run_git(cwd, *args, stdin=stdin, timeout=timeout, env={**self._no_filters(), **(env or {})})

    def working_tree_diff(self, commit: str, exclude: str) -> str:
        """The checkout's uncommitted change against `commit` (a fix an agent made in place), without `exclude`."""
        done = self._run(self.path, "diff", "--no-color", "--no-ext-diff", "--no-textconv", "--end-of-options",
                       checked_name(commit, "commit"), "--", ".", f":(exclude){exclude}")  # fmt: skip
        return _checked(done, self.path, "git diff", "check the repository")

    def add_worktree(self, root: Path, commit: str) -> None:
        done = self._run(self.path, "worktree", "add", "--detach", "--quiet", str(root), checked_name(commit, "commit"),
                       timeout=120)  # fmt: skip
        _checked(done, self.path, "git worktree add", "check the commit")

    def prune_worktrees(self) -> None:
        """Forget worktrees whose folder is gone (never `worktree remove`: it reads the tree's own `.git` file)."""
        self._run(self.path, "worktree", "prune")

    def apply(self, tree: Path, patch: Path) -> None:
        """Apply a diff file to a worktree's files (git reads and writes them through the repository's filters)."""
        done = self._run(tree, "apply", "--whitespace=nowarn", str(patch))
        _checked(done, tree, "git apply", "make the diff against the deployed commit (git diff <commit>)")

    def build_commit(
        self, base: str, diff: str, files: dict[str, str], appended: dict[str, str], message: str,
        deleted: tuple[str, ...] = (),
    ) -> str:  # fmt: skip
        """A commit of `base` + `diff` + `files` (written whole) + lines `appended` to files - the `deleted` files,
        built with plumbing on a temporary index of this repository: no working tree, no hooks, nothing any test ever
        ran in."""
        whole = dict(files)
        for path, line in appended.items():
            whole[path] = (self.read(base, path) or "") + line
        with self._index(base, diff) as git:
            for path, text in whole.items():
                blob = git("hash-object", "-w", "--stdin", stdin=text).strip()
                git("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}")
            for path in deleted:
                git("update-index", "--force-remove", "--", path)
            tree = git("write-tree").strip()
            return git("commit-tree", tree, "-p", base, "-m", message).strip()

    def build_revert(
        self, base: str, commits: list[str], *, at: float | None = None, subject_chars: int = 200
    ) -> RevertBuilt:
        """Commits on top of `base` reverting `commits` (given oldest first), newest first, one revert commit each,
        built with plumbing alone (no working tree, index or hooks): each is a three-way merge of `base`-so-far and
        the commit's first parent with the commit as merge base (`git revert`; a merge commit is reverted against
        its first parent). Commits not on `base`, the root commit and commits already undone there are skipped with
        the reason; the first conflict stops it (`conflict`: the commit and its paths) and nothing is kept. `at`
        (seconds) dates the commits: the same revert at the same time is the same commit."""
        tip = checked_name(base, "commit")
        env = {"GIT_AUTHOR_NAME": "prodloop", "GIT_AUTHOR_EMAIL": "prodloop@localhost",
               "GIT_COMMITTER_NAME": "prodloop", "GIT_COMMITTER_EMAIL": "prodloop@localhost"}  # fmt: skip
        if at is not None:
            env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = f"@{int(at)} +0000"

        def git(*args: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
            done = self._run(self.path, *args, env=env)
            if done.returncode not in ok:
                _checked(done, self.path, f"git {args[0]} (revert)", "check the base and the commits")
            return done

        reverted: list[tuple[str, str]] = []
        skipped: list[tuple[str, str]] = []
        for name in reversed(commits):
            sha = self.resolve(checked_name(name, "commit"))
            if sha is None:
                skipped.append((name[:40], "not a commit of this repository"))
                continue
            if not self.is_ancestor(sha, tip):
                skipped.append((sha, "not on the base branch"))
                continue
            parents = git("rev-list", "--parents", "-n", "1", sha).stdout.split()[1:]
            if not parents:
                skipped.append((sha, "the repository's first commit: reverting it would empty the repository"))
                continue
            # merge-tree finds the merge base itself (`--merge-base` is git 2.40): two throwaway commits whose only
            # parent is `sha`, one holding the tip's tree and one the first parent's, make `sha` that base.
            sides = [git("commit-tree", f"{tree}^{{tree}}", "-p", sha, "-m", "prodloop revert side").stdout.strip()
                     for tree in (tip, parents[0])]  # fmt: skip
            merged = git("merge-tree", "--write-tree", "--name-only", "--no-messages", *sides, ok=(0, 1))
            tree, *conflicted = [*merged.stdout.splitlines(), ""]
            if merged.returncode == 1:
                return RevertBuilt(None, (), (), tuple(skipped), (sha, tuple(p for p in conflicted if p)))
            if tree.strip() == git("rev-parse", f"{tip}^{{tree}}").stdout.strip():
                skipped.append((sha, "already undone on the base branch"))
                continue
            subject = self.commit_info(sha).summary[:subject_chars]
            reversing = f", reversing\nchanges made to {parents[0]}" if len(parents) > 1 else ""
            message = f'Revert "{subject}"\n\nThis reverts commit {sha}{reversing}.\n'
            tip = git("commit-tree", tree.strip(), "-p", tip, "-m", message).stdout.strip()
            reverted.append((sha, message))
        shas = tuple(sha for sha, _ in reverted)
        return RevertBuilt(tip if reverted else None, shas, tuple(reverted), tuple(skipped), None)

    def diff_paths(self, base: str, diff: str) -> set[str]:
        """Every path `diff` changes when applied to `base` (a rename's old and new name, a deletion), as git reads
        the diff: so any file name works."""
        with self._index(base, diff) as git:
            tree = git("write-tree").strip()
        return self.changed_between(base, tree)

    @contextmanager
    def _index(self, base: str, diff: str) -> Iterator[Callable[..., str]]:
        """A temporary index holding `base` + `diff`, and a git runner bound to it."""
        with tempfile.TemporaryDirectory(prefix="prodloop-index-") as scratch:
            env = {"GIT_INDEX_FILE": str(Path(scratch) / "index"), "GIT_AUTHOR_NAME": "prodloop",
                   "GIT_AUTHOR_EMAIL": "prodloop@localhost", "GIT_COMMITTER_NAME": "prodloop",
                   "GIT_COMMITTER_EMAIL": "prodloop@localhost"}  # fmt: skip

            def git(*args: str, stdin: str | None = None, what: str = "") -> str:
                done = self._run(self.path, *args, stdin=stdin, env=env)
                return _checked(done, self.path, what or f"git {args[0]}", "check the base and the fix")

            git("read-tree", "--end-of-options", checked_name(base, "commit"))
            if diff.strip():
                git("apply", "--cached", "--whitespace=nowarn", "-", stdin=diff if diff.endswith("\n") else diff + "\n",
                    what="the fix does not apply to the base:")  # fmt: skip
            yield git

    def changed_between(self, base: str, commit: str) -> set[str]:
        """Paths whose content differs between two commits."""
        done = self._run(self.path, "diff-tree", "-r", "--name-only", "-z", "--no-renames", "--end-of-options",
                       checked_name(base, "commit"), checked_name(commit, "commit"))  # fmt: skip
        return set(_checked(done, self.path, "git diff-tree", "check the commits").split("\0")) - {""}

    def diff(self, base: str, commit: str, paths: tuple[str, ...]) -> str:
        """The unified diff (no context lines) of `paths` from `base` to `commit`, as git stores the change (no
        configured diff driver or text conversion can shape it)."""
        literal = [f":(literal){p}" for p in paths]
        done = self._run(self.path, "diff", "--no-ext-diff", "--no-textconv", "--no-color", "--no-renames", "-U0",
                         "--end-of-options", checked_name(base, "commit"), checked_name(commit, "commit"), "--",
                         *literal)  # fmt: skip
        return _checked(done, self.path, "git diff", "check the commits")

    def remote_url(self, remote: str) -> str | None:
        done = self._run(self.path, "remote", "get-url", "--end-of-options", checked_name(remote, "remote"), timeout=30)
        return done.stdout.strip() if done.returncode == 0 else None

    def remote_heads(self, remote: str, pattern: str = "") -> dict[str, str]:
        """Branch names on `remote` (matching a glob such as `prodloop/7-*`) and the commit each points at."""
        # Where pushes go (a remote may fetch from one URL and push to another).
        pushed_to = self._run(
            self.path, "remote", "get-url", "--push", "--end-of-options", checked_name(remote, "remote")
        )
        target = pushed_to.stdout.strip() if pushed_to.returncode == 0 and pushed_to.stdout.strip() else remote
        args = ["ls-remote", "--heads", "--end-of-options", checked_name(target, "remote")]
        done = self._run(self.path, *args, *([pattern] if pattern else []), timeout=60)
        out = _checked(done, self.path, f"git ls-remote {remote}", "check the remote's URL and credentials")
        heads = (line.split("\trefs/heads/", 1) for line in out.splitlines() if "\trefs/heads/" in line)
        return {name: sha for sha, name in heads}

    def default_branch(self, remote: str) -> str:
        """The remote's HEAD branch, else the checked-out branch, else main."""
        name = checked_name(remote, "remote")
        for args in (["symbolic-ref", "--short", f"refs/remotes/{name}/HEAD"], ["ls-remote", "--symref", name, "HEAD"]):
            done = self._run(self.path, *args)
            match = re.search(r"(?:ref: refs/heads/|^" + re.escape(name) + r"/)(\S+)", done.stdout)
            if done.returncode == 0 and match:
                return match.group(1)
        done = self._run(self.path, "rev-parse", "--abbrev-ref", "HEAD")
        branch = done.stdout.strip()
        return branch if done.returncode == 0 and branch and branch != "HEAD" else "main"

    def fetch(self, remote: str, ref: str) -> bool:
        """Fetch one branch (or one commit, by its full sha) of `remote`, writing only its remote-tracking ref (a
        branch) or nothing (a sha); False when the remote did not answer (the caller may use a local ref). `ref` is
        a name, never a refspec: `src:dst`, a leading `+` or `refs/` wildcard could write any ref of this
        repository (its tags name deployed releases)."""
        checked_name(ref, "branch")
        if not _FETCHABLE.fullmatch(ref) or ".." in ref or ref.endswith((".lock", "/")) or "//" in ref:
            raise GitError(ref[:80], "is not a branch name or a full commit sha", "give a branch (main) or a sha")
        source = ref if _FULL_SHA.fullmatch(ref) else f"refs/heads/{ref}"
        target = [] if source == ref else [f"{source}:refs/remotes/{remote}/{ref}"]
        done = self._run(self.path, "fetch", "--quiet", "--end-of-options",
                         checked_name(remote, "remote"), *(target or [source]), timeout=300)  # fmt: skip
        return done.returncode == 0

    def push(self, remote: str, commit: str, branch: str) -> None:
        """Push `commit` (an object of this repository) to a new branch of `remote`, hooks off."""
        refspec = f"{checked_name(commit, 'commit')}:refs/heads/{checked_name(branch, 'branch')}"
        done = self._run(self.path, "push", "--no-verify", "--porcelain", "--end-of-options",
                       checked_name(remote, "remote"), refspec, timeout=300)  # fmt: skip
        _checked(done, self.path, f"push of {branch} to {remote}", "check the remote and that the branch is new")


def git_version() -> str:
    """`git --version`, run the hardened way (GitError when git is missing or broken)."""
    return _checked(run_git(Path.cwd(), "--version", timeout=20), Path.cwd(), "git --version", "install git").strip()


_INFO_FORMAT = "%H%x00%an%x00%at%x00%s"


def _parse_info(line: str) -> CommitInfo:
    sha, author, at, summary = line.split("\x00", 3)
    return CommitInfo(sha=sha, author=author, authored_at=float(at), summary=summary.strip())


def _first_line(text: object) -> str:
    return str(text or "").strip().splitlines()[0][:200] if str(text or "").strip() else "no message"
