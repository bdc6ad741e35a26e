"""Whether a healed test is a weakened version of the test it replaces, read from the two sources (nothing runs).

Healing test rot may change what a test *expects* (`assert f(2) == 4` -> `assert f(2) == 5`): that is its
purpose. It may not check less. Each assertion of the old test is matched to one of the new test by its subject
(the non-constant side, with locals replaced by what defines them), and the pair is judged on how strictly it
compares and where it sits; then the marks, skips, patches, swallowing `except`s and fixtures around the test
are compared. Every finding names its kind, a line and the evidence:

    assertion_removed           an assertion (or assertion call, `pytest.fail`) has no counterpart
    assertion_trivial           an assertion that cannot fail (`assert True`, `x == x`, `assert (x, "msg")`)
    comparison_loosened         `==` became `>=`, `in`, `isinstance`, truthiness...; `ANY` in the expected
                                value; `len(x)` / `set(x)` / `x.lower()` compared instead of `x`
    approx_loosened             the tolerance of `pytest.approx`, `isclose`, `assertAlmostEqual` grew
    raises_widened              `pytest.raises`/`warns` to a base class or more types, `match=` dropped or `.*`
    expected_exception_removed  a `pytest.raises`/`assertRaises`/`warns` block is gone
    body_short_circuit          assertions after a `return`/skip, under `if False:`, in a nested function never
                                called, or the test became a generator / an `async def` no plugin runs
    assertion_in_loop           an assertion moved into a loop (runs zero times on an empty iterable)
    assertion_guarded           an assertion moved under an `if`, `case` or `except`
    broad_except                `except Exception/BaseException/AssertionError`/bare, or `suppress(...)`, that
                                swallows failures
    skip_added / marker_added   skip, skipif, xfail, unittest skips (test, class, `pytestmark`, `pytest.param`
                                rows, `pytest.skip()` calls); other marks such as `flaky` or `filterwarnings`
    case_removed                fewer `parametrize` rows
    patch_added                 a new `monkeypatch`/`mock.patch` target or an assignment to an imported module
    fixture_added / fixture_changed   a new autouse fixture or setup method; a fixture the test uses changed
                                beyond its constants
    test_removed / test_emptied the test is gone, shadowed, no longer collected, or its body is `pass`/`...`
"""

from __future__ import annotations

import ast
import builtins
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from difflib import SequenceMatcher

from prodloop.server.errors import InvalidArgument
from prodloop.tools.judge._assertions import Check, checks
from prodloop.tools.judge._ast_values import always_equal, matches_anything
from prodloop.tools.judge._surroundings import (
    Fixture,
    Hazard,
    Located,
    fixtures_in_play,
    hazards,
    helpers,
    locate,
    marks,
    module_names,
    parametrize_rows,
    shape,
)

__all__ = ["Weakening", "weakenings"]

_BASES = {"Exception", "BaseException", "Warning"}
_PROJECTIONS = ("len", "type", "bool", "set", "frozenset", "sorted", "round", "int", "abs", "hasattr", "any", "all")
_METHOD_PROJECTIONS = ("keys", "values", "lower", "upper", "strip", "casefold")
_DESCRIBE = {
    "eq": "an equality", "identity": "an identity check", "approx": "an approximate equality",
    "unordered_eq": "an order-blind equality", "order": "an ordering", "in": "a containment check",
    "ne": "an inequality", "not_in": "a non-containment check", "isinstance": "a type check",
    "not_none": "a not-None check", "truthy": "a truthiness check", "falsy": "a falsiness check",
    "either": "an `or` of alternatives", "wildcard": "a comparison with ANY", "called": "a was-called check",
    "called_once": "a called-once check", "called_with": "a called-with check",
    "called_once_with": "a called-once-with check", "not_called": "a not-called check", "fail": "an explicit failure",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Weakening:
    kind: str
    line: int  # in the new source, or in the old one for something removed
    evidence: str


def weakenings(old_source: str, new_source: str, test_name: str) -> list[Weakening]:
    """Every way the test `test_name` (`test_x`, `TestCls::test_x` or `TestCls.test_x`) of `new_source` checks
    less than it did in `old_source`; [] when the heal only changed what it expects, or made it stricter."""
    old_tree, new_tree = _parse(old_source, "before"), _parse(new_source, "after")
    old = locate(old_tree, test_name)
    if old is None:
        raise InvalidArgument(
            "test_name",
            f"{test_name} is not a test function of the source before the heal",
            "name the test as it was before: `test_x`, `TestClass::test_x` or `TestClass.test_x`",
        )
    new = locate(new_tree, test_name)
    if new is None:
        line = old.fn.lineno
        return [Weakening("test_removed", line, f"line {line}: test `{test_name}` is gone (removed or renamed)")]
    found: list[Weakening] = []
    if new.gone and not old.gone:
        found.append(Weakening("test_removed", new.fn.lineno, f"test `{test_name}` no longer runs: {new.gone}"))
    wild = always_equal(new_tree)
    found += _body(old, new, wild) + _around(old_tree, old, new_tree, new)
    old_helpers = helpers(old_tree, old)
    for name, fn in helpers(new_tree, new).items():
        if name in old_helpers:  # an assertion helper the test calls, checked like the test itself
            found += _compare(checks(old_helpers[name]), checks(fn), wild)
    unique = {(w.kind, w.line): w for w in reversed(found)}
    return sorted(unique.values(), key=lambda w: (w.line, w.kind))


def _parse(source: str, which: str) -> ast.Module:
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError) as exc:
        where = f"line {exc.lineno}: {exc.msg}" if isinstance(exc, SyntaxError) else str(exc)
        raise InvalidArgument(
            "test_code",
            f"the test source {which} the heal is not valid Python ({where})",
            f"pass the complete test file as it reads {which} the heal",
        ) from exc


def _body(old: Located, new: Located, wild: set[str]) -> list[Weakening]:
    out: list[Weakening] = []
    line = new.fn.lineno
    if isinstance(new.fn, ast.AsyncFunctionDef) and not isinstance(old.fn, ast.AsyncFunctionDef):
        if not any(m in ast.unparse(d) for d in new.fn.decorator_list for m in ("asyncio", "anyio", "trio")):
            out.append(
                Weakening(
                    "body_short_circuit",
                    line,
                    f"line {line}: the test became `async def` with no "
                    "async mark: without a plugin pytest skips it rather than running it",
                )
            )
    if _yields(new.fn) and not _yields(old.fn):
        out.append(
            Weakening(
                "body_short_circuit",
                line,
                f"line {line}: the test now yields: pytest does not run the body of a generator test",
            )
        )
    if _empty(new.fn) and not _empty(old.fn):
        body = "; ".join(ast.unparse(s) for s in new.fn.body)
        return [*out, Weakening("test_emptied", line, f"line {line}: the body of `{new.fn.name}` became `{body}`")]
    return out + _compare(checks(old.fn), checks(new.fn), wild)


def _empty(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return all(
        isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)) for s in fn.body
    )


def _yields(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    nested = {
        id(n)
        for d in ast.walk(fn)
        if d is not fn and isinstance(d, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for n in ast.walk(d)
    }
    return any(isinstance(n, (ast.Yield, ast.YieldFrom)) and id(n) not in nested for n in ast.walk(fn))


def _compare(old: list[Check], new: list[Check], wild: set[str]) -> list[Weakening]:
    out: list[Weakening] = []
    old_trivial = {c.text for c in old if c.trivial}
    for family in ("assert", "raises", "warns"):
        pairs, lost, extra = _pair([c for c in old if c.family == family], [c for c in new if c.family == family])
        for a, b in pairs:
            out += _judge(a, b, wild)
        trivial = [c for c in extra if c.trivial and c.text not in old_trivial]
        for a in lost:
            if a.trivial or a.dead:
                continue  # dropping an assertion that could never fail loses nothing
            if family != "assert":
                out.append(
                    Weakening(
                        "expected_exception_removed",
                        a.line,
                        f"line {a.line}: `{a.text}` is gone: the new test no longer requires the exception",
                    )
                )
            elif trivial:
                b = trivial.pop(0)
                out.append(Weakening("assertion_trivial", b.line, f"{_became(a, b)}, which cannot fail: {b.trivial}"))
            else:
                out.append(
                    Weakening(
                        "assertion_removed", a.line, f"line {a.line}: `{a.text}` has no counterpart in the new test"
                    )
                )
        out += [
            Weakening("assertion_trivial", b.line, f"line {b.line}: `{b.text}` cannot fail: {b.trivial}")
            for b in trivial
        ]
    return out


def _pair(old: list[Check], new: list[Check]) -> tuple[list[tuple[Check, Check]], list[Check], list[Check]]:
    """Old and new assertions that check the same thing: same subject (and relation and expected value, first),
    a projection of the subject, then the most similar subjects."""
    pairs: list[tuple[Check, Check]] = []
    free_old, free_new = list(range(len(old))), list(range(len(new)))

    def take(same: Callable[[Check, Check], bool]) -> None:
        for i in list(free_old):
            j = next((j for j in free_new if same(old[i], new[j])), None)
            if j is not None:
                pairs.append((old[i], new[j]))
                free_old.remove(i)
                free_new.remove(j)

    take(lambda a, b: (a.subject, a.relation, a.expected) == (b.subject, b.relation, b.expected))
    take(lambda a, b: (a.subject, a.relation) == (b.subject, b.relation))
    take(lambda a, b: a.subject == b.subject)
    take(lambda a, b: _projection(a.subject, b.subject) is not None)
    scored = sorted(
        ((SequenceMatcher(None, old[i].subject, new[j].subject).ratio(), i, j) for i in free_old for j in free_new),
        reverse=True,
    )
    for ratio, i, j in scored:
        if ratio >= 0.6 and i in free_old and j in free_new:
            pairs.append((old[i], new[j]))
            free_old.remove(i)
            free_new.remove(j)
    if old and old[0].family != "assert":  # an expected exception is one per block: pair what is left in order
        while free_old and free_new:
            pairs.append((old[free_old.pop(0)], new[free_new.pop(0)]))
    return pairs, [old[i] for i in free_old], [new[j] for j in free_new]


def _projection(old: str, new: str) -> str | None:
    """The lossy view (`len`, `set`, `.lower()`...) through which `new` looks at the value `old` compared."""
    try:
        node = ast.parse(new, mode="eval").body
    except SyntaxError:
        return None
    peeled: list[str] = []
    while ast.unparse(node) != old:
        if isinstance(node, ast.Call) and node.args and isinstance(node.func, ast.Name):
            if node.func.id not in (*_PROJECTIONS, "str", "repr"):
                return None
            peeled.append(node.func.id)
            node = node.args[0]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and not node.args:
            if node.func.attr not in _METHOD_PROJECTIONS:
                return None
            peeled.append(node.func.attr)
            node = node.func.value
        else:
            return None
    return next((p for p in peeled if p not in ("str", "repr")), None)


def _became(a: Check, b: Check) -> str:
    where = f"line {b.line}" if a.line == b.line else f"line {b.line} (old line {a.line})"
    return f"{where}: `{a.text}` became `{b.text}`"


def _judge(a: Check, b: Check, wild: set[str]) -> list[Weakening]:
    out: list[Weakening] = []
    if b.family == "assert":
        if b.trivial and not a.trivial:
            out.append(_trivial(a, b))
        elif b.strength < a.strength:
            why = f"{_DESCRIBE.get(a.relation, a.relation)} became {_DESCRIBE.get(b.relation, b.relation)}"
            out.append(Weakening("comparison_loosened", b.line, f"{_became(a, b)} ({why})"))
        elif projection := _projection(a.subject, b.subject):
            why = f"it now compares `{projection}` of the value instead of the value"
            out.append(Weakening("comparison_loosened", b.line, f"{_became(a, b)} ({why})"))
        elif len(re.findall(pattern := rf"\b(?:{'|'.join(['ANY', *sorted(wild)])})\b", b.expected)) > len(
            re.findall(pattern, a.expected)
        ):
            why = "the expected value gained a wildcard that equals anything"
            out.append(Weakening("comparison_loosened", b.line, f"{_became(a, b)} ({why})"))
        if b.tolerance and a.relation in ("eq", "identity", "approx"):
            before = a.tolerance or (0.0, 0.0)
            grew = [
                f"{k} {x:g} -> {y:g}"
                for k, x, y in zip(("relative", "absolute"), before, b.tolerance, strict=True)
                if y > max(x, 1e-5 if k == "relative" else 1e-7)
            ]
            if grew:
                out.append(Weakening("approx_loosened", b.line, f"{_became(a, b)} (tolerance {', '.join(grew)})"))
    elif b.trivial and not a.trivial:
        out.append(_trivial(a, b))
    elif widened := _widened(a, b):
        out.append(Weakening("raises_widened", b.line, f"{_became(a, b)} ({widened})"))
    if b.dead and not a.dead:
        out.append(Weakening("body_short_circuit", b.line, f"line {b.line}: `{b.text}` never runs: {b.dead}"))
    if b.in_loop and not a.in_loop:
        out.append(
            Weakening(
                "assertion_in_loop",
                b.line,
                f"line {b.line}: `{b.text}` moved into a loop: it runs "
                "once per item, and not at all when the loop is empty",
            )
        )
    if b.guard and not a.guard:
        out.append(Weakening("assertion_guarded", b.line, f"line {b.line}: `{b.text}` now runs only under `{b.guard}`"))
    return out


def _trivial(a: Check, b: Check) -> Weakening:
    if a.text == b.text:
        return Weakening("assertion_trivial", b.line, f"line {b.line}: `{b.text}` cannot fail any more: {b.trivial}")
    return Weakening("assertion_trivial", b.line, f"{_became(a, b)}, which cannot fail: {b.trivial}")


def _widened(a: Check, b: Check) -> str | None:
    added = set(b.exceptions) - set(a.exceptions)
    if base := sorted(added & _BASES):
        return f"it now accepts any {base[0]}"
    if a.exceptions and set(a.exceptions) < set(b.exceptions):
        return f"it now also accepts {', '.join(sorted(added))}"
    for new_name in added:
        new_cls = getattr(builtins, new_name.rsplit(".", 1)[-1], None)
        for old_name in a.exceptions:
            old_cls = getattr(builtins, old_name.rsplit(".", 1)[-1], None)
            if isinstance(new_cls, type) and isinstance(old_cls, type) and issubclass(old_cls, new_cls):
                return f"{new_name} is a base class of {old_name}"
    if a.match is not None and b.match is None:
        return "its `match=` was dropped"
    if a.match is not None and b.match is not None and matches_anything(b.match) and not matches_anything(a.match):
        return f"its `match={b.match}` accepts any message"
    return None


def _around(old_tree: ast.Module, old: Located, new_tree: ast.Module, new: Located) -> list[Weakening]:
    out: list[Weakening] = []
    before = Counter(h.key for h in marks(old_tree, old))
    for h in marks(new_tree, new):
        if before[h.key] > 0:
            before[h.key] -= 1
        else:
            out.append(Weakening(h.kind, h.line, f"line {h.line}: `{h.text}` added"))
    old_rows = parametrize_rows(old.fn)
    for names, (count, line) in parametrize_rows(new.fn).items():
        if names in old_rows and count < old_rows[names][0]:
            out.append(
                Weakening(
                    "case_removed",
                    line,
                    f"line {line}: parametrize {names} has {count} cases, {old_rows[names][0]} before the heal",
                )
            )
    old_fx, new_fx = fixtures_in_play(old_tree, old), fixtures_in_play(new_tree, new)
    seen = Counter((h.kind, h.key) for h in _all_hazards(old_tree, old, old_fx))
    for h in _all_hazards(new_tree, new, new_fx):
        if seen[(h.kind, h.key)] > 0:
            seen[(h.kind, h.key)] -= 1
        else:
            out.append(Weakening(h.kind, h.line, f"line {h.line}: {h.text}"))
    for name, fx in new_fx.items():
        prior = old_fx.get(name)
        line = fx.fn.lineno
        if fx.autouse and (prior is None or not prior.autouse):
            out.append(
                Weakening(
                    "fixture_added",
                    line,
                    f"line {line}: `{fx.fn.name}` now runs before the test (autouse fixture or setup method)",
                )
            )
        elif prior is not None and shape(prior.fn) != shape(fx.fn):
            out.append(
                Weakening(
                    "fixture_changed",
                    line,
                    f"line {line}: fixture `{name}` that the test uses changed beyond its constants",
                )
            )
    return out


def _all_hazards(tree: ast.Module, located: Located, fixtures: dict[str, Fixture]) -> list[Hazard]:
    """Skips, patches and swallowing `except`s in the test, the fixtures it uses and the module's own statements:
    one moved from the test into a fixture is not new."""
    names = module_names(tree)
    defs = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    top = ast.Module([s for s in tree.body if not isinstance(s, defs)], [])
    out = hazards(located.fn, names) + hazards(top, names, " (at module level)")
    for name, fx in fixtures.items():
        out += hazards(fx.fn, names, f" (in fixture `{name}`)")
    return out
