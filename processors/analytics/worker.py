"""The analytics worker: consumer group ``convoscope-analytics`` on final transcripts, one ``convoscope.analytics.v1``
record per conversation after each batch that changed it.

State (``ConversationSpeech`` per conversation) lives in memory and in the compacted output topic, which is
co-partitioned with the transcripts: when partitions are assigned, the worker reads their analytics partitions
from the beginning and keeps the latest record per conversation (a tombstone drops it). Output records are
acknowledged before the transcript offsets are committed, so after a crash the rebuilt state already holds every
committed final, and finals re-read past the commit are recognised by their stream's end sample and ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter

from convoscope.kafka import (
    RebalanceCallbacks,
    create_consumer,
    create_producer,
    ensure_topics,
    read_to_highwater,
    trace_headers,
    trace_id_from,
)
from convoscope.settings import Settings
from convoscope.timestamps import now_ms
from processors.analytics.state import ConversationSpeech
from schemas.serde import SchemaError
from schemas.topics import ANALYTICS, TRANSCRIPTS_FINAL

if TYPE_CHECKING:
    from convoscope.health import Health

__all__ = ["ANALYTICS_GROUP", "AnalyticsWorker", "run_analytics_worker"]

log = logging.getLogger(__name__)

ANALYTICS_GROUP = "convoscope-analytics"
POLL_TIMEOUT_MS = 500
MAX_POLL_RECORDS = 500
STATE_LOAD_TIMEOUT_S = 60.0

FINALS = Counter("convoscope_analytics_finals_total", "Final transcripts seen by the analytics worker", ["outcome"])
RECORDS = Counter("convoscope_analytics_records_total", "Analytics records produced")



class AnalyticsWorker:
    def __init__(self, settings: Settings, *, group_id: str = ANALYTICS_GROUP) -> None:
        self.settings = settings
        self.group_id = group_id
        self.assigned = asyncio.Event()
        """Set once partitions are assigned and their state is loaded."""
        self.states: dict[str, ConversationSpeech] = {}
        self._partition_of: dict[str, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._state_reader: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None

    async def run(self, stop: asyncio.Event) -> None:
        await ensure_topics(self.settings, [TRANSCRIPTS_FINAL, ANALYTICS])
        self._producer = create_producer(self.settings)
        self._state_reader = create_consumer(self.settings)
        self._consumer = create_consumer(self.settings, group_id=self.group_id, max_poll_records=MAX_POLL_RECORDS)
        await self._producer.start()
        try:
            await self._state_reader.start()
            await self._consumer.start()
            self._consumer.subscribe([TRANSCRIPTS_FINAL.name],
                                     listener=RebalanceCallbacks(self._on_revoked, self._on_assigned))
            log.info("analytics worker consuming %s as %s", TRANSCRIPTS_FINAL.name, self.group_id)
            while not stop.is_set():
                batch = await self._consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=MAX_POLL_RECORDS)
                if batch:
                    await self._handle(batch)
        finally:
            await self._consumer.stop()
            await self._state_reader.stop()
            await self._producer.stop()

    # --- partitions -----------------------------------------------------------------------------

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        partitions = sorted(tp.partition for tp in assigned)
        log.info("assigned transcript partitions %s", partitions)
        await self._load_state(partitions)
        self.assigned.set()

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        gone = {tp.partition for tp in revoked}
        for conversation_id in [c for c, p in self._partition_of.items() if p in gone]:
            self.states.pop(conversation_id, None)
            self._partition_of.pop(conversation_id, None)

    async def _load_state(self, partitions: list[int]) -> None:
        """The latest analytics record of every conversation on these partitions, read up to the fetch
        highwater (tansu's ListOffsets is not reliable; the fetch response's highwater is)."""
        assert self._state_reader is not None
        tps = [TopicPartition(ANALYTICS.name, p) for p in partitions]
        async for tp, records in read_to_highwater(self._state_reader, tps, what="analytics",
                                                   timeout_s=STATE_LOAD_TIMEOUT_S):
            for record in records:
                if record.key is None:
                    continue
                conversation_id = record.key.decode()
                if record.value is None:  # tombstone: the conversation was deleted
                    self.states.pop(conversation_id, None)
                    self._partition_of.pop(conversation_id, None)
                    continue
                try:
                    value = ANALYTICS.serde.deserialize(record.value)
                except SchemaError as exc:
                    log.warning("skipping bad record %s[%d]@%d: %s", tp.topic, tp.partition, record.offset, exc)
                    continue
                self.states[conversation_id] = ConversationSpeech.from_record(value)
                self._partition_of[conversation_id] = tp.partition
        log.info("analytics state loaded for partitions %s: %d conversations", partitions, len(self.states))

    # --- records --------------------------------------------------------------------------------

    def apply(self, final: dict[str, Any], partition: int) -> bool:
        """Apply one final transcript to its conversation's state; False when it was already applied."""
        conversation_id = final["conversation_id"]
        state = self.states.get(conversation_id)
        if state is None:
            state = self.states[conversation_id] = ConversationSpeech(conversation_id, final["app_id"])
        self._partition_of[conversation_id] = partition
        return state.apply_final(final)

    async def _handle(self, batch: dict[TopicPartition, list[Any]]) -> None:
        assert self._consumer is not None and self._producer is not None
        changed: list[str] = []
        offsets: dict[TopicPartition, int] = {}
        traces: dict[str, str] = {}  # conversation → trace id of its latest final in the batch
        for tp, records in batch.items():
            for record in records:
                offsets[tp] = record.offset + 1
                if record.value is None:
                    continue
                try:
                    final = TRANSCRIPTS_FINAL.serde.deserialize(record.value)
                except SchemaError as exc:
                    log.error("skipping bad record %s[%d]@%d: %s", tp.topic, tp.partition, record.offset, exc)
                    FINALS.labels("undecodable").inc()
                    continue
                if self.apply(final, tp.partition):
                    FINALS.labels("applied").inc()
                    if trace_id := trace_id_from(record.headers):
                        traces[final["conversation_id"]] = trace_id
                    if final["conversation_id"] not in changed:
                        changed.append(final["conversation_id"])
                else:
                    FINALS.labels("replayed").inc()
        at_ms = now_ms()
        sends = []
        for conversation_id in changed:
            value = self.states[conversation_id].to_record(at_ms)
            sends.append(
                await self._producer.send(
                    ANALYTICS.name, ANALYTICS.serde.serialize(value), key=conversation_id.encode(),
                    headers=trace_headers(traces.get(conversation_id)),
                )
            )
        # A failed send raises here, before the commit: the batch is re-read by whoever owns it next.
        for future in sends:
            await future
        RECORDS.inc(len(sends))
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            log.warning("offset commit failed, finals will be re-read (and ignored as replays): %s", exc)


async def run_analytics_worker(
    settings: Settings,
    stop: asyncio.Event | None = None,
    *,
    group_id: str = ANALYTICS_GROUP,
    health: Health | None = None,
) -> None:
    """Run until ``stop`` is set. ``health`` turns ready once partitions are assigned and their state loaded."""
    worker = AnalyticsWorker(settings, group_id=group_id)

    async def report_ready() -> None:
        await worker.assigned.wait()
        if health is not None:
            health.set_ready("partitions assigned, state loaded")

    reporter = asyncio.create_task(report_ready())
    try:
        await worker.run(stop or asyncio.Event())
    finally:
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter
