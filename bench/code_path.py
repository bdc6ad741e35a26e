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
import hashlib
import json
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar, cast

from prodloop.server.context import AppContext
from prodloop.server.ingest.importer import import_events
from prodloop.server.settings import load_settings
from prodloop.server.store import Store
from prodloop.tools.code_path import CodePath, map_code_path
from prodloop.tools.git_repo import GitRepo

T = TypeVar("T")

GOAL_COLD_P50_MS = 300.0
GOAL_WARM_P50_MS = 30.0
TAGS = 40
RELEASE = f"v0.{TAGS}.0"
_GENERATOR_VERSION = 2  # bump when the generated history changes shape
_SELF = Path(__file__).resolve().parent.parent
_BASE_TIME = 1_700_000_000

# -- the generated repository -------------------------------------------------------------------

_AUTHORS = [
    ("Ada Lovelace", 9),
    ("Grace Hopper", 7),
    ("Linus Torvalds", 5),
    ("Barbara Liskov", 4),
    ("Ken Thompson", 3),
    ("Margaret Hamilton", 2),
    ("Dennis Ritchie", 1),
    ("Frances Allen", 1),
]
_PACKAGES = "billing catalog orders inventory shipping accounts search reports notifications auth payments".split()
_PACKAGES += "analytics media support pricing gateway scheduler audit export sync".split()
_SUBPACKAGES = "api services models core utils adapters jobs".split()
_WORDS = "order item cart price tax rate line batch window quota token session user account invoice".split()
_WORDS += "refund ledger coupon stock route cache report export event queue retry limit budget".split()
_VERBS = "load save apply compute build render validate merge split fetch sync emit parse resolve".split()
_STDLIB = ["import functools", "import json", "import logging", "import re", "from dataclasses import dataclass"]
_STDLIB += ["from collections import defaultdict", "from datetime import datetime, timedelta", "import itertools"]


def _stmt(rng: random.Random) -> str:
    """One statement of a function body: runnable anywhere (literals, builtins and `logger`)."""
    v, w = rng.choice(_WORDS), rng.choice(_WORDS)
    n, m = rng.randrange(1, 500), rng.randrange(1, 50)
    return rng.choice(
        [
            f"{v}_{w} = {n} * {m}",
            f"{v}_limit = max({n}, {m})",
            f'{v}_label = "{w}-{n}"',
            f"{v}_ids = [{n}, {m}, {n + m}]",
            f'{v}_map = {{"{w}": {n}, "{v}": {m}}}',
            f'logger.debug("{v} {w} %s", {n})',
            f"if {n} > {m}:\n    {w}_{v} = {n} - {m}",
            f"{v}_total = sum(x * {m} for x in range({n % 20}))",
        ]
    )


@dataclass
class _Func:
    name: str
    params: str
    body: list[str]
    tail: list[str]
    decorators: list[str] = field(default_factory=list)
    nested: _Func | None = None
    fixed: bool = False  # the crash path: edits only touch `body`, never what runs into the crash

    def render(self, indent: str) -> list[str]:
        out = [indent + d for d in self.decorators] + [f"{indent}def {self.name}({self.params}):"]
        inner = indent + "    "
        for s in self.body:
            out += [inner + part for part in s.split("\n")]
        if self.nested is not None:
            out += self.nested.render(inner)
        return out + [inner + t for t in self.tail]


@dataclass
class _Class:
    name: str
    methods: list[_Func]

    def render(self) -> list[str]:
        out = [f"class {self.name}:", f'    """{self.name} of the service."""', ""]
        for m in self.methods:
            out += [*m.render("    "), ""]
        return out


@dataclass
class _Module:
    path: str
    imports: list[str]
    units: list[_Func | _Class]
    constants: dict[str, int]

    def render(self) -> str:
        name = self.path.rsplit("/", 1)[-1].removesuffix(".py")
        out = [f'"""{name.replace("_", " ").capitalize()}: part of {self.path.split("/")[1]}."""', ""]
        out += [*self.imports, "", "logger = logging.getLogger(__name__)", ""]
        out += [f"{k} = {v}" for k, v in self.constants.items()] + ["", ""]
        for u in self.units:
            out += (u.render("") if isinstance(u, _Func) else u.render()) + ["", ""]
        return "\n".join(out).rstrip() + "\n"

    def functions(self) -> list[_Func]:
        found: list[_Func] = []
        for u in self.units:
            for f in [u] if isinstance(u, _Func) else u.methods:
                found += [f] + ([f.nested] if f.nested else [])
        return found


