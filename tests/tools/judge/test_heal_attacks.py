"""Review attacks: a heal that ships a weaker test file through every gate."""

from __future__ import annotations

import pytest

from prodloop.server.errors import HealRefused
from prodloop.tools.judge.heal_scope import changes_outside
from prodloop.tools.ship.heal_pr import open_heal_pr
from tests.tools.judge.test_heal import HEALED, PERCENT, TEST_PRICING, Project, project  # noqa: F401

# The failing test is healed faithfully; test_total (same file, not failing, never run by the gates) is neutered.
NEUTERED = {
    "decorator": HEALED.replace("def test_total", "@(lambda f: lambda: None)\ndef test_total"),
    "globals": HEALED + "\n\nglobals()['test_total'] = lambda: None\n",
    "module_constant": HEALED.replace(
        "def test_total():\n    assert total([(2, 5), (1, 3)]) == 13",
        "TOTAL = total([(2, 5), (1, 3)])\n\n\ndef test_total():\n    assert total([(2, 5), (1, 3)]) == TOTAL",
    ),
    "noop_assert_helper": HEALED.replace(
        "    assert total([(2, 5), (1, 3)]) == 13", "    assert_eq(total([(2, 5), (1, 3)]), 13)"
    )
    + "\n\ndef assert_eq(a, b):\n    pass\n",
    "rebound_import": HEALED.replace(
        "from shop.pricing import discount, total", "from shop.pricing import discount\n\ntotal = lambda items: 13"
    ),
    "vars_patch": HEALED + "\n\nimport shop.pricing as _p\n\nvars(_p)['total'] = lambda items: 13\n",
    "trivial_inputs": HEALED.replace("total([(2, 5), (1, 3)]) == 13", "total([(0, 5), (1, 0)]) == 0"),
}


@pytest.mark.parametrize("how", sorted(NEUTERED))
def test_a_heal_may_change_nothing_but_the_failing_test(how: str) -> None:
    """Only the healed test is run and mutation-tested: any other change to the file would ship unjudged."""
    assert changes_outside(TEST_PRICING, NEUTERED[how], "test_discount"), how


def test_a_faithful_heal_may_add_an_import_and_change_its_own_test_only() -> None:
    with_import = "import math\n" + HEALED.replace("discount(150) == 22", "discount(150) == math.floor(22.5)")
    assert changes_outside(TEST_PRICING, with_import, "test_discount") == []
    rebinding = "import shop.pricing as total\n" + HEALED  # an import rebinding a name the file had: refused
    assert changes_outside(TEST_PRICING, rebinding, "test_discount")
    reaching = HEALED.replace("    assert discount(50) == 0\n", "    globals()['discount'] = lambda t: 0\n"
                              "    assert discount(50) == 0\n")  # fmt: skip
    assert any("globals()" in f for f in changes_outside(TEST_PRICING, reaching, "test_discount"))
    decorated = HEALED.replace("def test_discount", "@(lambda f: f)\ndef test_discount")
    assert any("decorators" in f for f in changes_outside(TEST_PRICING, decorated, "test_discount"))
    method_old = (
        "class TestPricing:\n    def test_a(self):\n        assert 1 == f()\n\n"
        "    def test_b(self):\n        assert 2 == f()\n"
    )
    method_new = method_old.replace("assert 1 == f()", "assert 3 == f()")
    assert changes_outside(method_old, method_new, "TestPricing::test_a") == []
    assert changes_outside(method_old, method_new.replace("assert 2 == f()", "pass"), "TestPricing::test_a")


def test_a_heal_cannot_ship_a_neutered_sibling_test(project: Project) -> None:  # noqa: F811
    ctx = project.ctx
    failure = project.rotted()
    healed = project.heal(failure, NEUTERED["decorator"])
    gates = {g.name: g for g in healed.gates}
    assert not healed.passed and gates["only_the_test"].passed is False
    assert "test_total" in gates["only_the_test"].evidence
    with pytest.raises(HealRefused, match="only_the_test"):
        open_heal_pr(ctx.store, ctx.git(), ctx.runner(), ctx.settings, ctx.clock, heal_id=healed.heal_id)


def test_one_heal_opens_one_pull_request(project: Project) -> None:  # noqa: F811
    ctx = project.ctx
    failure = project.rotted()
    healed = project.heal(failure, HEALED)
    assert healed.passed
    first = open_heal_pr(ctx.store, ctx.git(), ctx.runner(), ctx.settings, ctx.clock, heal_id=healed.heal_id)
    try:
        second = open_heal_pr(ctx.store, ctx.git(), ctx.runner(), ctx.settings, ctx.clock, heal_id=healed.heal_id)
    except Exception:
        return
    pytest.fail(f"the same heal was shipped twice: {first.branch} and {second.branch}")


def test_a_commit_summary_cannot_hide_the_gates_in_the_heal_pr_body() -> None:
    from prodloop.server.store import heals
    from prodloop.server.store.heals import Gate
    from prodloop.tools.ship.heal_pr import _body

    heal = heals.Heal(
        id="h", failure_id=1, commit_sha="c" * 40, test_path="tests/test_a.py", test_name="test_a", old_sha256="",
        test_code="", test_sha256="", gates=(Gate(name="not_weakened", passed=True, evidence="ok"),), mutation=None,
        classification={"kind": "test_rot", "evidence": [], "suspects": [
            {"commit": "a" * 40, "summary": "Discount is 15% <!-- from 100 on"}]},
        passed=True, cpu_seconds=0.0, created_at=0.0,
    )  # fmt: skip
    body = _body(heal, {"evidence": []})
    assert "<!--" not in body, body
