"""A healed test may change what it expects, never how much it checks: each way of weakening is named with evidence."""

from __future__ import annotations

import ast
from textwrap import dedent

import pytest

from prodloop.server.errors import InvalidArgument
from prodloop.tools.judge.weakening import Weakening, weakenings

BEFORE = """
import pytest
from shop.pricing import cart_total, parse_sku


def test_cart_total():
    order = {"items": [{"sku": "apple", "qty": 2}, {"sku": "pear", "qty": 1}]}
    total = cart_total(order)
    assert total == 30
    assert cart_total({"items": []}) == 0
"""


def _found(old: str, new: str, test: str = "test_cart_total") -> list[Weakening]:
    return weakenings(dedent(old), dedent(new), test)


def _kinds(old: str, new: str, test: str = "test_cart_total") -> list[str]:
    return [w.kind for w in _found(old, new, test)]


def _heal(old: str, new_body: str) -> str:
    """`old` with the test's body after its first line replaced (the assertions a heal rewrites)."""
    head, _, _ = dedent(old).partition("    total = cart_total(order)\n")
    body = "".join(f"    {line}\n" for line in dedent(new_body).splitlines())
    return head + "    total = cart_total(order)\n" + body


# --- one test per kind -----------------------------------------------------------------------------------------------


def test_a_deleted_assertion_is_named_with_its_old_line() -> None:
    found = _found(BEFORE, _heal(BEFORE, "    assert total == 31\n"))
    assert [(w.kind, w.line) for w in found] == [("assertion_removed", 10)]
    assert "`assert cart_total({'items': []}) == 0` has no counterpart" in found[0].evidence


def test_equality_loosened_to_an_ordering_shows_both_forms() -> None:
    found = _found(BEFORE, _heal(BEFORE, "    assert total >= 0\n    assert cart_total({'items': []}) == 0\n"))
    assert [w.kind for w in found] == ["comparison_loosened"]
    assert found[0].evidence == (
        "line 9: `assert total == 30` became `assert total >= 0` (an equality became an ordering)"
    )


@pytest.mark.parametrize(
    "weaker",
    [
        "assert total",
        "assert total is not None",
        "assert isinstance(total, int)",
        "assert total in (30, 31)",
        "assert bool(total)",
        "assert total == 30 or total == 31",
        "assert total == mock.ANY",
        "assert total != 0",
    ],
)
def test_every_weaker_form_of_an_equality_is_a_loosened_comparison(weaker: str) -> None:
    new = _heal(BEFORE, f"    {weaker}\n    assert cart_total({{'items': []}}) == 0\n")
    assert _kinds(BEFORE, new) == ["comparison_loosened"]


def test_comparing_the_length_instead_of_the_value_is_loosened() -> None:
    old = "def test_names():\n    names = list_names()\n    assert names == ['a', 'b']\n"
    new = "def test_names():\n    names = list_names()\n    assert len(names) == 2\n"
    found = _found(old, new, "test_names")
    assert [w.kind for w in found] == ["comparison_loosened"]
    assert "`len` of the value" in found[0].evidence


def test_a_wildcard_inside_the_expected_value_is_loosened() -> None:
    old = "def test_event():\n    assert build_event() == {'id': 7, 'at': '2024-01-01'}\n"
    new = "from unittest.mock import ANY\n\ndef test_event():\n    assert build_event() == {'id': 7, 'at': ANY}\n"
    found = _found(old, new, "test_event")
    assert [w.kind for w in found] == ["comparison_loosened"]
    assert "gained a wildcard" in found[0].evidence


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("pytest.approx(0.3)", "pytest.approx(0.3, rel=0.5)"),
        ("pytest.approx(0.3, abs=1e-6)", "pytest.approx(0.3, abs=1)"),
        ("0.3", "pytest.approx(0.3, rel=float('inf'))"),
    ],
)
def test_a_growing_tolerance_is_approx_loosened(before: str, after: str) -> None:
    old = f"import pytest\n\ndef test_rate():\n    assert rate() == {before}\n"
    new = f"import pytest\n\ndef test_rate():\n    assert rate() == {after}\n"
    assert _kinds(old, new, "test_rate") == ["approx_loosened"]


