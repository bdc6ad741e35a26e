"""Passes `serve --http` runs on a thread of their own while it serves."""

from __future__ import annotations

import logging
import threading

from prodloop.server.context import AppContext
from prodloop.server.errors import ProdloopError

logger = logging.getLogger("prodloop.server")


class BackgroundWatch:
    """A watch pass (`prodloop watch`) every `post_merge.interval_seconds`, and at once when `poke` is called (a
    GitHub merge webhook). A failed pass is logged and the next one tries again."""

    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx
        self._stop = threading.Event()
        self._poked = threading.Event()
        self.passes = 0
        self._thread = threading.Thread(target=self._run, name="prodloop-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def poke(self) -> None:
        self._poked.set()

    def on_merge(self, number: int, merge_commit_sha: str, merged_at: float) -> None:
        """A verified GitHub merge webhook: GitHub's own record of a merge of one of prodloop's PRs, then a pass."""
        from prodloop.server.store import lineage

        pr_id = lineage.pull_request_by_number(self._ctx.store, number)
        if pr_id is None:
            logger.info("merge of PR #%s: not one prodloop opened", number)
            return
        # Kept only when the merge commit is here (after fetching the base): a merge recorded for a commit this
        # repository does not hold could never be linked to a deploy, and the first record is kept.
        repo, settings = self._ctx.git(), self._ctx.settings
        if repo.resolve(merge_commit_sha) is None:
            repo.fetch(settings.git_remote, settings.base_branch or repo.default_branch(settings.git_remote))
        if repo.resolve(merge_commit_sha) is not None:
            lineage.record_merge(self._ctx.store, pr_id, merge_commit=merge_commit_sha, merged_at=merged_at,
                                 how="webhook")  # fmt: skip
        else:
            logger.warning("merge of PR #%s: commit %s is not in the repository; the watch pass looks", number,
                           merge_commit_sha[:12])  # fmt: skip
        self.poke()

    def _run(self) -> None:
        from prodloop.tools.watch import watch_pass

        while not self._stop.is_set():
            self._poked.wait(min(max(self._ctx.settings.post_merge.interval_seconds, 1.0), 3600.0))
            self._poked.clear()
            if self._stop.is_set():
                return
            try:
                report = watch_pass(self._ctx.store, self._ctx.git(), self._ctx.settings, self._ctx.clock)
                if report.cords_pulled:
                    logger.warning("watch: %d andon cord(s) pulled", len(report.cords_pulled))
            except ProdloopError as exc:
                logger.error("watch pass failed: %s", str(exc)[:300])
            except Exception as exc:  # serving goes on; the next pass tries again
                logger.error("watch pass failed: %s", type(exc).__name__)
            self.passes += 1

    def stop(self) -> None:
        self._stop.set()
        self._poked.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
