"""`AppContext`: what an entry point (MCP app, CLI, demo) opens once; tools get its collaborators, never it."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from prodloop.server.clock import Clock, SystemClock
from prodloop.server.settings import Settings
from prodloop.server.store import Store
from prodloop.server.store.retention import Pruned, prune
from prodloop.tools.engine.collaborators import Collaborators
from prodloop.tools.engine.git_repo import GitRepo
from prodloop.tools.engine.runner import Runner


@dataclass
class AppContext:
    settings: Settings
    store: Store
    clock: Clock = field(default_factory=SystemClock)
    _git: GitRepo | None = field(default=None, repr=False)
    _git_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _runner: Runner | None = field(default=None, repr=False)

    def git(self) -> GitRepo:
        """The served repository, opened once (tools run on several threads) so its caches stay warm."""
        with self._git_lock:
            if self._git is None:
                self._git = GitRepo(self.settings.repo.resolve())
            return self._git

    def runner(self) -> Runner:
        """How confined runs start (interpreter, limits, isolation), built once from the settings; a bench may
        give its own (`with_runner`)."""
        if self._runner is None:
            self._runner = Runner.from_settings(self.settings)
        return self._runner

    def collaborators(self) -> Collaborators:
        """What the write path's tools take, in their order: store, repository, runner, settings, clock."""
        return Collaborators(self.store, self.git(), self.runner(), self.settings, self.clock)

    def with_runner(self, runner: Runner) -> AppContext:
        self._runner = runner
        return self

    @classmethod
    def open(cls, settings: Settings, clock: Clock | None = None) -> AppContext:
        clock = clock or SystemClock()
        store = Store(settings.database, clock=clock)
        _keep_out_of_git(settings.resolved_data_dir)
        return cls(settings=settings, store=store, clock=clock)

    def apply_retention(self) -> Pruned:
        """Prune the store to the retention settings (the ingest writer does so hourly; `prodloop prune` too)."""
        pruned = prune(self.store, now=self.clock.now(), **self.settings.retention.model_dump())
        if pruned.events or pruned.day_rows or pruned.issue_hours_folded:
            logging.getLogger("prodloop.server").info("retention: %s", pruned)
        return pruned

    def close(self) -> None:
        with self._git_lock:
            if self._git is not None:
                self._git.close()  # its long-running git helpers
                self._git = None
        self.store.close()


def _keep_out_of_git(data_dir: Path) -> None:
    """The data dir holds the store and the MCP token: never let `git add -A` in the service's repo take them."""
    ignore = data_dir / ".gitignore"
    if data_dir.is_dir() and not ignore.exists():
        ignore.write_text("# prodloop's store and tokens: never commit them\n*\n", encoding="utf-8")
