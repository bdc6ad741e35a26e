"""A scenario simulator for the closing stage of the loop: the sample service's real git repository (fix branches
merged for real, deploys recorded as an operator records them), its real crash event processed once by the real
ingest pipeline and stored through the real store at simulated times (Poisson traffic, optionally overdispersed),
and an injected clock. Used by tests/tools/observe/test_post_merge.py and bench/post_merge.py."""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from prodloop.server.clock import FixedClock
from prodloop.server.context import AppContext
from prodloop.server.ingest.pipeline import EventProcessor
from prodloop.server.settings import load_settings
from prodloop.server.store import policy, receipts
from prodloop.server.store.records import EventRecord
from prodloop.tools.observe.post_merge import LineageStep
from prodloop.tools.watch import WatchReport, watch_pass
from tests.sample_service import SampleService

HOUR, DAY = 3600.0, 86400.0
START = 1_780_000_000.0 + 30 * DAY  # after the sample repository's commits
FIXED_PRICING = (
    '"""Prices."""\n\nPRICES = {"apple": 30, "pear": 45}\n\n\n'
    'def line_total(item):\n    return PRICES.get(item["sku"], 0) * item["qty"]\n\n\n'
    'def cart_total(cart):\n    return sum(line_total(item) for item in cart["items"])\n'
)
Rate = Callable[[float], float]  # events per hour at a time


