"""What an expression of a test is worth without running it: a constant, a wildcard, a tolerance, always true."""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable
from typing import Any

_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
}  # fmt: skip
_LITERAL_CALLS = {
    "approx",
    "call",
    "Decimal",
    "Fraction",
    "date",
    "datetime",
    "time",
    "timedelta",
    "frozenset",
    "set",
    "tuple",
    "list",
    "dict",
    "float",
    "int",
    "str",
    "bytes",
    "UUID",
    "Path",
}
# Defaults of pytest.approx (rel 1e-6, abs 1e-12), math.isclose (rel 1e-9), numpy (rtol 1e-5/1e-7, atol 1e-8) and
# assertAlmostEqual (7 places, abs 5e-8): moving an exact comparison to one of them is no loosening.
DEFAULT_REL, DEFAULT_ABS = 1e-5, 1e-7
_NO_TOLERANCE = (0.0, 0.0)


def call_name(node: ast.expr) -> str:
    """The last name of what is called: `pytest.raises(...)` -> "raises"; "" for anything but a call."""
    if not isinstance(node, ast.Call):
        return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def number(node: ast.expr | None) -> float | None:
    """The numeric value of a constant expression (`1e-3`, `-2`, `10 ** -3`, `float("inf")`, `math.inf`)."""
    if node is None:
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = number(node.operand)
        return None if inner is None else (-inner if isinstance(node.op, ast.USub) else inner)
    if isinstance(node, ast.BinOp):
        left, right = number(node.left), number(node.right)
        if left is None or right is None:
            return None
        if isinstance(node.op, ast.Pow):
            return float(left**right) if abs(right) <= 400 and abs(left) < 1e6 else math.inf
        func = _BINOPS.get(type(node.op))
        try:
            return float(func(left, right)) if func else None
        except (ZeroDivisionError, OverflowError):
            return math.inf
    if isinstance(node, ast.Attribute) and node.attr == "inf":
        return math.inf
    if isinstance(node, ast.Call) and call_name(node) == "float" and node.args:
        arg = node.args[0]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            try:
                return float(arg.value)
            except ValueError:
                return None
    return None


def is_wildcard(node: ast.expr) -> bool:
    """`ANY`, `mock.ANY`, `unittest.mock.ANY`: equal to everything."""
    return isinstance(node, (ast.Name, ast.Attribute)) and call_name(node) == "ANY"


def wildcards(node: ast.AST) -> int:
    return sum(1 for n in ast.walk(node) if isinstance(n, ast.expr) and is_wildcard(n))


