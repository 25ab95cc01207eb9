"""Per-connection and per-app limits of the streaming gateway. Pure: the session applies them."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

__all__ = ["StreamSlots", "TokenBucket"]


class TokenBucket:
    """Allows ``rate_per_s`` events a second on average and bursts of up to ``burst``."""

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate_per_s, self.burst, self._clock = rate_per_s, burst, clock
        self._tokens = float(burst)
        self._at = clock()

    def take(self) -> bool:
        """Spend one token if there is one."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate_per_s)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class StreamSlots:
    """Streams open per app on this gateway process, capped at ``limit`` each."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[str] = Counter()

    def acquire(self, app_id: str) -> bool:
        if self._open[app_id] >= self.limit:
            return False
        self._open[app_id] += 1
        return True

    def release(self, app_id: str) -> None:
        self._open[app_id] -= 1
        if self._open[app_id] <= 0:
            del self._open[app_id]

    def open(self, app_id: str) -> int:
        return self._open[app_id]
