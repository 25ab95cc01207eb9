"""Per-connection and per-app limits of the streaming gateway. Pure: the session applies them."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable

__all__ = ["ByteBudget", "StreamSlots", "TokenBucket"]


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


class ByteBudget:
    """Bytes a gateway process may hold awaiting the broker's acknowledgement, shared by all its streams.

    ``acquire`` waits while the budget is spent: the stream stops reading from its client (TCP backpressure), and
    after ``timeout_s`` the caller gives up with a clear error instead of buffering without bound."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._freed = asyncio.Event()

    async def acquire(self, size: int, timeout_s: float) -> None:
        """Reserve ``size`` bytes (a record larger than the whole budget waits for an empty one); TimeoutError
        after ``timeout_s``."""
        size = min(size, self.limit)
        deadline = time.monotonic() + timeout_s
        while self.used + size > self.limit:
            self._freed.clear()
            await asyncio.wait_for(self._freed.wait(), max(0.0, deadline - time.monotonic()))
        self.used += size

    def release(self, size: int) -> None:
        self.used = max(0, self.used - min(size, self.limit))
        self._freed.set()
