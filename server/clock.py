"""The one seam for wall-clock time and randomness, so tests inject instead of patching."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    def monotonic(self) -> float: ...


@dataclass
class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


@dataclass
class FixedClock:
    """A clock that only moves when told to (tests, replays)."""

    at: float = 1_700_000_000.0
    _mono: float = field(default=0.0)

    def now(self) -> float:
        return self.at

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self.at += seconds
        self._mono += seconds


def new_token(nbytes: int = 32) -> str:
    """A URL-safe random secret (DSN keys, MCP bearer tokens)."""
    return secrets.token_urlsafe(nbytes)


def new_key() -> str:
    """A 32-hex-digit key, the shape sentry-sdk expects in a DSN."""
    return secrets.token_hex(16)
