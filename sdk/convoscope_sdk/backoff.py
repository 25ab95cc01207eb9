"""Delays between reconnect attempts: exponential with jitter, capped, within a time budget. Pure."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True)
class Backoff:
    """``delay_s(n)`` before the n-th retry (0-based): ``initial_s * factor**n`` capped at ``max_s``, spread by
    ±``jitter`` (a fraction) so many clients cut off together do not all come back in the same instant.
    ``give_up_after_s`` bounds the whole outage: the streaming client also asks the server to keep the
    conversation that long (``noConnectionTimeout``), so resuming after it would find the conversation gone."""

    initial_s: float = 0.25
    factor: float = 2.0
    max_s: float = 5.0
    jitter: float = 0.2
    give_up_after_s: float = 60.0

    def __post_init__(self) -> None:
        if self.initial_s <= 0 or self.factor < 1 or self.max_s < self.initial_s:
            raise ValueError("need initial_s > 0, factor >= 1 and max_s >= initial_s")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter is a fraction in [0, 1)")

    def delay_s(self, attempt: int, uniform: Callable[[float, float], float] = random.uniform) -> float:
        base = min(self.max_s, self.initial_s * self.factor ** min(attempt, 64))
        return base * uniform(1 - self.jitter, 1 + self.jitter)

    def should_retry(self, outage_s: float, next_delay_s: float) -> bool:
        """True while waiting ``next_delay_s`` more keeps the outage within ``give_up_after_s``."""
        return outage_s + next_delay_s <= self.give_up_after_s
