"""suggest_suite_changes on a real repository: quiet code, vanished code, and prodloop's own tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prodloop.server.clock import FixedClock
from prodloop.server.context import AppContext
from prodloop.server.ingest.importer import import_events
from prodloop.tools.engine.git_repo import GitRepo
from prodloop.tools.ship.suite import suggest_suite_changes
from tests.conftest import make_event
from tests.repos import new_repo


def test_quiet_code_goes_to_the_slow_suite_vanished_code_is_removed_and_failing_code_stays(
    make_ctx: Callable[..., AppContext], tmp_path: Path
) -> None:
    repo = new_repo(tmp_path / "svc")
    repo.commit(
        {
            "shop/__init__.py": "",
            "shop/pricing.py": "def price_of(cart):\n    return 1\n",
            "shop/legacy.py": "def old():\n    return 2\n",
            "shop/tax.py": "RATE = 3\n",
            "tests/test_pricing.py": "from shop.pricing import price_of\n\ndef test_p():\n    assert price_of({})\n",
            "tests/test_legacy.py": "from shop.legacy import old\n\ndef test_o():\n    assert old() == 2\n",
            "tests/test_tax.py": "from shop.tax import RATE, VAT\n\ndef test_t():\n    assert RATE\n",
        },
        "shop",
    )
    repo.commit({"shop/legacy.py": None}, "drop legacy")
    clock = FixedClock(at=1_780_000_000.0 + 90 * 86_400)  # three months after the commits
    ctx = make_ctx(clock=clock)
    import_events(ctx, ctx.store.create_project("svc"), [("e", make_event(timestamp=clock.now() - 86_400))], source="t")
    result = suggest_suite_changes(ctx.store, GitRepo(repo.root), clock, quiet_days=30)
    by_path = {p.test_path: (p.action, p.reasons) for p in result.proposals}
    assert by_path["tests/test_legacy.py"] == ("remove", ["imports shop.legacy, which no longer exists"])
    assert by_path["tests/test_tax.py"] == ("remove", ["imports shop.tax.VAT, which no longer exists"])
    assert "tests/test_pricing.py" not in by_path  # shop/pricing.py failed in production yesterday
    quiet = suggest_suite_changes(ctx.store, GitRepo(repo.root), clock, quiet_days=1)
    assert "tests/test_pricing.py" not in {p.test_path for p in quiet.proposals}
    later = FixedClock(at=clock.now() + 60 * 86_400)
    after = suggest_suite_changes(ctx.store, GitRepo(repo.root), later, quiet_days=30)
    moved = {p.test_path: p.reasons for p in after.proposals if p.action == "move_to_slow_suite"}
    assert moved["tests/test_pricing.py"] == [
        "no commit to shop/pricing.py and no production error in them for 30 days"
    ]