def test_assert_almost_equal_with_fewer_places_is_approx_loosened() -> None:
    old = "class TestRate(TestCase):\n    def test_rate(self):\n        self.assertAlmostEqual(rate(), 0.3)\n"
    new = "class TestRate(TestCase):\n    def test_rate(self):\n        self.assertAlmostEqual(rate(), 0.3, places=1)\n"
    assert _kinds(old, new, "TestRate::test_rate") == ["approx_loosened"]


@pytest.mark.parametrize(
    "trivial",
    [
        "assert True",
        "assert 1",
        "assert total == total",
        "assert total or True",
        "assert 30 == 30",
        "assert (total == 31, 'total')",
        "assert len([total]) >= 0",
    ],
)
def test_an_assertion_that_cannot_fail_replacing_a_real_one_is_trivial(trivial: str) -> None:
    new = _heal(BEFORE, f"    {trivial}\n    assert cart_total({{'items': []}}) == 0\n")
    found = _found(BEFORE, new)
    assert [w.kind for w in found] == ["assertion_trivial"]
    assert "became" in found[0].evidence


def test_a_broad_except_around_the_code_under_test_is_named() -> None:
    new = _heal(BEFORE, "    try:\n        assert total == 31\n    except Exception:\n        pass\n")
    found = _found(BEFORE, new)
    assert "broad_except" in [w.kind for w in found]
    assert any("except Exception: pass" in w.evidence for w in found)


def test_contextlib_suppress_is_a_broad_except() -> None:
    new = BEFORE.replace(
        "    total = cart_total(order)\n",
        "    with contextlib.suppress(Exception):\n        total = cart_total(order)\n",
    )
    assert _kinds(BEFORE, new) == ["broad_except"]


RAISES = """
import pytest
from shop.pricing import parse_sku


def test_bad_sku():
    with pytest.raises(ValueError, match="unknown sku"):
        parse_sku("kiwi!")
"""


@pytest.mark.parametrize(
    ("after", "why"),
    [
        ("pytest.raises(Exception)", "any Exception"),
        ("pytest.raises((ValueError, Exception))", "any Exception"),
        ("pytest.raises((ValueError, TypeError), match='unknown sku')", "also accepts TypeError"),
        ("pytest.raises(ValueError)", "`match=` was dropped"),
        ("pytest.raises(ValueError, match='.*')", "accepts any message"),
    ],
)
def test_a_widened_pytest_raises_is_named(after: str, why: str) -> None:
    found = _found(RAISES, RAISES.replace('pytest.raises(ValueError, match="unknown sku")', after), "test_bad_sku")
    assert [w.kind for w in found] == ["raises_widened"]
    assert why in found[0].evidence


def test_a_builtin_base_class_of_the_expected_exception_is_raises_widened() -> None:
    old = RAISES.replace("ValueError", "KeyError")
    found = _found(old, old.replace("KeyError", "LookupError"), "test_bad_sku")
    assert [w.kind for w in found] == ["raises_widened"]
    assert "LookupError is a base class of KeyError" in found[0].evidence


def test_a_removed_pytest_raises_is_an_expected_exception_removed() -> None:
    new = RAISES.replace(
        '    with pytest.raises(ValueError, match="unknown sku"):\n        parse_sku("kiwi!")',
        ('    try:\n        parse_sku("kiwi!")\n    except ValueError:\n        pass'),
    )
    assert _kinds(RAISES, new, "test_bad_sku") == ["expected_exception_removed"]


@pytest.mark.parametrize(
    "mark",
    [
        "@pytest.mark.skip(reason='flaky')",
        "@pytest.mark.xfail",
        "@pytest.mark.skipif(True, reason='later')",
        "@unittest.skip('later')",
    ],
)
def test_a_skip_decorator_is_skip_added(mark: str) -> None:
    new = BEFORE.replace("def test_cart_total", f"{mark}\ndef test_cart_total")
    found = _found(BEFORE, new)
    assert [w.kind for w in found] == ["skip_added"]
    assert found[0].line == 6


def test_a_module_pytestmark_skip_is_skip_added() -> None:
    new = BEFORE.replace(
        "\n\ndef test_cart_total", "\npytestmark = pytest.mark.xfail(strict=False)\n\ndef test_cart_total"
    )
    assert _kinds(BEFORE, new) == ["skip_added"]


