"""`map_code_path` speed, cold and warm, on a large generated repository and on this one.

1. Generated: a repository of `--commits` commits and `--files` Python files (packages, classes,
   methods, nested functions, decorators; commits of 1-5 small edits by several authors; annotated
   tags v0.1.0..v0.40.0), written with one `git fast-import` stream and cached under
   /tmp/prodloop-bench-repo-<hash of the parameters>. A real sentry-sdk event is produced by running
   the code of tag v0.40.0 (`git archive` into a temporary directory): the crash passes through 7
   in-app frames in 3 files (nested function, decorator wrapper, method) and the stdlib `json`
   module. The functions on that path were edited by several commits since v0.39.0.
2. Self: this repository at HEAD (`git archive`), an event from running prodloop's own code
   (a bad envelope, then a bad cursor while handling it), release = the HEAD sha.

Each event is stored through the real ingest pipeline into a real SQLite store. Cold = a fresh
`GitRepo` (empty caches, new git processes) per call; warm = one `GitRepo` reused. The OS page
cache is warm in both. Then one cold call is broken down by git call and phase (a timing subclass
of `GitRepo`, exclusive times) and by cProfile over `prodloop.*`.

Run from the repository root:

    python bench/code_path.py                          # both parts, 15 cold and 50 warm runs
    python bench/code_path.py --commits 2000 --files 400 --skip-self
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import pstats
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from prodloop.server.context import AppContext
from prodloop.server.ingest.importer import import_events
from prodloop.server.settings import load_settings
from prodloop.server.store import Store
from prodloop.tools.engine.git_repo import GitRepo
from prodloop.tools.locate.code_path import CodePath, map_code_path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the capture helper lives in <repo>/tests
from _code_path_repo import RELEASE, TAGS, TARGETS, generated_repo, git

from tests.sdk_events import capture_events

T = TypeVar("T")

GOAL_COLD_P50_MS = 300.0
GOAL_WARM_P50_MS = 30.0
_SELF = Path(__file__).resolve().parent.parent

# -- real events ------------------------------------------------------------------------------

_GENERATED_REQUEST = """
from acme.orders.api.checkout import handle_checkout
handle_checkout({"region": "eu", "lines": [{"sku": "apple", "qty": 2}]})
"""

_SELF_REQUEST = """
from prodloop.server.ingest.envelope import parse_envelope
from prodloop.tools.observe.issues import list_issues

try:
    parse_envelope(b"not json", max_item_bytes=10)
except Exception:
    list_issues(None, cursor="bad")  # the error page asks for the wrong page while reporting the bad envelope
"""


def _capture(
    repo: Path, rev: str, *, release: str, in_app: str, request: str, layout: dict[str, str]
) -> dict[str, Any]:
    """Run `request` against the code of `rev` (a `git archive` laid out as `layout`), under a real sentry-sdk."""
    with tempfile.TemporaryDirectory(prefix="prodloop-bench-run-") as tmp:
        src, site = Path(tmp) / "src", Path(tmp) / "site"
        src.mkdir()
        archive = subprocess.run(["git", "-C", str(repo), "archive", rev], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
        for target, source in layout.items():
            (site / target).parent.mkdir(parents=True, exist_ok=True)
            (site / target).symlink_to(src / source, target_is_directory=True)
        events = capture_events(
            cwd=site, pythonpath=[site], code=request, release=release, in_app=in_app, env={"PATH": "/usr/bin:/bin"}
        )
    if len(events) != 1:
        raise RuntimeError(f"expected one event from the run, got {len(events)}")
    return events[0]


@dataclass
class _Case:
    name: str
    repo: Path
    event_id: str
    store: Store


@contextlib.contextmanager
def _case(name: str, repo: Path, event: dict[str, Any], extra_events: int = 200) -> Iterator[_Case]:
    """The event (and `extra_events` copies under fresh ids, so the store is not empty) in a real store."""
    with tempfile.TemporaryDirectory(prefix="prodloop-bench-store-") as data:
        ctx = AppContext.open(load_settings(repo=repo, data_dir=Path(data)))
        try:
            project = ctx.store.create_project(name)
            rng = random.Random(5)
            copies = [{**event, "event_id": uuid.UUID(int=rng.getrandbits(128)).hex} for _ in range(extra_events)]
            report = import_events(ctx, project, [("bench", event), *(("copy", c) for c in copies)], source="bench")
            if report.stored != 1 + extra_events:
                raise RuntimeError(f"the store kept {report.stored} events: {report.refused[:3]}")
            yield _Case(name, repo, str(event["event_id"]).replace("-", ""), ctx.store)
        finally:
            ctx.close()


# -- timing -------------------------------------------------------------------------------------


class _Phases:
    """Exclusive time per label: a timed call's time minus the timed calls it made."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._stack: list[float] = []

    def time(self, label: str, call: Callable[[], T]) -> T:
        self._stack.append(0.0)
        started = time.perf_counter()
        try:
            return call()
        finally:
            spent = time.perf_counter() - started
            children = self._stack.pop()
            self.seconds[label] = self.seconds.get(label, 0.0) + spent - children
            self.calls[label] = self.calls.get(label, 0) + 1
            if self._stack:
                self._stack[-1] += spent


