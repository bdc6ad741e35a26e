"""The sandbox contains what a test starts: no process of a run outlives it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from prodloop.server.context import AppContext
from prodloop.tools.candidate import run_candidate_for_issue
from prodloop.tools.sandbox import isolation_available

DAEMON_TEST = """
import os
import time

from shop.pricing import cart_total


def test_unknown_sku_costs_nothing():
    if os.fork() == 0:  # a double-forked daemon, detached from the test's process group
        os.setsid()
        if os.fork() == 0:
            for _ in range(600):
                with open({beat!r}, "a") as fh:
                    fh.write(f"{{os.getpid()}}\\n")
                time.sleep(0.1)
        os._exit(0)
    time.sleep(0.3)
    assert cart_total({{"items": [{{"sku": "apple", "qty": 2}}, {{"sku": "kiwi", "qty": 1}}]}}) == 60
"""


@pytest.mark.skipif(not isolation_available(), reason="needs unprivileged user namespaces")
def test_a_double_forked_daemon_dies_with_its_run(service_ctx: Callable[..., AppContext], tmp_path: Path) -> None:
    beat = tmp_path / "heartbeat"
    ctx = service_ctx(gates={"flaky_runs": 1, "run_non_hermetic": True})  # the layer behind the hermetic gate
    result = run_candidate_for_issue(ctx, issue_id=1, test_code=DAEMON_TEST.format(beat=str(beat)), fix_diff=None)
    assert "line 2: imports os" not in result.gates[0].evidence  # os may be imported; os.fork may not
    assert "reaches os.fork" in result.gates[0].evidence
    assert beat.exists(), "the daemon never ran: the test proves nothing"
    time.sleep(0.5)
    size = beat.stat().st_size
    time.sleep(1.0)
    assert beat.stat().st_size == size, "a process the test started is still running after its run ended"