def is_literal(node: ast.expr) -> bool:
    """An expected value rather than the code under test: constants, displays of them, ALL_CAPS names,
    `ANY`, and constructors of value types (`Decimal("1")`, `pytest.approx(3.0)`) with literal arguments."""
    if isinstance(node, ast.Constant) or number(node) is not None:
        return True
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return all(is_literal(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        return all(is_literal(e) for e in [*(k for k in node.keys if k is not None), *node.values])
    if isinstance(node, (ast.Name, ast.Attribute)):
        name = call_name(node)
        return name.isupper() or name == "ANY"
    if isinstance(node, ast.Call):
        name = call_name(node)
        args = [*node.args, *(k.value for k in node.keywords)]
        return (name in _LITERAL_CALLS or name[:1].isupper()) and all(is_literal(a) for a in args)
    return False


def tolerance(node: ast.expr) -> tuple[float, float]:
    """(relative, absolute) tolerance of `pytest.approx(...)`, `math.isclose(...)`, `numpy.isclose/allclose(...)`,
    `assertAlmostEqual(...)`, `assert_allclose(...)`; a tolerance that is not a constant counts as infinite."""
    if not isinstance(node, ast.Call):
        return _NO_TOLERANCE
    name = call_name(node)
    kw = {k.arg: k.value for k in node.keywords if k.arg}

    def read(key: str, pos: int | None, default: float) -> float:
        given = kw.get(key) or (node.args[pos] if pos is not None and len(node.args) > pos else None)
        if given is None or (isinstance(given, ast.Constant) and given.value is None):
            return default
        value = number(given)
        return math.inf if value is None else abs(value)

    if name == "approx":
        return read("rel", 1, 1e-6), read("abs", 2, 1e-12)
    if name == "isclose" and ("rel_tol" in kw or "abs_tol" in kw):
        return read("rel_tol", None, 1e-9), read("abs_tol", None, 0.0)
    if name in ("isclose", "allclose", "assert_allclose"):
        return read("rtol", 2, 1e-5), read("atol", 3, 1e-8)
    if name.startswith("assert") and "delta" in kw:
        return 0.0, read("delta", None, 0.0)
    places = read("places", 2, 7.0)
    return 0.0, (0.5 * 10**-places if places != math.inf else math.inf)


def always_true_reason(test: ast.expr) -> str | None:
    """Why an assertion's test can never be false, or None."""
    if isinstance(test, ast.Compare):
        operands = [test.left, *test.comparators]
        if all(is_literal(o) and not is_wildcard(o) for o in operands):
            return "compares constants only"
        same = ast.dump(operands[0]) == ast.dump(operands[1])
        if len(operands) == 2 and same and isinstance(test.ops[0], (ast.Eq, ast.Is, ast.LtE, ast.GtE)):
            return "compares a value with itself"
        if call_name(test.left) == "len" and isinstance(test.ops[0], (ast.GtE, ast.Gt)):
            bound = number(test.comparators[0])
            if bound is not None and (bound < 0 or (bound == 0 and isinstance(test.ops[0], ast.GtE))):
                return "a length is never negative"
        return None
    if isinstance(test, ast.Call) and call_name(test) == "isinstance" and len(test.args) == 2:
        return "everything is an object" if call_name(test.args[1]) == "object" else None
    if isinstance(test, ast.BoolOp):
        reasons = [always_true_reason(v) for v in test.values]
        if isinstance(test.op, ast.Or) and any(reasons):
            return "one alternative is always true"
        return "every part is always true" if all(reasons) else None
    if isinstance(test, ast.IfExp):
        yes, no = always_true_reason(test.body), always_true_reason(test.orelse)
        return "both branches are always true" if yes and no else None
    if isinstance(test, ast.NamedExpr):
        return always_true_reason(test.value)
    if isinstance(test, ast.Lambda):
        return "a function object is always true"
    if isinstance(test, (ast.Tuple, ast.List, ast.Set, ast.Dict)):
        size = len(test.keys) if isinstance(test, ast.Dict) else len(test.elts)
        return "a non-empty container is always true (a parenthesised `assert (x, msg)`?)" if size else None
    if isinstance(test, ast.JoinedStr) and any(isinstance(v, ast.Constant) and v.value for v in test.values):
        return "a non-empty string is always true"
    try:
        return "a true constant" if ast.literal_eval(test) else None
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not) and _always_false(test.operand):
            return "`not` of something always false"
        return None


def _always_false(test: ast.expr) -> bool:
    try:
        return not ast.literal_eval(test)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False


def always_equal(tree: ast.Module) -> set[str]:
    """Classes of the file whose `__eq__` only returns a true constant: instances equal anything, like `ANY`."""
    out = set()
    for cls in ast.walk(tree):
        if not isinstance(cls, ast.ClassDef):
            continue
        for eq in cls.body:
            if isinstance(eq, ast.FunctionDef) and eq.name == "__eq__":
                returns = [r.value for r in ast.walk(eq) if isinstance(r, ast.Return)]
                if returns and all(r is not None and always_true_reason(r) for r in returns):
                    out.add(cls.name)
    return out


def matches_anything(pattern: str) -> bool:
    try:
        value = ast.literal_eval(pattern)
        return isinstance(value, str) and all(re.search(value, s) for s in ("\x01\x02", "zq 9 ~"))
    except (ValueError, SyntaxError, re.error):
        return False