def _random_func(rng: random.Random, in_class: bool) -> _Func:
    name = f"{rng.choice(_VERBS)}_{rng.choice(_WORDS)}"
    params = ("self, " if in_class else "") + ", ".join(rng.sample(_WORDS, rng.randrange(0, 3)))
    params = params.rstrip(", ")
    decorators = []
    if in_class and rng.random() < 0.15:
        decorators, params = ["@staticmethod"], params.removeprefix("self").lstrip(", ")
    elif rng.random() < 0.2:
        decorators = ["@functools.lru_cache(maxsize=128)" if not in_class else "@traced"]
    nested = None
    if rng.random() < 0.2:
        nested = _Func(f"_{rng.choice(_VERBS)}_one", "value", [_stmt(rng) for _ in range(rng.randrange(1, 4))], [])
        nested.tail = ["return value"]
    body = [_stmt(rng) for _ in range(rng.randrange(2, 9))]
    tail = [f"return {nested.name}(None)"] if nested else ["return None"]
    return _Func(name, params, body, tail, decorators, nested)


def _random_module(rng: random.Random, path: str) -> _Module:
    units: list[_Func | _Class] = [_traced()] if rng.random() < 0.5 else []
    target_lines = rng.randrange(50, 260)
    while sum(len(u.render("") if isinstance(u, _Func) else u.render()) for u in units) < target_lines - 20:
        if rng.random() < 0.45:
            cls = f"{rng.choice(_WORDS).capitalize()}{rng.choice(['Service', 'Repository', 'Builder', 'Policy'])}"
            units.append(_Class(cls, [_random_func(rng, True) for _ in range(rng.randrange(2, 6))]))
        else:
            units.append(_random_func(rng, False))
    if not any(isinstance(u, _Func) and u.name == "traced" for u in units):
        for f in (m for u in units if isinstance(u, _Class) for m in u.methods):
            f.decorators = [d for d in f.decorators if d != "@traced"]
    imports = sorted({"import functools", "import logging", *rng.sample(_STDLIB, 2)})
    constants = {f"{rng.choice(_WORDS).upper()}_{k}": rng.randrange(1, 1000) for k in range(rng.randrange(1, 4))}
    return _Module(path, imports, units, constants)


def _traced() -> _Func:
    wrapper = _Func("wrapper", "*args, **kwargs", [], ["return fn(*args, **kwargs)"], ["@functools.wraps(fn)"])
    return _Func("traced", "fn", [], ["return wrapper"], nested=wrapper, fixed=True)


_CHECKOUT = "acme/orders/api/checkout.py"
_SERVICE = "acme/orders/services/order_service.py"
_RULES = "acme/pricing/core/rules.py"
_TARGETS = (_CHECKOUT, _SERVICE, _RULES)


def _target_modules(rng: random.Random) -> dict[str, _Module]:
    """The crash path: handler -> nested -> decorator wrapper -> method -> json (stdlib) -> hook -> helper."""

    def fn(name: str, params: str, tail: list[str], **kw: Any) -> _Func:
        return _Func(name, params, [_stmt(rng) for _ in range(3)], tail, fixed=True, **kw)

    run = fn("_run", "", ['return OrderService(request["region"]).place(request["lines"])'])
    checkout = _Module(
        _CHECKOUT,
        ["import functools", "import logging", "", "from acme.orders.services.order_service import OrderService"],
        [_random_func(rng, False), fn("handle_checkout", "request", ["return _run()"], nested=run)],
        {"MAX_LINES": 50},
    )
    place = fn(
        "place", "self, lines", ["payload = json.dumps(lines)", "return json.loads(payload, object_hook=price_line)"]
    )
    place.decorators = ["@traced"]
    init = _Func("__init__", "self, region", [], ["self.region = region"], fixed=True)
    service = _Module(
        _SERVICE,
        ["import functools", "import json", "import logging", "", "from acme.pricing.core.rules import price_line"],
        [_traced(), _Class("OrderService", [init, place, _random_func(rng, True)]), _random_func(rng, False)],
        {"DEFAULT_REGION": 1},
    )
    rules = _Module(
        _RULES,
        ["import functools", "import logging"],
        [
            fn("price_line", "obj", ['return {**obj, "total": line_total(obj)} if "sku" in obj else obj']),
            fn("line_total", "line", ['return RATES[line["sku"]] * line["qty"]']),
            _random_func(rng, False),
        ],
        {"PRECISION": 2},
    )
    rules.imports.append('\nRATES = {"apple": 30, "pear": 45}')
    return {m.path: m for m in (checkout, service, rules)}


