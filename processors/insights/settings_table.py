"""The conversation settings topic as an in-memory table (a global table, in Kafka Streams terms).

The topic is compacted and keyed by conversation id, so reading every partition from the beginning gives the
latest settings of every recent conversation; afterwards the table follows new records. No consumer group:
every processor instance needs every conversation's settings, whatever partitions of transcripts it owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer

from convoscope.kafka import start_partition_reader
from convoscope.settings import Settings
from schemas.serde import SchemaError
from schemas.topics import CONVERSATION_SETTINGS

__all__ = ["ConversationSettingsTable"]

log = logging.getLogger(__name__)

# The table counts as loaded after this many consecutive empty fetches: the broker's end offsets are not
# reliable on every Kafka-protocol broker we support, an empty fetch at the end is.
EMPTY_FETCHES_WHEN_CAUGHT_UP = 2


class ConversationSettingsTable:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._rows: dict[str, dict[str, Any]] = {}
        self._changed = asyncio.Condition()
        self.loaded = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._rows)

    async def start(self) -> None:
        consumer, partitions = await start_partition_reader(self._settings, [CONVERSATION_SETTINGS.name])
        await consumer.seek_to_beginning(*partitions)
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(), name="conversation-settings-table")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer:
            await self._consumer.stop()

    async def get(self, conversation_id: str, wait_s: float = 0.0) -> dict[str, Any] | None:
        """The latest settings of a conversation, waiting up to ``wait_s`` for them to arrive."""
        row = self._rows.get(conversation_id)
        if row is not None or wait_s <= 0:
            return row
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait_for(lambda: conversation_id in self._rows), wait_s)
        return self._rows.get(conversation_id)

    async def _run(self) -> None:
        assert self._consumer is not None
        empty_fetches = 0
        while True:
            batches = await self._consumer.getmany(timeout_ms=200, max_records=2000)
            if not batches:
                empty_fetches += 1
                if empty_fetches >= EMPTY_FETCHES_WHEN_CAUGHT_UP and not self.loaded.is_set():
                    log.info("conversation settings loaded: %d conversations", len(self._rows))
                    self.loaded.set()
                continue
            empty_fetches = 0
            for records in batches.values():
                for message in records:
                    conversation_id = message.key.decode() if message.key else None
                    if conversation_id is None:
                        continue
                    if message.value is None:  # a tombstone: the conversation was deleted
                        self._rows.pop(conversation_id, None)
                        continue
                    try:
                        self._rows[conversation_id] = CONVERSATION_SETTINGS.serde.deserialize(message.value)
                    except SchemaError as exc:
                        log.warning("skipping settings at %s@%d: %s", message.topic, message.offset, exc)
            async with self._changed:
                self._changed.notify_all()
