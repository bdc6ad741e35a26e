"""The repository `bench/code_path.py` measures on: `--commits` commits and `--files` Python files (packages,
classes, methods, nested functions, decorators; commits of 1-5 small edits by several authors; annotated tags
v0.1.0..v0.40.0), written with one `git fast-import` stream and cached under
/tmp/prodloop-bench-repo-<hash of the parameters>. The crash path (`TARGETS`) passes through 7 in-app frames
in 3 files, edited by several commits since v0.39.0."""

from __future__ import annotations

import hashlib
import random
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

TAGS = 40
RELEASE = f"v0.{TAGS}.0"
_GENERATOR_VERSION = 2  # bump when the generated history changes shape
_BASE_TIME = 1_700_000_000

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
TARGETS = (_CHECKOUT, _SERVICE, _RULES)


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

    for target in TARGETS:
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
    first = [p for p in paths if p in TARGETS or any(t.startswith(p.removesuffix("__init__.py")) for t in TARGETS)]
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
            if i in hot_commits and not any(p in changed for p in TARGETS):
                path = rng.choice(TARGETS)
                summary.append(_edit(rng, modules[path], on_path=True))
                changed[path] = modules[path].render()
                continue
            elif len(live) <= len(TARGETS) or rng.random() < 0.004:
                path = rng.choice(TARGETS)
            else:  # older files are edited more often
                path = live[len(TARGETS) + int((len(live) - len(TARGETS)) * rng.random() ** 2)]
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


def generated_repo(commits: int, files: int, seed: int = 11) -> tuple[Path, float | None]:
    """The cached repository for these parameters (built on first use); the build time, None if cached."""
    key = hashlib.sha256(f"{_GENERATOR_VERSION}:{commits}:{files}:{seed}".encode()).hexdigest()[:12]
    final = Path(tempfile.gettempdir()) / f"prodloop-bench-repo-{key}"
    if (final / ".git" / "prodloop-bench-complete").exists():
        return final, None
    started = time.perf_counter()
    building = Path(tempfile.mkdtemp(prefix="prodloop-bench-repo-building-"))
    try:
        git(building, "init", "-q", "-b", "main")
        command = ["git", "-C", str(building), "fast-import", "--quiet"]
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, bufsize=1 << 20)
        assert proc.stdin is not None
        with proc.stdin as stream:
            _fast_import_stream(commits, files, seed, stream)
        if proc.wait(timeout=1800) != 0:
            raise RuntimeError("git fast-import failed")
        git(building, "reset", "-q", "--hard", "main")
        git(building, "gc", "-q")  # what a long-lived clone looks like: packed, with a commit-graph
        (building / ".git" / "prodloop-bench-complete").write_text("ok\n")
        shutil.rmtree(final, ignore_errors=True)
        building.rename(final)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return final, time.perf_counter() - started


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout
