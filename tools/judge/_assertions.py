"""The assertions of one test function, as records that can be compared across a heal.

A `Check` says what an assertion looks at (its *subject*: the side that is not a constant, with the test's
single-assignment locals replaced by the expressions that define them, so renaming a variable or adding setup
does not change it), how strictly it looks (`relation`, ranked by `STRENGTH`), and where it sits (in a loop,
under an `if`, in code that never runs). Reading only: nothing here runs the test.
"""

from __future__ import annotations

import ast
import copy
from dataclasses import dataclass, replace

from prodloop.tools.judge._ast_values import always_true_reason, call_name, is_literal, is_wildcard, tolerance

TestFunction = ast.FunctionDef | ast.AsyncFunctionDef

# How much a relation pins down: a heal may keep or raise it, never lower it.
STRENGTH = {
    "eq": 5, "identity": 5, "approx": 5, "called_once_with": 5, "not_called": 5, "fail": 5,
    "unordered_eq": 4, "called_with": 4,
    "order": 3, "in": 3, "called_once": 3,
    "ne": 2, "not_in": 2, "isinstance": 2, "called": 2,
    "not_none": 1, "truthy": 1, "falsy": 1, "either": 1,
    "wildcard": 0,
}  # fmt: skip
_OPS: dict[type[ast.cmpop], str] = {
    ast.Eq: "eq", ast.NotEq: "ne", ast.Is: "identity", ast.IsNot: "ne", ast.In: "in", ast.NotIn: "not_in",
    ast.Lt: "order", ast.LtE: "order", ast.Gt: "order", ast.GtE: "order",
}  # fmt: skip
_INVERSE: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn,
    ast.NotIn: ast.In, ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.LtE: ast.Gt, ast.Gt: ast.LtE,
}  # fmt: skip
_UNITTEST = {
    **dict.fromkeys(
        ("assertEqual", "assertEquals", "assertListEqual", "assertDictEqual", "assertTupleEqual", "assertSetEqual",
         "assertSequenceEqual", "assertMultiLineEqual", "assertIsNone"), "eq"),
    "assertIs": "identity", "assertCountEqual": "unordered_eq", "assertAlmostEqual": "approx",
    "assertAlmostEquals": "approx", "assert_allclose": "approx", "assertIn": "in", "assertRegex": "in",
    "assertDictContainsSubset": "in", "assertGreater": "order", "assertGreaterEqual": "order", "assertLess": "order",
    "assertLessEqual": "order", "assertNotEqual": "ne", "assertNotIn": "not_in", "assertIsNot": "ne",
    "assertNotRegex": "ne", "assertNotAlmostEqual": "ne", "assertNotIsInstance": "ne",
    "assertIsInstance": "isinstance", "assertIsNotNone": "not_none", "assertTrue": "truthy", "assertFalse": "falsy",
}  # fmt: skip
_MOCK = {
    "assert_called_once_with": "called_once_with", "assert_awaited_once_with": "called_once_with",
    "assert_called_with": "called_with", "assert_awaited_with": "called_with", "assert_any_call": "called_with",
    "assert_any_await": "called_with", "assert_has_calls": "called_with", "assert_has_awaits": "called_with",
    "assert_called_once": "called_once", "assert_awaited_once": "called_once", "assert_called": "called",
    "assert_awaited": "called", "assert_not_called": "not_called", "assert_not_awaited": "not_called",
}  # fmt: skip
_RAISES = {
    "raises": "raises",
    "assertRaises": "raises",
    "assertRaisesRegex": "raises",
    "warns": "warns",
    "assertWarns": "warns",
    "assertWarnsRegex": "warns",
    "deprecated_call": "warns",
}
STOPPERS = {"skip", "xfail", "fail", "exit", "skipTest", "_exit"}


@dataclass(frozen=True, slots=True)
class Where:
    """Where an assertion sits: in a loop, under a condition (its text), in code that never runs (why)."""

    in_loop: bool = False
    guard: str | None = None
    dead: str | None = None


@dataclass(frozen=True, slots=True)
class Check:
    family: str  # "assert", "raises" or "warns"
    subject: str
    relation: str
    expected: str
    text: str
    line: int
    tolerance: tuple[float, float] | None = None  # (rel, abs) of an approximate comparison
    exceptions: tuple[str, ...] = ()
    match: str | None = None  # the `match=` pattern, as written
    trivial: str | None = None  # why it cannot fail
    where: Where = Where()

    @property
    def in_loop(self) -> bool:
        return self.where.in_loop

    @property
    def guard(self) -> str | None:
        return self.where.guard

    @property
    def dead(self) -> str | None:
        return self.where.dead

    @property
    def strength(self) -> int:
        return STRENGTH.get(self.relation, 5)


def checks(fn: TestFunction) -> list[Check]:
    """Every assertion, assertion call, `pytest.raises`/`warns` block and explicit failure in `fn`, in order."""
    return _Collector(fn).run()


def short(node: ast.AST, limit: int = 100) -> str:
    text = " ".join(ast.unparse(node).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Collector:
    def __init__(self, fn: TestFunction) -> None:
        self.fn = fn
        self.defs = _definitions(fn)
        self.called = {n.func.id for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        self.out: list[Check] = []

    def run(self) -> list[Check]:
        self.block(self.fn.body, Where())
        return self.out

    def canon(self, node: ast.expr) -> ast.expr:
        return _Inline(self.defs).visit(copy.deepcopy(node))  # type: ignore[no-any-return]

    def block(self, body: list[ast.stmt], where: Where) -> None:
        for stmt in body:
            self.stmt(stmt, where)
            if where.dead is None and (why := stops(stmt)):
                where = replace(where, dead=f"after `{why}` on line {stmt.lineno}")

    def stmt(self, s: ast.stmt, w: Where) -> None:
        if isinstance(s, ast.Assert):
            for part in _conjuncts(s.test):
                self.out.append(self.assertion(part, s.lineno, w))
        elif isinstance(s, ast.Expr):
            value = s.value.value if isinstance(s.value, ast.Await) else s.value
            if isinstance(value, ast.Call):
                self.call(value, w)
        elif isinstance(s, ast.Raise) and s.exc is not None and call_name(s.exc) == "AssertionError":
            self.out.append(Check("assert", "fail", "fail", "", short(s), s.lineno, where=w))
        elif isinstance(s, (ast.With, ast.AsyncWith)):
            inner = w
            for item in s.items:
                if isinstance(item.context_expr, ast.Call) and call_name(item.context_expr) in _RAISES:
                    self.raises(item.context_expr, s.body, w)
                    inner = replace(w, guard=w.guard or f"{short(item.context_expr, 40)}, skipped once it raises")
            self.block(s.body, inner)
        elif isinstance(s, ast.If):
            known, truth = _truth(s.test)
            never = f"under `if {short(s.test, 40)}:` which never runs"
            self.block(
                s.body,
                w
                if known and truth
                else replace(w, dead=w.dead or never)
                if known
                else replace(w, guard=w.guard or short(s.test, 60)),
            )
            self.block(
                s.orelse,
                w
                if known and not truth
                else replace(w, dead=w.dead or "in an `else` that never runs")
                if known
                else replace(w, guard=w.guard or f"not ({short(s.test, 60)})"),
            )
        elif isinstance(s, (ast.For, ast.AsyncFor, ast.While)):
            forever = isinstance(s, ast.While) and _truth(s.test) == (True, True)
            self.block(s.body, w if forever else replace(w, in_loop=True))
            self.block(s.orelse, w)
        elif isinstance(s, (ast.Try, ast.TryStar)):
            self.block(s.body, w)
            for h in s.handlers:
                self.block(h.body, replace(w, guard=w.guard or f"except {short(h.type, 40) if h.type else ''}"))
            self.block(s.orelse, w)
            self.block(s.finalbody, w)
        elif isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)):
            never = f"inside nested function `{s.name}` that the test never calls"
            self.block(s.body, w if s.name in self.called else replace(w, dead=w.dead or never))
        elif isinstance(s, ast.ClassDef):
            self.block(s.body, replace(w, dead=w.dead or f"inside nested class `{s.name}`"))
        elif isinstance(s, ast.Match):
            for case in s.cases:
                self.block(case.body, replace(w, guard=w.guard or f"case {short(case.pattern, 40)}"))

    def assertion(self, test: ast.expr, line: int, w: Where) -> Check:
        e = self.canon(test)
        relation, subject, expected = _classify(e)
        tol = tolerance(expected) if relation == "approx" and expected is not None else None
        if relation == "eq" and expected is not None and is_wildcard(expected):
            relation = "wildcard"
        exp = short(expected, 400) if expected is not None else ""
        return Check(
            "assert",
            short(subject, 400),
            relation,
            exp,
            f"assert {short(test)}",
            line,
            tolerance=tol,
            trivial=always_true_reason(e),
            where=w,
        )

    def call(self, call: ast.Call, w: Where) -> None:
        name = call_name(call)
        line, text = call.lineno, short(call)
        if name in _RAISES and len(call.args) > 1:  # pytest.raises(E, func, *args)
            self.raises(call, [], w)
        elif name == "fail" or name in _MOCK or name in _UNITTEST or (name.lower().startswith("assert") and call.args):
            args = [self.canon(a) for a in [*call.args, *(k.value for k in call.keywords)]]
            if name == "fail":
                self.out.append(Check("assert", "fail", "fail", "", text, line, where=w))
            elif name in _MOCK and isinstance(call.func, ast.Attribute):
                receiver = short(self.canon(call.func.value), 400)
                self.out.append(
                    Check("assert", receiver, _MOCK[name], short(ast.Tuple(args), 400), text, line, where=w)
                )
            else:
                relation = _UNITTEST.get(name, "eq")
                pos = [self.canon(a) for a in call.args[:2]]
                subject = next((a for a in pos if not is_literal(a)), pos[0] if pos else call)
                expected = next((a for a in pos if a is not subject), None)
                trivial = None
                if args and all(is_literal(a) for a in pos):
                    trivial = "compares constants only"
                elif len(pos) == 2 and ast.dump(pos[0]) == ast.dump(pos[1]) and relation in ("eq", "identity"):
                    trivial = "compares a value with itself"
                elif relation == "truthy" and pos and always_true_reason(pos[0]):
                    trivial = always_true_reason(pos[0])
                tol = tolerance(call) if relation == "approx" else None
                if relation == "eq" and expected is not None and is_wildcard(expected):
                    relation = "wildcard"
                exp = short(expected, 400) if expected is not None else ""
                self.out.append(
                    Check(
                        "assert",
                        short(subject, 400),
                        relation,
                        exp,
                        text,
                        line,
                        tolerance=tol,
                        trivial=trivial,
                        where=w,
                    )
                )

    def raises(self, call: ast.Call, body: list[ast.stmt], w: Where) -> None:
        name = call_name(call)
        if name == "deprecated_call":
            types: tuple[str, ...] = ("DeprecationWarning", "PendingDeprecationWarning")
        elif call.args:
            first = call.args[0]
            elts = first.elts if isinstance(first, ast.Tuple) else [first]
            types = tuple(sorted(short(e) for e in elts))
        else:
            types = ()
        match = next((k.value for k in call.keywords if k.arg in ("match", "expected_regex")), None)
        if match is None and name.endswith("Regex") and len(call.args) > 1:
            match = call.args[1]
        if body:
            inner = [self.canon(n) for s in body for n in ast.walk(s) if isinstance(n, ast.Call)]
            subject = short(inner[0], 400) if inner else ""
        else:
            rest = call.args[1:]
            subject = short(self.canon(ast.Call(rest[0], rest[1:], [])), 400) if rest else ""
        raised = next((r for b in body for r in ast.walk(b) if isinstance(r, ast.Raise)), None)
        self.out.append(
            Check(
                _RAISES[name],
                subject,
                _RAISES[name],
                ", ".join(types),
                short(call),
                call.lineno,
                exceptions=types,
                match=short(match, 200) if match is not None else None,
                trivial=f"it raises by itself (`{short(raised, 40)}`)" if raised else None,
                where=w,
            )
        )


def stops(stmt: ast.stmt) -> str | None:
    """The statement, when nothing after it in the same block can run."""
    if isinstance(stmt, (ast.Return, ast.Raise, ast.Continue, ast.Break)):
        return short(stmt, 60)
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) and call_name(stmt.value) in STOPPERS:
        return short(stmt, 60)
    if isinstance(stmt, ast.If):
        known, value = _truth(stmt.test)
        branch = stmt.body if not known or value else stmt.orelse
        if known and any(stops(s) for s in branch):
            return short(stmt.test, 30) + ": " + next(filter(None, (stops(s) for s in branch)))
    if isinstance(stmt, (ast.With, ast.AsyncWith)) and not any(
        isinstance(i.context_expr, ast.Call) and call_name(i.context_expr) in _RAISES for i in stmt.items
    ):
        return next(filter(None, (stops(s) for s in stmt.body)), None)
    return None


def _truth(test: ast.expr) -> tuple[bool, bool]:
    """(known, value) of a condition that is a constant."""
    try:
        return True, bool(ast.literal_eval(test))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            known, value = _truth(test.operand)
            return known, not value
        return False, False


def _conjuncts(test: ast.expr) -> list[ast.expr]:
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        return [part for value in test.values for part in _conjuncts(value)]
    return [test]


def _classify(e: ast.expr) -> tuple[str, ast.expr, ast.expr | None]:
    """(relation, subject, expected) of an assertion's test."""
    if isinstance(e, ast.UnaryOp) and isinstance(e.op, ast.Not):
        inner = e.operand
        if isinstance(inner, ast.Compare) and len(inner.ops) == 1:
            return _classify(ast.Compare(inner.left, [_INVERSE[type(inner.ops[0])]()], inner.comparators))
        return "falsy", inner, None
    if isinstance(e, ast.Compare):
        operands = [e.left, *e.comparators]
        i = next((k for k, o in enumerate(operands) if not is_literal(o)), 0)
        op = e.ops[0] if i == 0 else e.ops[i - 1]
        expected = operands[1] if i == 0 else operands[i - 1]
        relation = _OPS[type(op)] if len(e.ops) == 1 else "order"
        none_like = isinstance(expected, ast.Constant) and expected.value in (None, True, False)
        if isinstance(op, ast.IsNot) and isinstance(expected, ast.Constant) and expected.value is None:
            relation = "not_none"
        elif isinstance(op, ast.Is) and none_like:
            relation = "eq"
        elif relation == "eq" and isinstance(expected, ast.Call) and call_name(expected) == "approx":
            relation = "approx"
        return relation, operands[i], expected
    if isinstance(e, ast.Call):
        name, args = call_name(e), e.args
        if name == "isinstance" and len(args) == 2:
            return "isinstance", args[0], args[1]
        if name in ("bool", "hasattr", "callable") and args:
            return "truthy", args[0], None
        if name in ("startswith", "endswith", "issubset", "issuperset", "__contains__") and isinstance(
            e.func, ast.Attribute
        ):
            return "in", e.func.value, args[0] if args else None
        if name in ("match", "search", "fullmatch") and len(args) > 1:
            return ("eq" if name == "fullmatch" else "in"), args[1], args[0]
        if name in ("isclose", "allclose") and len(args) > 1:
            subject = next((a for a in args[:2] if not is_literal(a)), args[0])
            return "approx", subject, e
    if isinstance(e, ast.BoolOp) and isinstance(e.op, ast.Or):
        _, subject, _ = _classify(e.values[0])
        return "either", subject, None
    return "truthy", e, None


def _definitions(fn: TestFunction) -> dict[str, ast.expr]:
    """Locals bound exactly once in `fn`, by the expression that defines them (`x = expr`, `for x in expr`,
    `with expr as x`); a name bound more than once, or by anything else, keeps its name."""
    count: dict[str, int] = {}
    value: dict[str, ast.expr] = {}
    for arg in [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs]:
        count[arg.arg] = 2
    for node in ast.walk(fn):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            count[node.id] = count.get(node.id, 0) + 1
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                count[alias.asname or alias.name] = 2
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node is not fn:
            count[node.name] = 2
        elif isinstance(node, ast.ExceptHandler) and node.name:
            count[node.name] = 2
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value[node.targets[0].id] = node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None and isinstance(node.target, ast.Name):
            value[node.target.id] = node.value
        elif isinstance(node, (ast.For, ast.AsyncFor)) and isinstance(node.target, ast.Name):
            value[node.target.id] = ast.Subscript(node.iter, ast.Name("each", ast.Load()), ast.Load())
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                if isinstance(item.optional_vars, ast.Name):
                    value[item.optional_vars.id] = item.context_expr
    return {name: v for name, v in value.items() if count.get(name) == 1}


class _Inline(ast.NodeTransformer):
    def __init__(self, defs: dict[str, ast.expr], seen: frozenset[str] = frozenset()) -> None:
        self.defs = defs
        self.seen = seen

    def visit_Name(self, node: ast.Name) -> ast.expr:
        if isinstance(node.ctx, ast.Load) and node.id in self.defs and node.id not in self.seen and len(self.seen) < 6:
            inner = _Inline(self.defs, self.seen | {node.id})
            return inner.visit(copy.deepcopy(self.defs[node.id]))  # type: ignore[no-any-return]
        return node