def _caller() -> str:
    """The prodloop function that called into the timed layer (for labels like `resolve <- resolve_release`)."""
    frame = sys._getframe(3)
    for _ in range(30):
        if frame.f_code.co_filename != __file__ and not frame.f_code.co_filename.endswith("git_repo.py"):
            return frame.f_code.co_name
        if frame.f_back is None:
            break
        frame = frame.f_back
    return "?"


class _TimedGitRepo(GitRepo):
    """`GitRepo` whose reads are timed per method and calling function."""

    def __init__(self, path: Path, phases: _Phases) -> None:
        self.phases = phases
        phases.time("open git.Repo", lambda: GitRepo.__init__(self, path))

    def _t(self, what: str, call: Callable[[], T]) -> T:
        return self.phases.time(f"{what} <- {_caller()}", call)

    def memo(self, key: Hashable, make: Callable[[], T]) -> T:
        what = key[0] if isinstance(key, tuple) and key else "memo"
        return self._t(f"memo:{what}", lambda: super(_TimedGitRepo, self).memo(key, make))

    def resolve(self, rev: str) -> str | None:
        return self._t("resolve (GitPython)", lambda: super(_TimedGitRepo, self).resolve(rev))

    def tags(self) -> list[str]:
        return self._t("git tag --list", lambda: super(_TimedGitRepo, self).tags())

    def is_ancestor(self, older: str, newer: str) -> bool:
        return self._t("git merge-base --is-ancestor", lambda: super(_TimedGitRepo, self).is_ancestor(older, newer))

    def commit_info(self, sha: str) -> Any:
        return self._t("git show -s", lambda: super(_TimedGitRepo, self).commit_info(sha))

    def files(self, commit: str) -> tuple[str, ...]:
        return self._t("git ls-tree -r", lambda: super(_TimedGitRepo, self).files(commit))

    def by_basename(self, commit: str) -> dict[str, tuple[str, ...]]:
        return self._t("basename index", lambda: super(_TimedGitRepo, self).by_basename(commit))

    def _file_set(self, commit: str) -> frozenset[str]:
        return self._t("file set", lambda: super(_TimedGitRepo, self)._file_set(commit))

    def read(self, commit: str, path: str) -> str | None:
        return self._t("read blob (GitPython)", lambda: super(_TimedGitRepo, self).read(commit, path))

    def blame(self, commit: str, path: str) -> Any:
        return self._t("git blame", lambda: super(_TimedGitRepo, self).blame(commit, path))

    def commits_touching_lines(self, since: str | None, until: str, path: str, start: int, end: int) -> Any:
        return self._t(
            "git log -L", lambda: super(_TimedGitRepo, self).commits_touching_lines(since, until, path, start, end)
        )

    def commits_touching_files(self, since: str | None, until: str, paths: tuple[str, ...]) -> Any:
        return self._t(
            "git log -- files", lambda: super(_TimedGitRepo, self).commits_touching_files(since, until, paths)
        )

    def ancestors(self, commit: str, limit: int) -> tuple[str, ...]:
        return self._t("git rev-list", lambda: super(_TimedGitRepo, self).ancestors(commit, limit))

    def grep_files(self, commit: str, patterns: tuple[str, ...], pathspecs: tuple[str, ...]) -> tuple[str, ...]:
        return self._t("git grep", lambda: super(_TimedGitRepo, self).grep_files(commit, patterns, pathspecs))


class _TimedStore:
    """The store with every method call timed (a proxy: `map_code_path` only calls methods)."""

    def __init__(self, store: Store, phases: _Phases) -> None:
        self._store = store
        self._phases = phases

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr
        return lambda *a, **kw: self._phases.time(f"store.{name} (SQLite)", lambda: attr(*a, **kw))