def test_a_skip_call_in_the_body_is_skip_added_and_short_circuits() -> None:
    new = _heal(
        BEFORE,
        "    pytest.skip('pricing changed')\n    assert total == 31\n    assert cart_total({'items': []}) == 0\n",
    )
    assert set(_kinds(BEFORE, new)) == {"skip_added", "body_short_circuit"}


def test_an_other_new_marker_is_marker_added() -> None:
    new = BEFORE.replace("def test_cart_total", "@pytest.mark.flaky(reruns=5)\ndef test_cart_total")
    assert _kinds(BEFORE, new) == ["marker_added"]


def test_an_early_return_before_the_assertions_is_a_short_circuit() -> None:
    new = _heal(BEFORE, "    return\n    assert total == 31\n    assert cart_total({'items': []}) == 0\n")
    found = _found(BEFORE, new)
    assert [w.kind for w in found] == ["body_short_circuit", "body_short_circuit"]
    assert "after `return` on line 9" in found[0].evidence


def test_assertions_under_if_false_never_run() -> None:
    new = _heal(BEFORE, "    if 0:\n        assert total == 31\n    assert cart_total({'items': []}) == 0\n")
    assert _kinds(BEFORE, new) == ["body_short_circuit"]


def test_an_assertion_moved_into_a_loop_is_named() -> None:
    old = "def test_lines():\n    lines = render()\n    assert lines[0] == 'total: 30'\n"
    new = "def test_lines():\n    for line in render()[5:]:\n        assert line == 'total: 30'\n"
    assert "assertion_in_loop" in _kinds(old, new, "test_lines")


def test_a_removed_test_is_test_removed_at_its_old_line() -> None:
    new = BEFORE.replace("def test_cart_total", "def check_cart_total")
    assert [(w.kind, w.line) for w in _found(BEFORE, new)] == [("test_removed", 6)]


@pytest.mark.parametrize("body", ["pass", "...", "'''Pricing changed.'''"])
def test_a_body_replaced_by_nothing_is_test_emptied(body: str) -> None:
    new = BEFORE.split("def test_cart_total")[0] + f"def test_cart_total():\n    {body}\n"
    assert _kinds(BEFORE, new) == ["test_emptied"]


@pytest.mark.parametrize(
    ("patch", "target"),
    [
        ("monkeypatch.setattr('shop.pricing.PRICES', {'apple': 15})", "shop.pricing.PRICES"),
        ("monkeypatch.setattr(pricing, 'cart_total', lambda o: 30)", "pricing.cart_total"),
        ("mocker.patch.object(pricing, 'discount')", "pricing.discount"),
    ],
)
def test_a_new_patch_target_is_patch_added(patch: str, target: str) -> None:
    old = BEFORE.replace("def test_cart_total():", "def test_cart_total(monkeypatch, mocker):")
    new = old.replace("    total = cart_total(order)\n", f"    {patch}\n    total = cart_total(order)\n")
    found = _found(old, new)
    assert [w.kind for w in found] == ["patch_added"]
    assert f"patches `{target}`" in found[0].evidence


def test_a_new_autouse_fixture_is_fixture_added() -> None:
    new = BEFORE.replace(
        "\n\ndef test_cart_total",
        "\n\n@pytest.fixture(autouse=True)\ndef prices():\n    yield\n\n\ndef test_cart_total",
    )
    assert _kinds(BEFORE, new) == ["fixture_added"]


def test_a_used_fixture_changed_beyond_its_data_is_fixture_changed() -> None:
    old = """
import pytest


@pytest.fixture
def order():
    return make_order(2)


def test_it(order):
    assert total(order) == 30
"""
    changed_data = old.replace("make_order(2)", "make_order(3)")
    changed_code = old.replace("return make_order(2)", "return None")
    assert _kinds(old, changed_data, "test_it") == []
    assert _kinds(old, changed_code, "test_it") == ["fixture_changed"]