def _edit(rng: random.Random, module: _Module, *, on_path: bool = False) -> str:
    """One small edit to a module (to a crash-path function if `on_path`); what it did, for the message."""
    funcs = module.functions()
    f = rng.choice([f for f in funcs if f.fixed and f.body] if on_path else funcs)
    lines = len(module.render().splitlines())
    roll = rng.random()
    if f.body and (roll < 0.45 or (lines > 300 and roll < 0.9)):
        if lines > 300 and len(f.body) > 1:
            f.body.pop(rng.randrange(len(f.body)))
            return f"Simplify {f.name}"
        f.body[rng.randrange(len(f.body))] = _stmt(rng)
        return f"Tune {f.name}"
    if roll < 0.75 or f.fixed or not module.units:
        f.body.insert(rng.randrange(len(f.body) + 1), _stmt(rng))
        return f"Extend {f.name}"
    if roll < 0.85:
        new = _random_func(rng, False)
        new.decorators = [d for d in new.decorators if d != "@traced"]
        module.units.append(new)
        return f"Add {new.name}"
    key = rng.choice(list(module.constants))
    module.constants[key] = rng.randrange(1, 1000)
    return f"Change {key}"


def _layout(rng: random.Random, files: int) -> list[str]:
    """`files` paths: acme/<pkg>/<sub>/<module>.py with their __init__.py, about 1 in 8 a test."""
    paths: list[str] = []
    seen: set[str] = set()

    def add(path: str) -> None:
        parts = path.split("/")
        for i in range(1, len(parts)):
            init = "/".join(parts[:i]) + "/__init__.py"
            if parts[0] == "acme" and init not in seen:
                seen.add(init)
                paths.append(init)
        if path not in seen:
            seen.add(path)
            paths.append(path)

    for target in _TARGETS:
        add(target)
    for _ in range(files * 20):
        if len(paths) >= files:
            break
        pkg, sub = rng.choice(_PACKAGES), rng.choice(_SUBPACKAGES)
        name = f"{rng.choice(_WORDS)}_{rng.choice(_WORDS + _VERBS)}"
        add(f"tests/{pkg}/test_{name}.py" if rng.random() < 0.12 else f"acme/{pkg}/{sub}/{name}.py")
    return paths[:files]


def _test_module(path: str, target: str | None) -> str:
    module = target.removesuffix(".py").replace("/", ".") if target else "json"
    what = target.rsplit("/", 1)[-1].removesuffix(".py") if target else "dumps"
    name = path.rsplit("/", 1)[-1].removesuffix(".py")
    body = f"import {module}\n\n\ndef {name}_runs():\n    assert {module} is not None\n"
    return body + f"\n\ndef test_{what}_exists():\n    assert hasattr({module}, '__name__')\n"


