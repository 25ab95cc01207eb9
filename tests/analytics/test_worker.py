"""The analytics worker on the embedded broker: a record per conversation as finals arrive, and state that
survives a restart (rebuilt from the compacted output topic) without counting re-read finals twice."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer

from convoscope.embedded_broker import EmbeddedBroker
from convoscope.kafka import create_producer
from convoscope.settings import Settings
from processors.analytics.worker import AnalyticsWorker
from schemas.topics import TRANSCRIPTS_FINAL
from tests.analytics.reading import latest_analytics
from tests.store.records import final, speaker

pytestmark = pytest.mark.asyncio(loop_scope="session")

START_MS = 1_700_000_000_000
APP = "b" * 64


@pytest_asyncio.fixture(loop_scope="session")
async def producer(broker: EmbeddedBroker) -> AsyncIterator[AIOKafkaProducer]:
    producer = create_producer(Settings(kafka_bootstrap=broker.bootstrap))
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def _send_final(producer: AIOKafkaProducer, value: dict[str, Any]) -> None:
    await producer.send_and_wait(
        TRANSCRIPTS_FINAL.name, TRANSCRIPTS_FINAL.serde.serialize(value), key=value["conversation_id"].encode()
    )


@contextlib.asynccontextmanager
async def _running(settings: Settings, group_id: str) -> AsyncIterator[AnalyticsWorker]:
    worker = AnalyticsWorker(settings, group_id=group_id)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.wait_for(worker.assigned.wait(), 60)
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_records_follow_finals_and_survive_a_restart(broker: EmbeddedBroker, producer: AIOKafkaProducer) -> None:
    # A short session: the restarted worker gets the partitions without waiting out the stopped one's session.
    settings = Settings(kafka_bootstrap=broker.bootstrap, kafka_session_timeout_ms=3_000)
    cid = str(random.randrange(10**17, 10**18))
    ann, bob = speaker(cid, "Ann", "ann@example.com"), speaker(cid, "Bob")
    ann_stream, bob_stream = uuid.uuid4().hex, uuid.uuid4().hex
    group = f"analytics-test-{uuid.uuid4().hex[:8]}"
    # Ann speaks 0.2-5 s, Bob 4.2-8 s (0.8 s over Ann); each message's audio starts 0.2 s before the voice.
    ann_first = final(cid, APP, ann_stream, ann, 0, 0, 80_000, "one two three four five six seven eight", START_MS)
    bob_first = final(cid, APP, bob_stream, bob, 0, 64_000, 128_000, "a b c d", START_MS)

    async with _running(settings, group):
        await _send_final(producer, ann_first)
        await _send_final(producer, bob_first)
        record = await latest_analytics(settings, cid, 2)
    assert record["talk_ms"] == 7800 and record["overlap_ms"] == 800
    assert {m["speaker"]["name"]: m["talk_ms"] for m in record["members"]} == {"Ann": 4800, "Bob": 3800}

    # Finals produced while no worker runs; one of them a duplicate of a final already counted.
    await _send_final(producer, final(cid, APP, ann_stream, ann, 1, 160_000, 192_000, "nine ten", START_MS))
    await _send_final(producer, bob_first)
    # The same group resumes after the committed finals: without the state rebuilt from the output topic the
    # record would hold only the new final, and without deduplication Bob's words would count twice.
    async with _running(settings, group):
        record = await latest_analytics(settings, cid, 3)
    ann_row = next(m for m in record["members"] if m["speaker"]["name"] == "Ann")
    assert record["message_count"] == 3
    assert ann_row["talk_ms"] == 6600 and ann_row["word_count"] == 10 and ann_row["turns"] == 2
    assert record["duration_ms"] == 12_000 and record["silence_gaps"] == []