def test_fewer_parametrize_rows_is_case_removed() -> None:
    old = """
import pytest


@pytest.mark.parametrize("qty", [0, 1, 2])
def test_it(qty):
    assert total(qty) == qty * 10
"""
    new = old.replace("[0, 1, 2]", "[1, 2]")
    assert _kinds(old, new, "test_it") == ["case_removed"]


def test_weakened_mock_assertion_is_loosened() -> None:
    old = "def test_send(mailer):\n    notify(mailer)\n    mailer.send.assert_called_once_with('a@b.c')\n"
    new = "def test_send(mailer):\n    notify(mailer)\n    mailer.send.assert_called()\n"
    assert _kinds(old, new, "test_send") == ["comparison_loosened"]


# --- legitimate heals ------------------------------------------------------------------------------------------------

UNITTEST = """
import unittest
from shop.pricing import cart_total


class TestPricing(unittest.TestCase):
    def test_total(self):
        result = cart_total({"items": [{"sku": "apple", "qty": 2}]})
        self.assertEqual(result, 20)
        self.assertIn("apple", str(result.lines))
"""

MESSAGE = """
import pytest
from shop.pricing import parse_sku


def test_bad_sku():
    with pytest.raises(ValueError, match="unknown sku"):
        parse_sku("kiwi!")
    assert describe("kiwi") == "kiwi: 10 cents", "describe changed"
"""

HEALS = {
    "expected constant changed": (BEFORE, BEFORE.replace("== 30", "== 31"), "test_cart_total"),
    "local variable renamed": (
        BEFORE,
        BEFORE.replace("total = ", "amount = ").replace("total ==", "amount =="),
        "test_cart_total",
    ),
    "assertion added": (BEFORE, BEFORE + "    assert cart_total(order) > 0\n", "test_cart_total"),
    "setup line added": (
        BEFORE,
        BEFORE.replace("    total = ", "    order['coupon'] = None\n    total = "),
        "test_cart_total",
    ),
    "comment, docstring and formatting": (
        BEFORE,
        BEFORE.replace("():\n", "():\n    '''Sums lines.'''  # healed\n").replace("== 30", "==  30  # was"),
        "test_cart_total",
    ),
    "stricter comparison": (BEFORE.replace("== 30", ">= 30"), BEFORE, "test_cart_total"),
    "dict expected value changed": (
        "def test_event():\n    assert build_event() == {'id': 7, 'at': '2024'}\n",
        "def test_event():\n    assert build_event() == {'id': 7, 'at': '2025', 'tz': 'UTC'}\n",
        "test_event",
    ),
    "message string updated": (
        MESSAGE,
        MESSAGE.replace("unknown sku", "no such sku")
        .replace("10 cents", "12 cents")
        .replace("describe changed", "price rise"),
        "test_bad_sku",
    ),
    "raises narrowed to another specific name": (MESSAGE, MESSAGE.replace("ValueError", "SkuError"), "test_bad_sku"),
    "unittest assertEqual expected changed (Class::method)": (
        UNITTEST,
        UNITTEST.replace("20)", "22)"),
        "TestPricing::test_total",
    ),
    "unittest method named with a dot": (UNITTEST, UNITTEST.replace("'apple'", "'APPLE'"), "TestPricing.test_total"),
    "exact float to default approx": (
        "import pytest\n\ndef test_rate():\n    assert rate() == 0.3\n",
        "import pytest\n\ndef test_rate():\n    assert rate() == pytest.approx(0.31)\n",
        "test_rate",
    ),
    "input of the call adapted to a new signature": (
        "def test_it():\n    assert cart_total(order(2)) == 20\n",
        "def test_it():\n    assert cart_total(order(2), currency='EUR') == 22\n",
        "test_it",
    ),
    "expected value taken from a named constant": (
        "def test_it():\n    assert cart_total(order(2)) == 20\n",
        "def test_it():\n    expected = 22\n    assert cart_total(order(2)) == expected\n",
        "test_it",
    ),
    "mock call arguments changed": (
        "def test_send(mailer):\n    notify(mailer)\n    mailer.send.assert_called_once_with('a@b.c')\n",
        "def test_send(mailer):\n    notify(mailer)\n    mailer.send.assert_called_once_with('a@b.c', cc=None)\n",
        "test_send",
    ),
    "existing skipif kept, parametrize row values changed": (
        "import pytest\n\n@pytest.mark.skipif(WIN, reason='x')\n@pytest.mark.parametrize('q', [1, 2])\n"
        "def test_it(q):\n    assert f(q) == 2\n",
        "import pytest\n\n@pytest.mark.skipif(WIN, reason='x')\n@pytest.mark.parametrize('q', [1, 3])\n"
        "def test_it(q):\n    assert f(q) == 3\n",
        "test_it",
    ),
}


