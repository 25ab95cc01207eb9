"""The store worker: consumer group ``convoscope-store`` on conversation events, final transcripts and the text
processors' results.

Each ``getmany`` batch is written in one database transaction, and its offsets are committed only after that
transaction. While the database is unavailable the batch is retried with backoff (nothing is skipped or lost;
a stop request leaves it uncommitted for the next owner). A record that cannot be decoded, or that the database
refuses, is logged with ``topic[partition]@offset`` and skipped.

When a conversation completes, the worker also computes and stores its summary, a few seconds later so the text
processors' last results are in. That is a convenience, not a duty: ``GET .../summary`` computes a missing or
stale one itself, so a summary lost to a crash costs only the time to compute it on demand.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Histogram
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from convoscope.db.engine import create_engine, migrate, session_factory
from convoscope.db.retry import RETRY_INITIAL_S, RETRY_MAX_S, is_transient, retry_transient, sleep_unless_stopped
from convoscope.kafka import create_consumer
from convoscope.settings import Settings
from schemas.serde import SchemaError
from schemas.topics import (
    CONVERSATION_EVENTS,
    ENTITIES,
    INSIGHTS,
    TOPIC_PHRASES,
    TRACKER_MATCHES,
    TRANSCRIPTS_FINAL,
    Topic,
)
from sinks.store.summaries import refresh_summary
from sinks.store.writer import StoreRecord, write_batch

if TYPE_CHECKING:
    from convoscope.health import Health

__all__ = ["STORE_GROUP", "STORE_TOPICS", "decode_batch", "run_store_worker", "write_with_retry"]

log = logging.getLogger(__name__)

STORE_GROUP = "convoscope-store"
STORE_TOPICS: tuple[Topic, ...] = (
    CONVERSATION_EVENTS, TRANSCRIPTS_FINAL, INSIGHTS, TOPIC_PHRASES, TRACKER_MATCHES, ENTITIES,
)
MAX_BATCH_RECORDS = 500
POLL_TIMEOUT_MS = 500
SUMMARY_DELAY_S = 5.0
"""After a conversation completes, how long the summary waits for the last insights of its messages."""

RECORDS = Counter("convoscope_store_records_total", "Records handled by the store worker", ["topic", "outcome"])
BATCH_SECONDS = Histogram("convoscope_store_batch_seconds", "Time to store one batch, retries included")
_BY_NAME = {topic.name: topic for topic in STORE_TOPICS}


class SummaryScheduler:
    """Summaries of completed conversations, computed in the background, one pending task per conversation."""

    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession],
                 delay_s: float = SUMMARY_DELAY_S) -> None:
        self._settings, self._sessions, self._delay_s = settings, sessions, delay_s
        self._pending: dict[str, asyncio.Task[None]] = {}

    def after_stored(self, records: Sequence[StoreRecord]) -> None:
        for record in records:
            if record.topic == CONVERSATION_EVENTS.name and record.value["type"] == "CONVERSATION_COMPLETED":
                conversation_id = record.value["conversation_id"]
                if conversation_id not in self._pending:
                    task = asyncio.create_task(self._summarize(conversation_id, record.value["app_id"]))
                    self._pending[conversation_id] = task
                    task.add_done_callback(lambda _, key=conversation_id: self._pending.pop(key, None))

    async def _summarize(self, conversation_id: str, app_id: str) -> None:
        await asyncio.sleep(self._delay_s)
        try:
            summary = await refresh_summary(self._sessions, self._settings, conversation_id, app_id)
        except Exception:  # the API computes it on demand instead
            log.exception("summary of conversation %s not stored", conversation_id)
            return
        log.info("summary of conversation %s stored (%s, %d messages)", conversation_id, summary.method,
                 summary.message_count)

    async def close(self) -> None:
        for task in list(self._pending.values()):
            task.cancel()
        await asyncio.gather(*self._pending.values(), return_exceptions=True)


def _where(record: ConsumerRecord[bytes, bytes]) -> str:
    return f"{record.topic}[{record.partition}]@{record.offset}"


def decode_batch(
    batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
) -> tuple[list[StoreRecord], dict[TopicPartition, int]]:
    """Decoded records in fetch order, and the offsets to commit once they are stored. Undecodable records are
    logged and left out (their offsets still count as done)."""
    records: list[StoreRecord] = []
    offsets: dict[TopicPartition, int] = {}
    for tp, messages in batch.items():
        topic = _BY_NAME.get(tp.topic)
        for message in messages:
            offsets[tp] = message.offset + 1
            if topic is None:
                log.error("skipping record from unexpected topic %s", _where(message))
                continue
            if message.value is None:
                log.error("skipping record without value at %s", _where(message))
                continue
            try:
                value = topic.serde.deserialize(message.value)
            except SchemaError as exc:
                log.error("skipping bad record at %s: %s", _where(message), exc)
                RECORDS.labels(tp.topic, "undecodable").inc()
                continue
            records.append(StoreRecord(tp.topic, value, _where(message)))
    return records, offsets


async def _write_isolating(sessions: async_sessionmaker[AsyncSession], records: Sequence[StoreRecord]) -> None:
    """The batch was refused: write record by record, skipping (and logging) those the database refuses."""
    for record in records:
        try:
            await write_batch(sessions, [record])
        except SQLAlchemyError as exc:
            if is_transient(exc):
                raise
            log.error("skipping record the database refused at %s: %s", record.where, exc)
            RECORDS.labels(record.topic, "refused").inc()


async def write_with_retry(
    sessions: async_sessionmaker[AsyncSession],
    records: Sequence[StoreRecord],
    stop: asyncio.Event,
    health: Health | None = None,
) -> bool:
    """Store ``records`` (one transaction), retrying while the database is unavailable. False only on stop."""

    async def attempt() -> None:
        try:
            await write_batch(sessions, records)
        except SQLAlchemyError as exc:
            if is_transient(exc):
                raise
            log.warning("batch of %d refused (%s); writing record by record", len(records), exc)
            await _write_isolating(sessions, records)

    done, _ = await retry_transient(stop, "writing a batch", attempt, health)
    return done


async def _start_consumer(settings: Settings, group_id: str, stop: asyncio.Event) -> AIOKafkaConsumer | None:
    delay = RETRY_INITIAL_S
    while not stop.is_set():
        consumer = create_consumer(
            settings, *(topic.name for topic in STORE_TOPICS), group_id=group_id, max_poll_records=MAX_BATCH_RECORDS
        )
        try:
            await consumer.start()
            return consumer
        except KafkaError as exc:
            await consumer.stop()
            log.warning("cannot reach Kafka, retrying in %.1f s: %s", delay, exc)
        if await sleep_unless_stopped(stop, delay):
            break
        delay = min(delay * 2, RETRY_MAX_S)
    return None


async def run_store_worker(
    settings: Settings,
    stop: asyncio.Event | None = None,
    *,
    group_id: str = STORE_GROUP,
    health: Health | None = None,
) -> None:
    """Consume until ``stop`` is set (or the task is cancelled). Migrates the schema first (safe to race).
    ``health`` turns ready once the consumer has started, and not ready while the database is unavailable."""
    stop = stop or asyncio.Event()
    migrated, _ = await retry_transient(stop, "migrating the database", lambda: migrate(settings), health)
    if not migrated:
        return
    engine = create_engine(settings)
    sessions = session_factory(engine)
    summaries = SummaryScheduler(settings, sessions)
    consumer = await _start_consumer(settings, group_id, stop)
    try:
        if consumer is None:
            return
        log.info("store worker consuming %s as %s", [t.name for t in STORE_TOPICS], group_id)
        if health is not None:
            health.set_ready("consuming")
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=MAX_BATCH_RECORDS)
            if not batch:
                continue
            records, offsets = decode_batch(batch)
            started = time.perf_counter()
            if records and not await write_with_retry(sessions, records, stop, health):
                break  # stopping while the database is down: leave the batch uncommitted
            BATCH_SECONDS.observe(time.perf_counter() - started)
            for record in records:
                RECORDS.labels(record.topic, "stored").inc()
            summaries.after_stored(records)
            try:
                await consumer.commit(offsets)
            except KafkaError as exc:
                # Lost the partitions in a rebalance: the new owner re-reads, and the writes are idempotent.
                log.warning("offset commit failed, records will be re-read: %s", exc)
    finally:
        await summaries.close()
        if consumer is not None:
            await consumer.stop()
        await engine.dispose()
