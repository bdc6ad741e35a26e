"""What the write path works with, named: the store, the repository, how confined runs start, the settings and
the clock. Tools take them as plain arguments; only the edge (MCP app, CLI, demo) opens an `AppContext` and
hands them over (`AppContext.collaborators()`). Inside a tool, helpers that need all five pass them as one."""

from __future__ import annotations

from typing import NamedTuple

from prodloop.server.clock import Clock
from prodloop.server.settings import Settings
from prodloop.server.store import Store
from prodloop.tools.engine.git_repo import GitRepo
from prodloop.tools.engine.runner import Runner


class Collaborators(NamedTuple):
    store: Store
    repo: GitRepo
    runner: Runner
    settings: Settings
    clock: Clock
