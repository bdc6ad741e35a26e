"""run_candidate_test on the sample service: each gate passes for a good test and fails for its bad twin."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from prodloop.server.context import AppContext
from prodloop.server.errors import BudgetExhausted
from prodloop.server.settings import load_settings
from prodloop.server.store import lineage, policy, receipts
from prodloop.server.store.receipts import GATE_ORDER
from prodloop.tools.judge.candidate import CandidateResult, prepare_input, run_candidate_test
from prodloop.tools.judge.candidate import test_digest as digest_of
from prodloop.tools.locate.code_path import map_code_path
from tests.sample_service import FIX_UNKNOWN_SKU, SampleService

GOOD_TEST = """
from shop.pricing import cart_total


def test_unknown_sku_costs_nothing():
    assert cart_total({"items": [{"sku": "apple", "qty": 2}, {"sku": "kiwi", "qty": 1}]}) == 60
"""


@pytest.fixture
def open_ctx(service_ctx: Callable[..., AppContext]) -> Callable[..., AppContext]:
    return service_ctx


def _run(ctx: AppContext, test: str, fix: str | None = FIX_UNKNOWN_SKU, **kwargs: Any) -> CandidateResult:
    code_path = map_code_path(ctx.store, ctx.git(), issue_id=1)
    given = prepare_input(
        ctx.git(), issue_id=1, test_code=test, test_file=None, test_path=kwargs.pop("test_path", None),
        test_name=kwargs.pop("test_name", None), fix_diff=fix, fix_from_working_tree=False, code_path=code_path,
    )  # fmt: skip
    return run_candidate_test(*ctx.collaborators(), code_path, given)


def _gates(result: CandidateResult) -> dict[str, bool | None]:
    return {g.name: g.passed for g in result.gates}


def _evidence(result: CandidateResult, gate: str) -> str:
    return next(g.evidence for g in result.gates if g.name == gate)


def _status(root: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain", "--ignored"], capture_output=True, text=True
    ).stdout


def test_a_correct_regression_test_passes_every_gate_and_gets_a_receipt(
    service: SampleService, open_ctx: Callable[..., AppContext]
) -> None:
    before = _status(service.root)
    ctx = open_ctx()
    result = _run(ctx, GOOD_TEST)
    assert _gates(result) == dict.fromkeys(GATE_ORDER, True), result.gates
    assert GATE_ORDER[0] == "hermetic"  # the static refusal comes first: nothing runs after it
    assert "KeyError raised from shop/pricing.py:" in _evidence(result, "reproduces")
    assert "in line_total, on the mapped path" in _evidence(result, "reproduces")
    assert "passed 5 more runs" in _evidence(result, "not_flaky")
    assert "once among 3 tests of 2 file(s) shuffled" in _evidence(result, "not_flaky")
    # The order is drawn from the test and the fix, so the same receipt always gets the same verdict.
    seed = re.search(r"shuffled \(seed (\d+)\)", _evidence(result, "not_flaky"))
    assert seed is not None and f"seed {seed.group(1)})" in _evidence(_run(open_ctx(), GOOD_TEST), "not_flaky")
    assert f"seed {seed.group(1)})" not in _evidence(_run(open_ctx(), GOOD_TEST + "\n# v2\n"), "not_flaky")
    assert "shop/pricing.py::line_total" in _evidence(result, "covers_path")
    assert result.test_path == "tests/test_prodloop_issue_1.py"
    assert result.checkout_protected
    receipt = receipts.get(ctx.store, result.receipt_id)
    assert (receipt.passed, receipt.commit_sha, receipt.test_sha256) == (
        True,
        service.commit,
        digest_of(GOOD_TEST, None),
    )
    assert receipt.fix_diff == FIX_UNKNOWN_SKU
    assert _status(service.root) == before
    worktrees = subprocess.run(["git", "-C", str(service.root), "worktree", "list"], capture_output=True, text=True)
    assert len(worktrees.stdout.splitlines()) == 1
    assert result.budget.runs_used == 1
    assert result.next_step.startswith("all gates passed")


def test_a_test_that_passes_on_the_deployed_code_does_not_reproduce(open_ctx: Callable[..., AppContext]) -> None:
    test = "from shop.pricing import line_total\n\ndef test_ok():\n    assert line_total({'sku': 'pear', 'qty': 1})\n"
    result = _run(open_ctx(), test, fix=None)
    assert _gates(result)["reproduces"] is False
    assert "passes on the deployed code" in _evidence(result, "reproduces")
    assert _gates(result)["passes_with_fix"] is None


def test_an_import_error_is_not_a_reproduction(open_ctx: Callable[..., AppContext]) -> None:
    test = "from shop.pricing import price_unknown\n\ndef test_x():\n    assert price_unknown('kiwi') == 0\n"
    result = _run(open_ctx(), test, fix=None)
    assert _gates(result)["reproduces"] is False
    evidence = _evidence(result, "reproduces")
    assert "the test did not run" in evidence or "ImportError" in evidence


def test_a_failure_unrelated_to_the_production_exception_is_not_a_reproduction(
    open_ctx: Callable[..., AppContext],
) -> None:
    test = "from shop.pricing import cart_total\n\ndef test_x():\n    assert cart_total({'items': []}) == 1\n"
    result = _run(open_ctx(), test, fix=None)
    assert _gates(result)["reproduces"] is False
    assert "AssertionError" in _evidence(result, "reproduces")


def test_a_flaky_test_fails_not_flaky(open_ctx: Callable[..., AppContext]) -> None:
    flaky = GOOD_TEST.replace(
        "== 60\n", "== 60\n    assert random.Random(os.environ.get('PYTHONHASHSEED')).random() < 0.5\n"
    ).replace("from shop", "import os\nimport random\n\nfrom shop")
    result = _run(open_ctx(), flaky)
    assert _gates(result)["passes_with_fix"] is True
    assert _gates(result)["not_flaky"] is False
    assert "run 2: failed; run 3: failed" in _evidence(result, "not_flaky")


def test_an_assertion_free_test_fails_real_assertion(open_ctx: Callable[..., AppContext]) -> None:
    test = GOOD_TEST.replace("    assert cart_total(", "    cart_total(").replace(") == 60", ")")
    result = _run(open_ctx(), test)
    assert _gates(result)["reproduces"] is True
    assert _gates(result)["real_assertion"] is False
    swallowing = GOOD_TEST.replace("    assert", "    try:\n        assert").replace(
        "== 60\n", "== 60\n    except Exception:\n        pass\n    assert True\n"
    )
    result = _run(open_ctx(), swallowing, fix=None)
    assert _gates(result)["real_assertion"] is False
    assert "except swallows the failure" in _evidence(result, "real_assertion")
    assert "assertion that cannot fail" in _evidence(result, "real_assertion")


def test_touching_private_names_or_patching_the_code_fails_public_interface(
    open_ctx: Callable[..., AppContext],
) -> None:
    private = GOOD_TEST.replace("import cart_total", "import _audit, cart_total").replace(
        "== 60\n", "== 60\n    assert _audit(60)\n"
    )
    result = _run(open_ctx(), private, fix=None)
    assert _gates(result)["public_interface"] is False
    assert "imports private name _audit" in _evidence(result, "public_interface")
    patch = "    monkeypatch.setattr('shop.pricing.PRICES', {'apple': 30, 'kiwi': 0})"
    patched = GOOD_TEST.replace("sku_costs_nothing():", f"sku_costs_nothing(monkeypatch):\n{patch}")
    result = _run(open_ctx(), patched, fix=None)
    assert "monkeypatches the code under test" in _evidence(result, "public_interface")


def test_a_test_that_never_reaches_the_culprit_fails_covers_path(open_ctx: Callable[..., AppContext]) -> None:
    test = "from shop.pricing import cart_total\n\ndef test_x():\n    assert cart_total({'items': []}) == 0\n"
    result = _run(open_ctx(), test)
    assert _gates(result)["covers_path"] is False
    assert "0 lines of shop/pricing.py::line_total" in _evidence(result, "covers_path")


def test_an_infinite_loop_is_killed_at_the_timeout(open_ctx: Callable[..., AppContext]) -> None:
    test = "from shop.pricing import cart_total\n\ndef test_x():\n    while True:\n        cart_total({'items': []})\n"
    ctx = open_ctx(gates={"timeout_seconds": 3})
    result = _run(ctx, test, fix=None)
    assert _gates(result)["reproduces"] is False
    assert "killed at the" in _evidence(result, "reproduces")
    assert _gates(result)["fast"] is False
    assert result.wall_seconds < 30


def test_a_test_cannot_write_into_the_users_checkout(
    service: SampleService, open_ctx: Callable[..., AppContext]
) -> None:
    before = _status(service.root)
    target = service.root / "shop" / "pwned.py"
    test = GOOD_TEST.replace("def test_", f"open({str(target)!r}, 'w').write('x = 1')\n\n\ndef test_")
    refused = _run(open_ctx(), test, fix=None)
    assert "line 5: opens a file for writing outside tmp_path" in _evidence(refused, "hermetic")
    assert "not run" in _evidence(refused, "reproduces") and not refused.passed
    # Run anyway (as only the sandbox's own tests do): the sandbox contains it.
    result = _run(open_ctx(gates={"run_non_hermetic": True}), test, fix=None)
    assert not target.exists()
    assert _status(service.root) == before
    assert "Read-only file system" in _evidence(result, "reproduces") or "OSError" in _evidence(result, "reproduces")


def test_the_budget_refuses_runs_past_its_limit_escalates_and_survives_restart(
    service: SampleService, open_ctx: Callable[..., AppContext], tmp_path: Path
) -> None:
    ctx = open_ctx(budgets={"max_runs": 2})
    simple = (
        "from shop.pricing import line_total\n\ndef test_x():\n    assert line_total({'sku': 'kiwi', 'qty': 1}) == 0\n"
    )
    _run(ctx, simple, fix=None)
    _run(ctx, simple, fix=None)
    with pytest.raises(BudgetExhausted, match="prodloop budget reset 1"):
        _run(ctx, simple, fix=None)
    assert [e.kind for e in policy.escalations(ctx.store, issue_id=1, open_only=True)] == ["budget"]
    again = AppContext.open(load_settings(repo=service.root, data_dir=ctx.settings.data_dir, budgets={"max_runs": 2}))
    try:
        with pytest.raises(BudgetExhausted):
            _run(again, simple, fix=None)
        lineage.reset(again.store, 1, who="ana", why="a new approach", at=0.0)
        assert _run(again, simple, fix=None).budget.runs_used == 1
        assert policy.escalations(again.store, issue_id=1, open_only=True) == []
    finally:
        again.close()


@pytest.mark.anyio
async def test_the_mcp_tools_run_a_candidate_and_report_the_budget(open_ctx: Callable[..., AppContext]) -> None:
    from mcp import Client

    from prodloop.server.mcp_app import build_mcp

    ctx = open_ctx(gates={"flaky_runs": 1})
    async with Client(build_mcp(ctx)) as client:
        run = await client.call_tool(
            "run_candidate_test", {"issue_id": 1, "test_code": GOOD_TEST, "fix_diff": FIX_UNKNOWN_SKU}
        )
        status = await client.call_tool("post_merge_status", {"issue_id": 1})
        bad_fix = await client.call_tool(
            "run_candidate_test",
            {"issue_id": 1, "test_code": GOOD_TEST, "fix_diff": "--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a\n+b\n"},
        )
    assert run.structured_content["passed"] is True
    assert len(run.structured_content["receipt_id"]) == 32
    assert status.structured_content["budget"]["runs_used"] == 1
    assert status.structured_content["next_step"].startswith("no PR yet")
    assert bad_fix.is_error
    assert "the fix does not apply" in bad_fix.content[0].text


def test_a_test_can_neither_unmount_the_protection_nor_read_the_store_nor_reach_the_network(
    service: SampleService, open_ctx: Callable[..., AppContext]
) -> None:
    ctx = open_ctx(gates={"run_non_hermetic": True})  # the sandbox's own test: run what the static gate refuses
    target = service.root / "shop" / "pwned.py"
    database = ctx.store.path
    assert database.exists()
    test = f"""
import os
import socket
import subprocess


def test_escape():
    subprocess.run(["umount", {str(service.root)!r}], capture_output=True)
    subprocess.run(["mount", "-o", "remount,bind,rw", {str(service.root)!r}], capture_output=True)
    try:
        with open({str(target)!r}, "w") as fh:
            fh.write("x = 1")
        wrote = True
    except OSError:
        wrote = False
    read = os.path.exists({str(database)!r})
    interfaces = [name for _, name in socket.if_nameindex()]
    server = socket.create_server(("127.0.0.1", 0))
    socket.create_connection(server.getsockname()).close()  # loopback still works
    server.close()
    assert not wrote and not read and interfaces == ["lo"], (wrote, read, interfaces)
"""
    result = _run(ctx, test, fix=None)
    assert result.checkout_protected
    assert not target.exists()
    assert "passes on the deployed code" in _evidence(result, "reproduces")  # its own assertion held
    hermetic = _evidence(result, "hermetic")
    for refused in ("line 3: imports socket", "line 4: imports subprocess", "opens a file for writing outside"):
        assert refused in hermetic, hermetic
    assert not result.passed


def test_a_test_reads_its_support_files_and_the_receipt_binds_them(open_ctx: Callable[..., AppContext]) -> None:
    from prodloop.server.errors import InvalidArgument
    from prodloop.tools.judge.candidate import run_candidate_for_issue, test_digest

    ctx = open_ctx(gates={"flaky_runs": 1})
    test = (
        "import json, pathlib\nfrom shop.pricing import cart_total\n\n\ndef test_cart_from_data():\n"
        "    cart = json.loads((pathlib.Path(__file__).parent / 'data' / 'cart.json').read_text())\n"
        "    assert cart_total(cart) == 60\n"
    )
    support = {"tests/data/cart.json": '{"items": [{"sku": "apple", "qty": 2}, {"sku": "kiwi", "qty": 1}]}'}
    result = run_candidate_for_issue(
        *ctx.collaborators(), issue_id=1, test_code=test, fix_diff=FIX_UNKNOWN_SKU, support_files=support
    )
    assert result.passed, result.gates
    receipt = receipts.get(ctx.store, result.receipt_id)
    assert receipt.support_files == support
    assert receipt.test_sha256 == test_digest(test, support) != test_digest(test, None)
    for bad in ("shop/pricing.py", "../outside/tests/x.json", "/tmp/tests/x"):
        with pytest.raises(InvalidArgument, match="inside a test folder"):
            run_candidate_for_issue(*ctx.collaborators(), issue_id=1, test_code=test, support_files={bad: "x"})


def test_support_files_are_data_never_code_the_gates_did_not_read(open_ctx: Callable[..., AppContext]) -> None:
    from prodloop.tools.judge.candidate import run_candidate_for_issue

    ctx = open_ctx(gates={"flaky_runs": 1})
    sample = {"tests/data/sample_module.py": "async def f():\n    await g()\n"}  # black-style input data: fine
    assert run_candidate_for_issue(*ctx.collaborators(), issue_id=1, test_code=GOOD_TEST, fix_diff=FIX_UNKNOWN_SKU,
                                   support_files=sample).passed  # fmt: skip
    loaded = {"tests/conftest.py": "import os\nos.system('id')\n"}
    refused = run_candidate_for_issue(*ctx.collaborators(), issue_id=1, test_code=GOOD_TEST, support_files=loaded)
    assert "support file tests/conftest.py is code pytest would load" in _evidence(refused, "hermetic")
    importing = "from tests.data.sample_module import f\n" + GOOD_TEST
    refused = run_candidate_for_issue(*ctx.collaborators(), issue_id=1, test_code=importing, support_files=sample)
    assert "line 1: imports tests.data.sample_module, a support file" in _evidence(refused, "hermetic")
    assert "not run" in _evidence(refused, "reproduces")


def test_the_flake_check_judges_the_candidate_not_the_other_tests_of_its_file(
    open_ctx: Callable[..., AppContext],
) -> None:
    broken_neighbour = GOOD_TEST + "\n\ndef test_someone_elses_broken_test():\n    assert 1 + 1 == 3\n"
    result = _run(open_ctx(gates={"flaky_runs": 1}), broken_neighbour, test_name="test_unknown_sku_costs_nothing")
    assert _gates(result)["not_flaky"] is True, _evidence(result, "not_flaky")
    assert "other test(s) failed, not judged" in _evidence(result, "not_flaky")
    assert "test_someone_elses_broken_test" in _evidence(result, "not_flaky")


def test_a_guard_clause_fix_that_returns_before_the_old_crash_line_covers_the_path(
    open_ctx: Callable[..., AppContext],
) -> None:
    from tests.sample_service import fix_diff

    guard = fix_diff(
        "shop/pricing.py",
        '    return PRICES[item["sku"]] * item["qty"]\n',
        '    if item["sku"] not in PRICES:\n        return 0\n    return PRICES[item["sku"]] * item["qty"]\n',
    )
    test = "from shop.pricing import line_total\n\n\ndef test_kiwi():\n"
    test += "    assert line_total({'sku': 'kiwi', 'qty': 1}) == 0\n"
    result = _run(open_ctx(gates={"flaky_runs": 1}), test, fix=guard)
    assert _gates(result)["covers_path"] is True, _evidence(result, "covers_path")
    assert "2 of the fix's 2 changed code line(s) executed" in _evidence(result, "covers_path")


def test_a_synthesized_test_goes_beside_related_tests_in_a_test_folder() -> None:
    from prodloop.tools.judge.candidate import default_test_path

    related = ["maint/scripts/test_redbot.py", "tornado/test/ioloop_test.py"]
    assert default_test_path(related, 3) == "tornado/test/test_prodloop_issue_3.py"
    assert default_test_path(["maint/scripts/test_redbot.py"], 3) == "maint/scripts/test_prodloop_issue_3.py"
    assert default_test_path(["test_root.py"], 3) == "tests/test_prodloop_issue_3.py"
    assert default_test_path([], 3) == "tests/test_prodloop_issue_3.py"


def test_a_candidate_that_breaks_on_state_its_neighbours_leave_fails_not_flaky_every_time(
    open_ctx: Callable[..., AppContext],
) -> None:
    # Whatever order the neighbourhood is drawn in, the candidate runs after the test that leaves a price behind.
    leaky = GOOD_TEST.replace(
        "from shop.pricing import cart_total", "from shop import pricing\nfrom shop.pricing import cart_total"
    )
    leaky += "\n\ndef test_a_neighbour_that_leaves_a_price_behind():\n    pricing.PRICES['kiwi'] = 99\n"
    for version in range(2):  # two receipts, two drawn orders
        result = _run(open_ctx(), leaky + f"\n# {version}\n", test_name="test_unknown_sku_costs_nothing")
        assert _gates(result)["passes_with_fix"] is True, result.gates
        assert _gates(result)["not_flaky"] is False, _evidence(result, "not_flaky")
        assert "the candidate last" in _evidence(result, "not_flaky")