def _close(repo: GitRepo) -> None:
    """Stop the repository's persistent `git cat-file` processes now rather than at garbage collection."""
    repo._repo.close()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, -(-int(q * 100) * len(ordered) // 100) - 1))]


def _verdict(p50: float, goal: float) -> str:
    return f"goal p50 <= {goal:.0f} ms (achieved/goal {p50 / goal:.2f}, {'met' if p50 <= goal else 'MISSED'})"


def _line(label: str, ms: list[float], goal: float) -> str:
    p50 = _pct(ms, 0.5)
    stats = f"p50 {p50:7.1f}  p90 {_pct(ms, 0.9):7.1f}  max {max(ms):7.1f} ms"
    return f"  {label:<22}{stats}   {_verdict(p50, goal)}"


def _measure(case: _Case, cold_runs: int, warm_runs: int) -> CodePath:
    cold: list[float] = []
    opens: list[float] = []
    result: CodePath | None = None
    for _ in range(cold_runs):
        started = time.perf_counter()
        repo = GitRepo(case.repo)
        opened = time.perf_counter()
        result = map_code_path(case.store, repo, event_id=case.event_id)
        cold.append((time.perf_counter() - opened) * 1000)
        opens.append((opened - started) * 1000)
        _close(repo)
    repo = GitRepo(case.repo)
    try:
        map_code_path(case.store, repo, event_id=case.event_id)  # fills the caches
        warm: list[float] = []
        for _ in range(warm_runs):
            started = time.perf_counter()
            result = map_code_path(case.store, repo, event_id=case.event_id)
            warm.append((time.perf_counter() - started) * 1000)
    finally:
        _close(repo)
    print(_line(f"cold ({cold_runs} runs)", cold, GOAL_COLD_P50_MS))
    print(f"  {'':<22}(+ GitRepo() open p50 {_pct(opens, 0.5):.1f} ms, not counted; OS page cache warm throughout)")
    print(_line(f"warm ({warm_runs} runs)", warm, GOAL_WARM_P50_MS))
    assert result is not None
    return result


def _describe(result: CodePath) -> None:
    culprit = result.culprit
    frames = [f for e in result.exceptions for f in e.path]
    outside = [f for e in result.exceptions for f in e.outside]
    files = sorted({f.location.repo_path for f in frames if f.location.repo_path})
    confidence = sorted({str(f.location.confidence) for f in frames})
    print(f"  release           {result.release.release} -> {result.release.commit[:12]} ({result.release.source})")
    print(f"  chain             {' -> '.join(str(e.type) for e in result.exceptions)}")
    print(
        f"  frames            {len(frames)} in the repository ({len(files)} files, {', '.join(confidence)}), ", end=""
    )
    print(f"{len(outside)} outside (stdlib, library, <request>)")
    if culprit is not None:
        print(f"  culprit           {culprit.location.repo_path}:{culprit.location.lineno} {culprit.qualname}")
    if result.attribution is not None:
        a = result.attribution
        reasons: dict[str, int] = {}
        for s in a.suspects:
            reasons[s.reason] = reasons.get(s.reason, 0) + 1
        since = a.range_from[:12] if a.range_from else "none"
        print(f"  suspects          {len(a.suspects)} {reasons} in {since}..{a.range_to[:12]}")
    print(f"  related tests     {len(result.related_tests)}; reliability rows {len(result.reliability)}")


def _breakdown(case: _Case, *, warm: bool, runs: int = 5, min_ms: float = 0.05) -> None:
    """Mean exclusive time per git call / phase over `runs` instrumented calls, cold or warm."""
    per_run: list[_Phases] = []
    totals: list[float] = []
    repo = _TimedGitRepo(case.repo, _Phases())
    if warm:
        map_code_path(case.store, repo, event_id=case.event_id)  # fills the caches
    for _ in range(runs):
        if not warm:
            _close(repo)
            repo = _TimedGitRepo(case.repo, _Phases())
        repo.phases = phases = _Phases()
        store = cast(Store, _TimedStore(case.store, phases))
        started = time.perf_counter()
        map_code_path(store, repo, event_id=case.event_id)
        totals.append((time.perf_counter() - started) * 1000)
        per_run.append(phases)
    _close(repo)
    total = statistics.mean(totals)
    labels = {k for p in per_run for k in p.seconds}
    rows = sorted(
        (
            (statistics.mean(p.seconds.get(k, 0.0) * 1000 for p in per_run), per_run[-1].calls.get(k, 0), k)
            for k in labels
        ),
        reverse=True,
    )
    kind = "warm" if warm else "cold"
    print(f"  {kind} breakdown (mean of {runs} instrumented {kind} calls, {total:.1f} ms; exclusive ms, share, calls)")
    for ms, calls, label in rows:
        if ms >= min_ms:
            print(f"    {ms:7.1f} ms {100 * ms / total:5.1f}%  x{calls:<3} {label}")
    rest = total - sum(r[0] for r in rows)
    what = "python outside the timed calls (verify_line, pydantic, ast.unparse)"
    print(f"    {rest:7.1f} ms {100 * rest / total:5.1f}%       {what}")


def _profile(case: _Case, top: int = 14) -> None:
    """cProfile of one cold call: cumulative time of prodloop's functions."""
    profile = cProfile.Profile()
    repo = GitRepo(case.repo)
    profile.enable()
    map_code_path(case.store, repo, event_id=case.event_id)
    profile.disable()
    _close(repo)
    stats = pstats.Stats(profile)
    entries = cast(dict[tuple[str, int, str], tuple[int, int, float, float, Any]], stats.stats)  # type: ignore[attr-defined]
    ours = [
        (ct * 1000, nc, f"{Path(file).parent.name}/{Path(file).name}:{name}")
        for (file, _line_no, name), (_cc, nc, _tt, ct, _callers) in entries.items()
        if "prodloop" in file or "/tools/" in file or "/server/" in file
    ]
    ours.sort(reverse=True)
    print("  cProfile, one cold call, cumulative ms of prodloop functions (profiler overhead included):")
    for ct, nc, where in ours[:top]:
        print(f"    {ct:7.1f} ms  x{nc:<5} {where}")


# -- the two repositories -----------------------------------------------------------------------


def _bench_generated(args: argparse.Namespace) -> None:
    print(f"[1] generated repository: {args.commits:,} commits, {args.files:,} files")
    repo, built = generated_repo(args.commits, args.files)
    if built is None:
        print(f"  repository        {repo} (cached; delete it to regenerate)")
    else:
        print(f"  repository        {repo} (generated in {built:.1f} s: git fast-import, reset --hard, gc)")
    count = int(git(repo, "rev-list", "--count", "HEAD"))
    tree = len(git(repo, "ls-tree", "-r", "--name-only", "HEAD").splitlines())
    since = git(repo, "rev-parse", f"v0.{TAGS - 1}.0").strip()
    touched = git(repo, "log", "--format=%h", f"{since}..{RELEASE}", "--", *TARGETS).split()
    print(
        f"  history           {count:,} commits, {tree:,} files at HEAD, {len(git(repo, 'tag').split())} tags; ",
        end="",
    )
    print(f"{len(touched)} commits in v0.{TAGS - 1}.0..{RELEASE} touch the crash path")
    event = _capture(repo, RELEASE, release=RELEASE, in_app="acme", request=_GENERATED_REQUEST, layout={"acme": "acme"})
    with _case("generated", repo, event) as case:
        _run_case(case, args)


def _bench_self(args: argparse.Namespace) -> None:
    head = git(_SELF, "rev-parse", "HEAD").strip()
    count = int(git(_SELF, "rev-list", "--count", "HEAD"))
    print(f"[2] this repository: {_SELF} at HEAD {head[:12]} ({count} commits)")
    layout = {f"prodloop/{d}": d for d in ("server", "tools", "resources", "prompts")}
    event = _capture(_SELF, head, release=head, in_app="prodloop", request=_SELF_REQUEST, layout=layout)
    with _case("self", _SELF, event) as case:
        _run_case(case, args)


def _run_case(case: _Case, args: argparse.Namespace) -> None:
    result = _measure(case, args.cold_runs, args.warm_runs)
    _describe(result)
    _breakdown(case, warm=False)
    _breakdown(case, warm=True)
    _profile(case)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--commits", type=int, default=10_000, help="commits of the generated repository")
    parser.add_argument("--files", type=int, default=2_000, help="files of the generated repository")
    parser.add_argument("--cold-runs", type=int, default=15, help="calls each with a fresh GitRepo")
    parser.add_argument("--warm-runs", type=int, default=50, help="calls reusing one GitRepo")
    parser.add_argument("--skip-generated", action="store_true")
    parser.add_argument("--skip-self", action="store_true")
    args = parser.parse_args(argv)
    if args.commits < TAGS * 5 or args.files < 20 or args.cold_runs < 1 or args.warm_runs < 1:
        parser.error(f"need --commits >= {TAGS * 5}, --files >= 20 and at least one run of each kind")
    print(f"map_code_path  (git {git(_SELF, 'version').split()[-1]}, Python {sys.version.split()[0]}, ", end="")
    print(f"goals: cold p50 <= {GOAL_COLD_P50_MS:.0f} ms, warm p50 <= {GOAL_WARM_P50_MS:.0f} ms)")
    if not args.skip_generated:
        _bench_generated(args)
    if not args.skip_self:
        _bench_self(args)


if __name__ == "__main__":
    main()
