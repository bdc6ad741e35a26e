"""Per-project token buckets: `rate` events per second, bursts up to `burst`."""

from __future__ import annotations

import threading

from prodloop.server.clock import Clock


class RateLimiter:
    def __init__(self, rate: float, burst: float, clock: Clock) -> None:
        self._rate = rate
        self._burst = max(burst, 1.0)
        self._clock = clock
        self._buckets: dict[int, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, project_id: int, n: int = 1) -> float | None:
        """Take `n` tokens; None when allowed, else the seconds until they would be."""
        if self._rate <= 0 or n <= 0:
            return None
        now = self._clock.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(project_id, (self._burst, now))
            tokens = min(self._burst, tokens + (now - last) * self._rate)
            if tokens >= n:
                self._buckets[project_id] = (tokens - n, now)
                return None
            self._buckets[project_id] = (tokens, now)
            return max(1.0, (n - tokens) / self._rate)