@pytest.mark.parametrize(("old", "new", "test"), list(HEALS.values()), ids=list(HEALS))
def test_a_legitimate_heal_is_no_weakening(old: str, new: str, test: str) -> None:
    assert _found(old, new, test) == []


def test_the_legitimate_table_is_not_vacuous() -> None:
    """Each heal's old test, with its assertions dropped, is a weakening: the table compares real tests."""
    for old, _, test in HEALS.values():
        kinds = {w.kind for w in _found(old, _without_assertions(old), test)}
        assert kinds & {"assertion_removed", "expected_exception_removed", "test_emptied"}, test


def _without_assertions(source: str) -> str:
    class Strip(ast.NodeTransformer):
        def visit_Assert(self, node: ast.Assert) -> ast.stmt:
            return ast.Pass()

        def visit_Expr(self, node: ast.Expr) -> ast.stmt:
            return ast.Pass() if "assert" in ast.unparse(node) else node

        def visit_With(self, node: ast.With) -> ast.AST | list[ast.stmt]:
            return node.body if "raises" in ast.unparse(node.items[0]) else self.generic_visit(node)

    return ast.unparse(ast.fix_missing_locations(Strip().visit(ast.parse(dedent(source)))))


# --- adversarial: weakenings a model might try ----------------------------------------------------------------------

_ONE = """
import pytest
from shop import pricing
from shop.pricing import cart_total


def test_cart_total():
    total = cart_total({"qty": 2})
    assert total == 30
"""


def _one(new_body: str, before: str = "", after: str = "") -> str:
    """`_ONE` with the test body replaced, code added before the test, and code appended after it."""
    head = _ONE.split("\n\ndef test_cart_total")[0]
    body = "".join(f"    {line}\n" for line in dedent(new_body).strip("\n").splitlines())
    return f"{head}\n{dedent(before)}\n\ndef test_cart_total():\n{body}{dedent(after)}"


ADVERSARIAL = {
    "shadowed by a later definition": _one(
        "total = cart_total({'qty': 2})\nassert total == 30\n", after="\n\ndef test_cart_total():\n    pass\n"
    ),
    "name rebound to None": _ONE + "\ntest_cart_total = None\n",
    "module collection turned off": _ONE + "\n__test__ = False\n",
    "assertions in a nested function never called": _one("""
        def check():
            assert cart_total({"qty": 2}) == 31
    """),
    "assertion tuple, always true": _one("""
        total = cart_total({"qty": 2})
        assert (total == 31, "total")
    """),
    "swallowing AssertionError": _one("""
        total = cart_total({"qty": 2})
        try:
            assert total == 31
        except AssertionError:
            pass
    """),
    "fallback value in a broad except": _one("""
        try:
            total = cart_total({"qty": 2})
        except Exception:
            total = 31
        assert total == 31
    """),
    "code under test replaced by assignment": _one("""
        pricing.cart_total = lambda order: 31
        assert pricing.cart_total({"qty": 2}) == 31
    """),
    "assertion guarded by a condition": _one("""
        total = cart_total({"qty": 2})
        if total:
            assert total == 31
    """),
    "became a generator": _one("""
        total = cart_total({"qty": 2})
        assert total == 31
        yield
    """),
    "expected value aliased to the result": _one("""
        total = cart_total({"qty": 2})
        expected = total
        assert total == expected
    """),
    "lambda in an assert": _one("""
        assert lambda: cart_total({"qty": 2}) == 31
    """),
    "always-equal object as the expected value": _one(
        'assert cart_total({"qty": 2}) == Anything()',
        before="""
            class Anything:
                def __eq__(self, other):
                    return True
        """,
    ),
    "case-blind string comparison": _one('assert str(cart_total({"qty": 2})).lower() == "31"'),
    "patch moved into a new fixture the test requests": _ONE.replace(
        "def test_cart_total():",
        "@pytest.fixture\ndef fake(monkeypatch):\n    monkeypatch.setattr(pricing, 'PRICES', {})\n\n\n"
        "def test_cart_total(fake):",
    ),
    "became async without a plugin mark": _ONE.replace("def test_cart_total", "async def test_cart_total"),
    "if True: return": _one("""
        total = cart_total({"qty": 2})
        if True:
            return
        assert total == 31
    """),
    "os._exit before the assertion": _one("""
        total = cart_total({"qty": 2})
        os._exit(0)
        assert total == 31
    """),
    "skip hidden in the assertion message": _one("""
        total = cart_total({"qty": 2})
        assert total == 31, pytest.skip("pricing changed")
    """),
    "assertion inside a new pytest.raises": _one("""
        with pytest.raises(Exception):
            total = cart_total({"qty": 2})
            assert total == 31
    """),
    "sys.modules entry replaced": _one(
        """
        sys.modules["shop.pricing"] = object()
        assert cart_total({"qty": 2}) == 31
        """,
        before="import sys\n",
    ),
}


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_an_adversarial_weakening_is_caught(name: str) -> None:
    assert _found(_ONE, ADVERSARIAL[name]), name


