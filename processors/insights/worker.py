"""`convoscope worker insights`: the text processors, each its own consumer group and output topic.

    final transcripts ──► insights   ──► convoscope.insights.v1           (questions, action items, follow-ups)
                      ──► topics     ──► convoscope.topics.phrases.v1     (topic phrase candidates, sentiment)
                      ──► trackers   ──► convoscope.trackers.matches.v1   (also reads interim transcripts)
                      ──► entities   ──► convoscope.entities.v1

One process runs all four by default (`--processor NAME` runs one, to scale them apart). A batch's outputs are
produced and acknowledged before its offsets are committed, so a crash re-reads at most one batch; the re-read
yields the same ids (deterministic), which the store and the live push deduplicate. The NLP runs on one
background thread so the event loop keeps heartbeating while a large batch is parsed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Histogram

from convoscope.kafka import create_consumer, create_producer, ensure_topics, trace_headers, trace_id_from
from convoscope.settings import Settings
from processors.insights.records import (
    ConversationConfig,
    Stage,
    entities_record,
    insights_record,
    topic_phrases_record,
    tracker_matches_record,
    use_semantic_trackers,
)
from processors.insights.settings_table import ConversationSettingsTable
from schemas.serde import SchemaError
from schemas.topics import (
    CONVERSATION_SETTINGS,
    ENTITIES,
    INSIGHTS,
    TOPIC_PHRASES,
    TRACKER_MATCHES,
    TRANSCRIPTS_FINAL,
    TRANSCRIPTS_INTERIM,
    Topic,
)

if TYPE_CHECKING:
    from convoscope.health import Health

__all__ = ["GROUP_PREFIX", "TEXT_PROCESSORS", "TextProcessor", "group_id", "run_text_processors"]

log = logging.getLogger(__name__)

MAX_BATCH_RECORDS = 200
POLL_TIMEOUT_MS = 200
SETTINGS_WAIT_S = 3.0
"""How long a transcript waits for its conversation's settings (published at stream start, so normally long
before the first transcript) before the defaults are used."""

RECORDS = Counter(
    "convoscope_insights_records_total", "Transcripts handled by the text processors", ["processor", "outcome"]
)
BATCH_SECONDS = Histogram(
    "convoscope_insights_batch_seconds",
    "Time to process and publish one batch",
    ["processor"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
FOUND = Counter("convoscope_insights_found_total", "Results found in transcripts", ["processor"])


def _warm_insights() -> None:
    from datetime import UTC, datetime

    from processors.insights.detect import detect_insights
    from processors.insights.language import load_nlp

    detect_insights("Could you send it over by Friday?", speaker_name="A", spoken_at=datetime.now(UTC), nlp=load_nlp())


def _warm_nlp() -> None:
    from processors.insights.language import load_nlp

    load_nlp()("Warm up the parser.")


def _warm_trackers() -> None:
    from processors.insights.records import _embedder

    _warm_nlp()
    _embedder()  # loads the sentence embeddings only when semantic trackers are on


@dataclass(frozen=True)
class TextProcessor:
    name: str
    stage: Stage
    output: Topic
    inputs: tuple[Topic, ...]
    warm_up: Callable[[], None]

    def count(self, record: dict[str, Any]) -> int:
        for key in ("insights", "phrases", "matches", "entities"):
            if key in record:
                return len(record[key])
        return 0


TEXT_PROCESSORS: dict[str, TextProcessor] = {
    p.name: p
    for p in (
        TextProcessor("insights", insights_record, INSIGHTS, (TRANSCRIPTS_FINAL,), _warm_insights),
        TextProcessor("topics", topic_phrases_record, TOPIC_PHRASES, (TRANSCRIPTS_FINAL,), _warm_nlp),
        TextProcessor(
            "trackers",
            tracker_matches_record,
            TRACKER_MATCHES,
            (TRANSCRIPTS_FINAL, TRANSCRIPTS_INTERIM),
            _warm_trackers,
        ),
        TextProcessor("entities", entities_record, ENTITIES, (TRANSCRIPTS_FINAL,), _warm_nlp),
    )
}


GROUP_PREFIX = "convoscope-insights"


def group_id(processor: TextProcessor, prefix: str = GROUP_PREFIX) -> str:
    return f"{prefix}-{processor.name}"


class _ProcessorLoop:
    def __init__(
        self,
        processor: TextProcessor,
        settings: Settings,
        table: ConversationSettingsTable,
        producer: AIOKafkaProducer,
        executor: ThreadPoolExecutor,
        group_prefix: str,
    ) -> None:
        self.processor = processor
        self.group_prefix = group_prefix
        self.settings = settings
        self.table = table
        self.producer = producer
        self.executor = executor
        self.consumer: AIOKafkaConsumer | None = None
        self._by_name = {topic.name: topic for topic in processor.inputs}

    async def start(self) -> None:
        self.consumer = create_consumer(
            self.settings,
            *(t.name for t in self.processor.inputs),
            group_id=group_id(self.processor, self.group_prefix),
            max_poll_records=MAX_BATCH_RECORDS,
        )
        await self.consumer.start()

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()

    async def run(self, stop: asyncio.Event) -> None:
        assert self.consumer is not None
        name = self.processor.name
        while not stop.is_set():
            batch = await self.consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=MAX_BATCH_RECORDS)
            if not batch:
                continue
            started = time.perf_counter()
            work, offsets, traces = await self._decode(batch)
            outputs = await asyncio.get_running_loop().run_in_executor(self.executor, self._process, work)
            sends = [
                await self.producer.send(
                    self.processor.output.name,
                    key=record["conversation_id"].encode(),
                    value=self.processor.output.serde.serialize(record),
                    headers=trace_headers(traces.get(record["message"]["id"])),
                )
                for record in outputs
            ]
            if sends:
                await asyncio.gather(*sends)  # acknowledged by the broker before the offsets move on
            BATCH_SECONDS.labels(name).observe(time.perf_counter() - started)
            try:
                await self.consumer.commit(offsets)
            except KafkaError as exc:
                log.warning("%s: offset commit failed, the batch will be re-read: %s", name, exc)

    async def _decode(
        self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> tuple[list[tuple[dict[str, Any], ConversationConfig]], dict[TopicPartition, int], dict[str, str]]:
        """Transcripts with their conversation's settings, the offsets to commit after them, and the trace id of
        each transcript (by message id) that arrived with one."""
        work: list[tuple[dict[str, Any], ConversationConfig]] = []
        offsets: dict[TopicPartition, int] = {}
        traces: dict[str, str] = {}
        for tp, messages in batch.items():
            topic = self._by_name[tp.topic]
            for message in messages:
                offsets[tp] = message.offset + 1
                if message.value is None:
                    continue
                try:
                    transcript = topic.serde.deserialize(message.value)
                except SchemaError as exc:
                    log.error(
                        "%s: skipping bad record at %s[%d]@%d: %s",
                        self.processor.name,
                        tp.topic,
                        tp.partition,
                        message.offset,
                        exc,
                    )
                    RECORDS.labels(self.processor.name, "undecodable").inc()
                    continue
                # Interims are best effort: never hold the batch waiting for their settings.
                wait_s = SETTINGS_WAIT_S if topic is TRANSCRIPTS_FINAL else 0.0
                config = ConversationConfig.from_record(await self.table.get(transcript["conversation_id"], wait_s))
                work.append((transcript, config))
                if trace_id := trace_id_from(message.headers):
                    traces[transcript.get("message_id") or transcript["utterance_id"]] = trace_id
        return work, offsets, traces

    def _process(self, work: Sequence[tuple[dict[str, Any], ConversationConfig]]) -> list[dict[str, Any]]:
        outputs = []
        name = self.processor.name
        for transcript, config in work:
            try:
                record = self.processor.stage(transcript, config)
            except Exception:
                # One odd sentence must not stop the conversation's other results: log it, count it, go on.
                log.exception("%s: failed on message %s", name, transcript.get("message_id"))
                RECORDS.labels(name, "failed").inc()
                continue
            if record is None:
                RECORDS.labels(name, "skipped").inc()
                continue
            RECORDS.labels(name, "processed").inc()
            FOUND.labels(name).inc(self.processor.count(record))
            outputs.append(record)
        return outputs


async def run_text_processors(
    settings: Settings,
    stop: asyncio.Event | None = None,
    names: Sequence[str] | None = None,
    *,
    health: Health | None = None,
    group_prefix: str = GROUP_PREFIX,
) -> None:
    """Run the named processors (all by default) until ``stop`` is set. Each consumes as the consumer group
    ``<group_prefix>-<name>``."""
    stop = stop or asyncio.Event()
    chosen = [TEXT_PROCESSORS[name] for name in (names or TEXT_PROCESSORS)]
    use_semantic_trackers(settings.semantic_trackers)
    await ensure_topics(settings, {t for p in chosen for t in (*p.inputs, p.output)} | {CONVERSATION_SETTINGS})
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nlp")
    loop = asyncio.get_running_loop()
    for processor in chosen:
        await loop.run_in_executor(executor, processor.warm_up)
    table = ConversationSettingsTable(settings)
    producer = create_producer(settings)
    loops = [_ProcessorLoop(p, settings, table, producer, executor, group_prefix) for p in chosen]
    tasks: list[asyncio.Task[None]] = []
    try:
        await producer.start()
        await table.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(table.loaded.wait(), 30)
        # start() returns once the group has assigned partitions; join the four groups at once.
        await asyncio.gather(*(processor_loop.start() for processor_loop in loops))
        log.info("text processors %s consuming", [p.name for p in chosen])
        if health is not None:
            health.set_ready(f"processors {','.join(p.name for p in chosen)} consuming")
        tasks = [asyncio.create_task(pl.run(stop), name=f"text-{pl.processor.name}") for pl in loops]
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        for task in done:
            if task is not stopper and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for processor_loop in loops:
            await processor_loop.stop()
        await table.stop()
        await producer.stop()
        executor.shutdown(wait=True, cancel_futures=True)
