"""Reading the analytics topic back, as a downstream consumer would."""

from __future__ import annotations

import time
from typing import Any

from convoscope.kafka import start_partition_reader
from convoscope.settings import Settings
from schemas.topics import ANALYTICS


async def latest_analytics(settings: Settings, conversation_id: str, min_messages: int,
                           timeout_s: float = 30.0) -> dict[str, Any]:
    """The newest analytics record of the conversation once it covers at least ``min_messages`` finals."""
    reader, partitions = await start_partition_reader(settings, [ANALYTICS.name])
    latest: dict[str, Any] | None = None
    try:
        await reader.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for records in (await reader.getmany(timeout_ms=200)).values():
                for record in records:
                    if record.key == conversation_id.encode() and record.value is not None:
                        latest = ANALYTICS.serde.deserialize(record.value)
            if latest is not None and latest["message_count"] >= min_messages:
                return latest
    finally:
        await reader.stop()
    raise AssertionError(f"no analytics record with {min_messages} messages; latest: {latest}")
