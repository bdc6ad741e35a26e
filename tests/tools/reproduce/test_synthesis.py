"""synthesize_regression_test on the sample service's real production events."""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from prodloop.server.context import AppContext
from prodloop.server.ingest.importer import import_events
from prodloop.server.settings import load_settings
from prodloop.tools.judge.candidate import run_candidate_for_issue
from prodloop.tools.reproduce.reconstruct import Unusable, rebuild, render
from prodloop.tools.reproduce.synthesis import synthesize_regression_test
from tests.sample_service import FIX_UNKNOWN_SKU, SampleService


@pytest.fixture
def ctx_for(service_ctx: Callable[..., AppContext]) -> Callable[[str], AppContext]:
    return lambda crash: service_ctx(crash, gates={"flaky_runs": 2})


def test_synthesis_reproduces_the_sample_bug_and_the_test_then_passes_every_gate_with_the_fix(
    ctx_for: Callable[[str], AppContext],
) -> None:
    ctx = ctx_for("unknown_sku")
    result = synthesize_regression_test(*ctx.collaborators(), issue_id=1)
    assert result.frame == "shop/pricing.py::line_total"
    assert [(i.parameter, i.value, i.source) for i in result.inputs] == [
        ("item", "{'qty': 1, 'sku': 'kiwi'}", "call-site")
    ]
    assert result.reproduction is not None and result.reproduction.passed
    assert result.test_code is not None
    assert f"event {result.event_id}" in result.test_code
    assert "fingerprint " in result.test_code
    compile(result.test_code, "synthesized", "exec")
    checked = run_candidate_for_issue(
        *ctx.collaborators(), issue_id=1, test_code=result.test_code, fix_diff=FIX_UNKNOWN_SKU
    )
    assert checked.passed, checked.gates
    assert "crash oracle" in next(g.evidence for g in checked.gates if g.name == "real_assertion")


def test_arguments_the_callee_changed_before_crashing_are_taken_from_the_call_site(
    ctx_for: Callable[[str], AppContext],
) -> None:
    result = synthesize_regression_test(*ctx_for("zero_divisor").collaborators(), issue_id=1)
    assert result.frame == "shop/checkout.py::checkout"
    (order,) = result.inputs
    assert order.source == "call-site"
    assert "'coupon': {'divisor': 0}" in order.value  # the callee had popped it before crashing
    assert result.reproduction is not None and "ZeroDivisionError" in result.reproduction.evidence


def test_a_frame_whose_argument_was_scrubbed_is_refused_with_the_reason(ctx_for: Callable[[str], AppContext]) -> None:
    ctx = ctx_for("short_password")
    result = synthesize_regression_test(*ctx.collaborators(), issue_id=1)
    assert result.test_code is None
    assert [(a.frame, a.usable, a.reason) for a in result.attempts] == [
        ("shop/auth.py::login", False, "password was scrubbed ([Filtered])")
    ]
    assert ctx.store.count_events() == 1


@pytest.mark.parametrize(
    ("serialized", "value"),
    [
        ("'kiwi'", "kiwi"),
        ("3", 3),
        ("-2.5", -2.5),
        ("None", None),
        ("(1, 'a')", (1, "a")),
        ("datetime.datetime(2026, 11, 22, 3, 4, 5)", datetime.datetime(2026, 11, 22, 3, 4, 5)),
        ("datetime.timedelta(seconds=30)", datetime.timedelta(seconds=30)),
        ("Decimal('1.10')", decimal.Decimal("1.10")),
        ("UUID('12345678-1234-5678-1234-567812345678')", uuid.UUID("12345678-1234-5678-1234-567812345678")),
        ({"'a'": "1", "b": ["'x'"]}, {"a": 1, "b": ["x"]}),
    ],
)
def test_values_that_round_trip_are_rebuilt_exactly(serialized: Any, value: Any) -> None:
    rebuilt = rebuild(serialized, "v")
    assert rebuilt == value
    imports: set[str] = set()
    source = render(rebuilt, imports)
    namespace: dict[str, Any] = {}
    exec("\n".join(sorted(imports)), namespace)  # noqa: S102 (the imports render() asked for)
    assert eval(source, namespace) == value  # noqa: S307 (the rendering under test)


@pytest.mark.parametrize(
    ("serialized", "why"),
    [
        ("[Filtered]", "scrubbed"),
        ("'token [Filtered]'", "scrubbed"),
        ("<shop.Cart object at 0x7f00>", "does not round-trip"),
        ("__import__('os').system('true')", "does not round-trip"),
        ("open('/etc/passwd')", "does not round-trip"),
        ([str(i) for i in range(10)], "may have been truncated"),
        ("'" + "a" * 1100 + "...", "truncated"),
    ],
)
def test_values_that_do_not_round_trip_are_refused(serialized: Any, why: str) -> None:
    with pytest.raises(Unusable, match=why):
        rebuild(serialized, "v")


def test_a_hostile_exception_type_never_becomes_code(service: SampleService, tmp_path: Path) -> None:
    import copy

    marker = tmp_path / "pwned"
    event = copy.deepcopy(service.event("unknown_sku"))
    event["event_id"] = "f" * 32
    event["exception"]["values"][-1]["type"] = f"__import__('os').system('touch {marker}') and KeyError or KeyError"
    ctx = AppContext.open(load_settings(repo=service.root, data_dir=tmp_path / "data"))
    try:
        import_events(ctx, ctx.store.create_project("shop"), [("e", event)], source="test")
        result = synthesize_regression_test(*ctx.collaborators(), issue_id=1)
    finally:
        ctx.close()
    assert result.test_code is None
    assert "the exception's type is not a Python name" in {a.reason for a in result.attempts}
    assert not any(a.usable for a in result.attempts)
    assert not marker.exists()


def test_every_distinct_production_input_becomes_a_case_and_the_fix_is_characterized_for_each(
    service: SampleService, service_ctx: Callable[..., AppContext]
) -> None:
    from prodloop.tools.reproduce.characterize import characterize

    ctx = service_ctx("unknown_sku", gates={"flaky_runs": 1})
    (mango,) = service.git.capture(
        "from shop.pricing import cart_total\ncart_total({'items': [{'sku': 'mango', 'qty': 3}]})\n",
        release="shop@1.0.0",
    )
    project = ctx.store.list_projects()[0]
    import_events(ctx, project, [("e2", mango), ("e3", service.event("unknown_sku"))], source="test")
    assert ctx.store.get_issue(1).event_count == 2  # the repeated event is stored once
    result = synthesize_regression_test(*ctx.collaborators(), issue_id=1)
    assert result.call is not None and len(result.call.more_cases) == 1
    assert result.test_code is not None and "@pytest.mark.parametrize(" in result.test_code
    assert "{'qty': 3, 'sku': 'mango'}" in result.test_code and "{'qty': 1, 'sku': 'kiwi'}" in result.test_code
    assert result.reproduction is not None and result.reproduction.passed
    stronger, why = characterize(ctx.git(), ctx.runner(), result.call, FIX_UNKNOWN_SKU)
    assert stronger is not None, why
    assert "assert result == expected" in stronger and "(2 input(s))" in why
    checked = run_candidate_for_issue(*ctx.collaborators(), issue_id=1, test_code=stronger, fix_diff=FIX_UNKNOWN_SKU)
    assert checked.passed, checked.gates