class Sim:
    def __init__(
        self, root: Path, data_dir: Path, *, seed: int = 1, events_from: SampleService | None = None,
        start: float = START, **settings: Any,
    ) -> None:  # fmt: skip
        self.service = SampleService(root)
        self._events = events_from or self.service  # real events are captured once (a subprocess each) ...
        for crash in ("unknown_sku", "zero_rate"):  # ... before any change to the repository
            self._events.event(crash)
        self.git = self.service.git
        self.clock = FixedClock(at=start)
        settings.setdefault("triage", {"mode": "off"})
        self.ctx = AppContext.open(load_settings(repo=self.root, data_dir=data_dir, **settings), clock=self.clock)
        self.project = self.ctx.store.create_project("shop")
        self.rng = np.random.default_rng(seed)
        self._templates: dict[str, EventRecord] = {}
        self._prs = 0
        self.deploy("shop@1.0.0", self.service.commit, at=start - 10 * DAY)

    @property
    def root(self) -> Path:
        return self.service.root

    @property
    def now(self) -> float:
        return self.clock.now()

    def close(self) -> None:
        self.ctx.close()

    # -- production traffic -----------------------------------------------------------------

    def template(self, crash: str) -> EventRecord:
        """One real event of `crash`, through the real pipeline (scrub, grouping, frames): the first is stored."""
        if crash not in self._templates:
            processor = EventProcessor(self.ctx.settings, self.clock)
            raw = {**self._events.event(crash), "event_id": uuid.uuid4().hex, "timestamp": self.now}
            record = processor.process(raw, project_id=self.project.id, user_salt=self.project.public_key,
                                       source="sim", what=crash)  # fmt: skip
            self.ctx.store.write_events([record])
            self._templates[crash] = record
        return self._templates[crash]

    def traffic(
        self, until: float, rate: Rate, *, crash: str = "unknown_sku", release: str = "shop@1.0.0",
        step: float = 300.0, overdispersion: float = 0.0, users: int = 500,
    ) -> int:  # fmt: skip
        """Events of `crash` from now to `until` at `rate` events/hour (Poisson; with `overdispersion` > 0 each step's
        rate is drawn from a gamma of that squared coefficient of variation), then the clock moves to `until`."""
        base = self.template(crash)
        records = []
        at = self.now
        while at < until:
            end = min(until, at + step)
            mean = rate((at + end) / 2) * (end - at) / HOUR
            if overdispersion > 0 and mean > 0:
                mean *= self.rng.gamma(1 / overdispersion, overdispersion)
            for t in np.sort(self.rng.uniform(at, end, self.rng.poisson(mean))):
                records.append(dataclasses.replace(
                    base, event_id=uuid.uuid4().hex, timestamp=float(t), received=float(t), release=release,
                    user_hash=f"{int(self.rng.integers(users)):08x}",
                ))  # fmt: skip
            at = end
        self.clock.at = until
        for first in range(0, len(records), 2000):
            self.ctx.store.write_events(records[first : first + 2000])
        return len(records)

    def issue_id(self, crash: str = "unknown_sku") -> int:
        return self.ctx.store.get_event(self.template(crash).event_id).issue_id

    # -- the repository ---------------------------------------------------------------------

    def _dated(self) -> None:
        """Commits from now on are dated at the simulated time (the fixture dates them by its own hour count)."""
        self.git._tick = int((self.now - 1_780_000_000) // HOUR)

    def open_fix_pr(self, files: dict[str, str] | None = None, *, crash: str = "unknown_sku") -> policy.PullRequestRow:
        """A fix committed on a branch of its own (as open_pr builds it) and the PR's row in the store."""
        self._dated()
        self._prs += 1
        receipt_id = uuid.uuid4().hex
        branch = f"prodloop/fix-{self._prs}"
        self.git.git("checkout", "-q", "-b", branch, "main")
        message = f"Fix production KeyError\n\nProdloop-Receipt: {receipt_id}\n"
        commit = self.git.commit(files or {"shop/pricing.py": FIXED_PRICING}, message, author="prodloop")
        self.git.git("checkout", "-q", "main")
        issue = self.issue_id(crash)
        receipts.save(self.ctx.store, receipts.Receipt(receipt_id, issue, "e" * 32, self.service.commit, "t.py", "t",
                                                       "", "", "", "", True, (), 0.0, self.now))  # fmt: skip
        slot, why = policy.reserve_pull_request(self.ctx.store, issue, receipt_id, max_per_issue=10, max_per_day=10,
                                                now=self.now)  # fmt: skip
        assert slot is not None, why
        row = policy.PullRequestRow(slot, issue, receipt_id, branch, commit, None, None, "local", self.now)
        policy.complete_pull_request(self.ctx.store, row, {"test_node": "t.py::t", "test_path": "t.py"})
        return row

    def merge(self, pr: policy.PullRequestRow, *, how: str = "merge") -> str:
        """Merge the PR's branch into main for real: a merge commit, a squash, a rebase (cherry-pick), or a rebase whose
        message was rewritten."""
        self._dated()
        if how == "merge":
            self.git.git("merge", "-q", "--no-ff", "-m", f"Merge {pr.branch}", pr.branch)
        elif how == "squash":
            self.git.git("merge", "-q", "--squash", pr.branch)
            self.git.git("-c", "user.name=Reviewer", "-c", "user.email=r@example.com", "commit", "-q", "-m",
                         f"Fix production KeyError (#{pr.id})\n\nProdloop-Receipt: {pr.receipt_id}\n")  # fmt: skip
        else:  # a rebase (cherry-pick); "rewritten": a person also rewrote its message (the trailer gone)
            self.git.git("-c", "user.name=Reviewer", "-c", "user.email=r@example.com", "cherry-pick", pr.commit_sha)
            if how == "rewritten":
                self.git.git("-c", "user.name=Reviewer", "-c", "user.email=r@example.com", "commit", "-q", "--amend",
                             "-m", "Fix the price of unknown items")  # fmt: skip
        return self.git.git("rev-parse", "HEAD")

    def change(self, path: str, text: str, message: str = "change") -> str:
        self._dated()
        return self.git.commit({path: text}, message)

    def deploy(self, release: str, commit: str | None = None, *, at: float | None = None) -> int:
        return self.ctx.store.record_deploy(
            release=release, commit_sha=commit or self.git.git("rev-parse", "HEAD"), environment="production",
            deployed_at=self.now if at is None else at, source="operator",
        )  # fmt: skip

    def watch(self) -> WatchReport:
        return watch_pass(self.ctx.store, self.ctx.git(), self.ctx.settings, self.clock)

    def until_verdict(self, after: Rate, hours: int, *, release: str = "shop@1.1.0") -> tuple[str, LineageStep]:
        """An hour of traffic at `after` and a watch pass, up to `hours` times or until the newest PR's verdict is
        no longer none or watching: (the verdict, its step)."""
        step = None
        for _ in range(hours):
            self.traffic(self.now + HOUR, after, release=release)
            step = self.watch().lineages[-1]
            if step.verdict not in (None, "watching"):
                break
        assert step is not None, "no hour was simulated"
        return str(step.verdict), step


def declining(start: float, rate: float, half_life_hours: float) -> Rate:
    return lambda t: rate * math.exp(-math.log(2) * (t - start) / (half_life_hours * HOUR))