def test_the_adversarial_baseline_heal_is_clean() -> None:
    """The adversarial cases start from a test whose honest heal (30 -> 31) is fine: what they add is the finding."""
    assert _found(_ONE, _ONE.replace("== 30", "== 31")) == []


def test_an_expected_exception_block_that_raises_by_itself_is_trivial() -> None:
    old = _one("""
        with pytest.raises(ValueError):
            cart_total({"qty": -1})
    """)
    new = _one("""
        with pytest.raises(ValueError):
            cart_total({"qty": -1})
            raise ValueError
    """)
    found = _found(old, new)
    assert [w.kind for w in found] == ["assertion_trivial"]
    assert "raises by itself" in found[0].evidence


def test_an_assertion_helper_the_test_calls_is_compared_too() -> None:
    helper = "def check(total):\n    assert total == 30\n"
    old = _one("check(cart_total({'qty': 2}))", before=helper)
    new = _one("check(cart_total({'qty': 2}))", before=helper.replace("assert total == 30", "assert total"))
    assert _kinds(old, new) == ["comparison_loosened"]


def test_a_skip_in_unittest_is_skip_added() -> None:
    old = dedent("""
    import unittest


    class TestX(unittest.TestCase):
        def test_cart_total(self):
            self.assertEqual(cart_total({"qty": 2}), 30)
    """)
    skip_test = old.replace("        self.assertEqual", "        self.skipTest('later')\n        self.assertEqual")
    expected_failure = old.replace("    def test_cart_total", "    @unittest.expectedFailure\n    def test_cart_total")
    assert "skip_added" in _kinds(old, skip_test, "TestX::test_cart_total")
    assert _kinds(old, expected_failure, "TestX.test_cart_total") == ["skip_added"]


def test_an_xfail_mark_on_one_parametrize_row_is_skip_added() -> None:
    old = """
    import pytest


    @pytest.mark.parametrize("qty", [1, 2])
    def test_cart_total(qty):
        assert cart_total({"qty": qty}) == 15 * qty
    """
    new = old.replace("[1, 2]", "[1, pytest.param(2, marks=pytest.mark.xfail)]")
    assert _kinds(old, new) == ["skip_added"]


# --- bad input -------------------------------------------------------------------------------------------------------


def test_a_source_that_does_not_parse_is_an_invalid_test_code_argument() -> None:
    with pytest.raises(
        InvalidArgument, match=r"argument test_code: the test source after the heal is not valid Python \(line 1"
    ):
        weakenings(BEFORE, "def test_cart_total(:\n    pass\n", "test_cart_total")


def test_a_test_missing_before_the_heal_is_an_invalid_test_name() -> None:
    with pytest.raises(
        InvalidArgument, match="argument test_name: test_nope is not a test function of the source before"
    ):
        weakenings(BEFORE, BEFORE, "test_nope")
