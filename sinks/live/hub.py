"""Fans result records out to the live clients of this process.

Every gateway replica reads every partition of the result topics (no consumer group): results
are small, and a client on any replica gets its conversation's results. Records of conversations
with no subscriber here are dropped on the spot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer

from convoscope.kafka import start_partition_reader
from convoscope.settings import Settings
from schemas.serde import SchemaError
from schemas.topics import (
    ANALYTICS,
    CONVERSATION_EVENTS,
    ENTITIES,
    INSIGHTS,
    TOPIC_PHRASES,
    TRACKER_MATCHES,
    TRANSCRIPTS_FINAL,
    TRANSCRIPTS_INTERIM,
    Topic,
)

__all__ = ["ResultKind", "ResultsHub", "Subscription"]

log = logging.getLogger(__name__)

ResultKind = Literal["interim", "final", "event", "insights", "topics", "trackers", "entities", "analytics"]
RESULT_TOPICS: dict[str, tuple[Topic, ResultKind]] = {
    TRANSCRIPTS_INTERIM.name: (TRANSCRIPTS_INTERIM, "interim"),
    TRANSCRIPTS_FINAL.name: (TRANSCRIPTS_FINAL, "final"),
    CONVERSATION_EVENTS.name: (CONVERSATION_EVENTS, "event"),
    INSIGHTS.name: (INSIGHTS, "insights"),
    TOPIC_PHRASES.name: (TOPIC_PHRASES, "topics"),
    TRACKER_MATCHES.name: (TRACKER_MATCHES, "trackers"),
    ENTITIES.name: (ENTITIES, "entities"),
    ANALYTICS.name: (ANALYTICS, "analytics"),
}
PER_MESSAGE_KINDS = frozenset({"insights", "topics", "trackers", "entities"})
SUBSCRIPTION_QUEUE_SIZE = 2_000


# What this client has of each message, as bits of one int per message id: a few hundred bytes less per message
# than a set per kind, for state that lives as long as the conversation (bench/live_load.py).
_FINAL_QUEUED = 1
_FINAL_DELIVERED = 2
_KIND_BITS = {kind: 4 << index for index, kind in enumerate(sorted(PER_MESSAGE_KINDS))}


@dataclass(eq=False)
class Subscription:
    """One live client's view of one conversation. Finals, and the per-message results of the text processors,
    are delivered once each, by message id."""

    conversation_id: str
    queue: asyncio.Queue[tuple[ResultKind, dict[str, Any]]] = field(
        default_factory=lambda: asyncio.Queue(SUBSCRIPTION_QUEUE_SIZE)
    )
    overflowed: bool = False
    _messages: dict[str, int] = field(default_factory=dict)
    """Message id → _FINAL_QUEUED | _FINAL_DELIVERED | the _KIND_BITS of the results queued for it."""
    _delivered_by_stream: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    """Message ids of the finals sent to the client, per stream."""
    _transcribed: dict[str, int] = field(default_factory=dict)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, kind: ResultKind, record: dict[str, Any]) -> None:
        if kind == "final":
            if not self._mark(record["message_id"], _FINAL_QUEUED):
                return
        elif kind in PER_MESSAGE_KINDS:
            if record.get("is_final", True):
                if not self._mark(record["message"]["id"], _KIND_BITS[kind]):
                    return
                self._changed.set()
        elif kind == "event" and record["type"] == "STREAM_TRANSCRIBED" and record["stream_id"]:
            self._transcribed[record["stream_id"]] = int(record["final_count"] or 0)
            self._changed.set()
        try:
            self.queue.put_nowait((kind, record))
        except asyncio.QueueFull:
            if kind == "interim":
                return  # interims are disposable; the final supersedes them
            self.overflowed = True

    def _mark(self, message_id: str, bit: int) -> bool:
        """Set ``bit`` for the message; False when it was already set (a duplicate)."""
        bits = self._messages.get(message_id, 0)
        if bits & bit:
            return False
        # One shared copy of the id, whichever record brought it first.
        self._messages[sys.intern(message_id) if not bits else message_id] = bits | bit
        return True

    def mark_delivered(self, record: dict[str, Any]) -> None:
        """Called by the sender once a final has been written to the socket."""
        message_id = record["message_id"]
        if self._mark(message_id, _FINAL_DELIVERED):
            self._delivered_by_stream[record["stream_id"]].append(message_id)
        self._changed.set()

    def results_done(self, stream_id: str, kinds: frozenset[str]) -> bool:
        wanted = 0
        for kind in kinds:
            wanted |= _KIND_BITS[kind]
        messages = self._messages
        return all(messages[m] & wanted == wanted for m in self._delivered_by_stream.get(stream_id, ()))

    async def wait_results_done(self, stream_id: str, kinds: frozenset[str], timeout_s: float) -> bool:
        """Until every delivered final of the stream has its record of each kind queued for this client."""
        return await self._wait(lambda: self.results_done(stream_id, kinds), timeout_s)

    def stream_done(self, stream_id: str) -> bool:
        expected = self._transcribed.get(stream_id)
        # Finals are delivered once per message id (``mark_delivered``), so the list's length is the count.
        return expected is not None and len(self._delivered_by_stream.get(stream_id, ())) >= expected

    async def wait_stream_done(self, stream_id: str, timeout_s: float) -> bool:
        """Until the transcriber has finished the stream and all its finals went out to this client."""
        return await self._wait(lambda: self.stream_done(stream_id), timeout_s)

    async def _wait(self, condition: Callable[[], bool], timeout_s: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not condition():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return True


class ResultsHub:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._subscriptions: dict[str, set[Subscription]] = defaultdict(set)

    async def start(self) -> None:
        consumer, partitions = await start_partition_reader(self._settings, RESULT_TOPICS)
        # Only results produced from now on matter to clients connecting from now on.
        await consumer.seek_to_end(*partitions)
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(), name="results-hub")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer:
            await self._consumer.stop()

    def subscribe(self, conversation_id: str) -> Subscription:
        subscription = Subscription(conversation_id)
        self._subscriptions[conversation_id].add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscribers = self._subscriptions.get(subscription.conversation_id)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscriptions[subscription.conversation_id]

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=200, max_records=1000)
            for tp, records in batches.items():
                topic, kind = RESULT_TOPICS[tp.topic]
                for message in records:
                    conversation_id = message.key.decode() if message.key else None
                    if conversation_id not in self._subscriptions or message.value is None:
                        continue  # nobody here watches it, or a tombstone of a deleted conversation
                    try:
                        record = topic.serde.deserialize(message.value)
                    except SchemaError as exc:
                        log.warning("skipping %s[%d]@%d: %s", tp.topic, tp.partition, message.offset, exc)
                        continue
                    for subscription in list(self._subscriptions.get(conversation_id, ())):
                        subscription.offer(kind, record)