def _fast_import_stream(commits: int, files: int, seed: int, out: IO[bytes]) -> None:
    rng = random.Random(seed)
    paths = _layout(rng, files)
    targets = _target_modules(rng)
    modules: dict[str, _Module] = {}
    authors, weights = zip(*_AUTHORS, strict=True)
    # files appear over the first 60% of history; the crash path exists from the start
    first = [p for p in paths if p in _TARGETS or any(t.startswith(p.removesuffix("__init__.py")) for t in _TARGETS)]
    pending = sorted(
        [(0, p) for p in first] + [(rng.randrange(1, max(2, commits * 6 // 10)), p) for p in paths if p not in first]
    )
    per_tag = commits // (TAGS + 1)
    tag_at = {k * per_tag: f"v0.{k}.0" for k in range(1, TAGS + 1)}
    last_range = range((TAGS - 1) * per_tag + 1, TAGS * per_tag + 1)
    hot_commits = sorted(rng.sample(last_range, min(len(last_range), 8)))
    regression = hot_commits[len(hot_commits) // 2]
    line_total = next(f for f in targets[_RULES].functions() if f.name == "line_total")
    live: list[str] = []
    cursor = 0
    for i in range(commits):
        changed: dict[str, str] = {}
        summary: list[str] = []
        while cursor < len(pending) and pending[cursor][0] <= i and (i == 0 or len(changed) < 5):
            path = pending[cursor][1]
            cursor += 1
            if path in targets:
                modules[path] = targets[path]
            elif path.endswith("__init__.py"):
                changed[path] = '"""Package."""\n'
                summary.append(f"Add {path}")
                continue
            elif path.startswith("tests/"):
                tested = rng.choice(live) if live and rng.random() < 0.7 else None
                tested = _RULES if path.endswith(("_item.py", "_line.py")) else tested
                changed[path] = _test_module(path, tested)
                summary.append(f"Test {path.rsplit('/', 1)[-1]}")
                continue
            else:
                modules[path] = _random_module(rng, path)
            live.append(path)
            changed[path] = modules[path].render()
            summary.append(f"Add {path.rsplit('/', 1)[-1]}")
        if i == regression:  # the bug this benchmark's event reports
            line_total.tail = ['return RATES[line["sku"]] * line["qty"] - line["discount"]']
            changed[_RULES] = targets[_RULES].render()
            summary.append("Subtract discounts in line_total")
        for _ in range(rng.randrange(1, 6) - len(changed) if i else 0):
            if i in hot_commits and not any(p in changed for p in _TARGETS):
                path = rng.choice(_TARGETS)
                summary.append(_edit(rng, modules[path], on_path=True))
                changed[path] = modules[path].render()
                continue
            elif len(live) <= len(_TARGETS) or rng.random() < 0.004:
                path = rng.choice(_TARGETS)
            else:  # older files are edited more often
                path = live[len(_TARGETS) + int((len(live) - len(_TARGETS)) * rng.random() ** 2)]
            summary.append(_edit(rng, modules[path]))
            changed[path] = modules[path].render()
        author = rng.choices(authors, weights)[0]
        email = author.split()[0].lower() + "@example.com"
        when = _BASE_TIME + i * 3600 + rng.randrange(600)
        message = (summary[0] if len(summary) == 1 else f"{summary[0]} (+{len(summary) - 1} more)").encode()
        out.write(f"commit refs/heads/main\nmark :{i + 1}\n".encode())
        out.write(f"author {author} <{email}> {when} +0000\ncommitter {author} <{email}> {when} +0000\n".encode())
        out.write(b"data %d\n%s\n" % (len(message), message))
        for path, text in changed.items():
            data = text.encode()
            out.write(b"M 100644 inline %s\ndata %d\n%s\n" % (path.encode(), len(data), data))
        if i in tag_at:
            note = f"Release {tag_at[i]}".encode()
            out.write(f"tag {tag_at[i]}\nfrom :{i + 1}\ntagger {author} <{email}> {when} +0000\n".encode())
            out.write(b"data %d\n%s\n" % (len(note), note))
    out.write(b"done\n")


def _generated_repo(commits: int, files: int, seed: int = 11) -> tuple[Path, float | None]:
    """The cached repository for these parameters (built on first use); the build time, None if cached."""
    key = hashlib.sha256(f"{_GENERATOR_VERSION}:{commits}:{files}:{seed}".encode()).hexdigest()[:12]
    final = Path(tempfile.gettempdir()) / f"prodloop-bench-repo-{key}"
    if (final / ".git" / "prodloop-bench-complete").exists():
        return final, None
    started = time.perf_counter()
    building = Path(tempfile.mkdtemp(prefix="prodloop-bench-repo-building-"))
    try:
        _git(building, "init", "-q", "-b", "main")
        command = ["git", "-C", str(building), "fast-import", "--quiet"]
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, bufsize=1 << 20)
        assert proc.stdin is not None
        with proc.stdin as stream:
            _fast_import_stream(commits, files, seed, stream)
        if proc.wait(timeout=1800) != 0:
            raise RuntimeError("git fast-import failed")
        _git(building, "reset", "-q", "--hard", "main")
        _git(building, "gc", "-q")  # what a long-lived clone looks like: packed, with a commit-graph
        (building / ".git" / "prodloop-bench-complete").write_text("ok\n")
        shutil.rmtree(final, ignore_errors=True)
        building.rename(final)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return final, time.perf_counter() - started


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


# -- real events ------------------------------------------------------------------------------

_CAPTURE = """
import json, sys
import sentry_sdk
from sentry_sdk.transport import Transport

out_path, release, in_app, code = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
events = []


class Capture(Transport):
    def capture_envelope(self, envelope):
        events.extend(json.loads(i.get_bytes()) for i in envelope.items if i.type == "event")

    def flush(self, timeout, callback=None):
        pass


sentry_sdk.init(dsn="http://public@127.0.0.1:9/1", transport=Capture, release=release, environment="production",
                in_app_include=[in_app], include_local_variables=True)


def serve():
    exec(compile(code, "<request>", "exec"), {"__name__": "request"})


try:
    serve()
except Exception:
    sentry_sdk.capture_exception()
sentry_sdk.flush()
with open(out_path, "w") as fh:
    json.dump(events, fh)
"""

_GENERATED_REQUEST = """
from acme.orders.api.checkout import handle_checkout
handle_checkout({"region": "eu", "lines": [{"sku": "apple", "qty": 2}]})
"""

_SELF_REQUEST = """
from prodloop.server.ingest.envelope import parse_envelope
from prodloop.tools.issues import list_issues

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
        (Path(tmp) / "capture.py").write_text(_CAPTURE)
        out = Path(tmp) / "events.json"
        subprocess.run(
            [sys.executable, str(Path(tmp) / "capture.py"), str(out), release, in_app, textwrap.dedent(request)],
            cwd=site,
            env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
            check=True,
            capture_output=True,
            timeout=120,
        )
        events: list[dict[str, Any]] = json.loads(out.read_text())
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
    repo, built = _generated_repo(args.commits, args.files)
    if built is None:
        print(f"  repository        {repo} (cached; delete it to regenerate)")
    else:
        print(f"  repository        {repo} (generated in {built:.1f} s: git fast-import, reset --hard, gc)")
    count = int(_git(repo, "rev-list", "--count", "HEAD"))
    tree = len(_git(repo, "ls-tree", "-r", "--name-only", "HEAD").splitlines())
    since = _git(repo, "rev-parse", f"v0.{TAGS - 1}.0").strip()
    touched = _git(repo, "log", "--format=%h", f"{since}..{RELEASE}", "--", *_TARGETS).split()
    print(
        f"  history           {count:,} commits, {tree:,} files at HEAD, {len(_git(repo, 'tag').split())} tags; ",
        end="",
    )
    print(f"{len(touched)} commits in v0.{TAGS - 1}.0..{RELEASE} touch the crash path")
    event = _capture(repo, RELEASE, release=RELEASE, in_app="acme", request=_GENERATED_REQUEST, layout={"acme": "acme"})
    with _case("generated", repo, event) as case:
        _run_case(case, args)


def _bench_self(args: argparse.Namespace) -> None:
    head = _git(_SELF, "rev-parse", "HEAD").strip()
    count = int(_git(_SELF, "rev-list", "--count", "HEAD"))
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
    print(f"map_code_path  (git {_git(_SELF, 'version').split()[-1]}, Python {sys.version.split()[0]}, ", end="")
    print(f"goals: cold p50 <= {GOAL_COLD_P50_MS:.0f} ms, warm p50 <= {GOAL_WARM_P50_MS:.0f} ms)")
    if not args.skip_generated:
        _bench_generated(args)
    if not args.skip_self:
        _bench_self(args)


if __name__ == "__main__":
    main()
