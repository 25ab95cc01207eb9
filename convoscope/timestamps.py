"""Wall-clock times as epoch milliseconds (how records and rows carry them) and as Symbl's ISO-8601 strings."""

from __future__ import annotations

import time
from datetime import UTC, datetime

__all__ = ["iso_ms", "now_ms"]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso_ms(epoch_ms: int) -> str:
    """``2021-07-23T16:31:29.798Z``: UTC, millisecond precision, a Z, as Symbl writes times."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
