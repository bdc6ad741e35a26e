"""`AppContext`: the collaborators every entry point builds once and passes down."""

from __future__ import annotations

from dataclasses import dataclass, field

from prodloop.server.clock import Clock, SystemClock
from prodloop.server.settings import Settings
from prodloop.server.store import Store


@dataclass
class AppContext:
    settings: Settings
    store: Store
    clock: Clock = field(default_factory=SystemClock)

    @classmethod
    def open(cls, settings: Settings, clock: Clock | None = None) -> AppContext:
        clock = clock or SystemClock()
        return cls(settings=settings, store=Store(settings.database_path, clock=clock), clock=clock)

    def close(self) -> None:
        self.store.close()
