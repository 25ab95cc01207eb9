"""The text processors on the real broker: one record per final per processor, trackers from the conversation's
settings, and the same ids when the transcripts are processed again (as after a crash before the commit)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from typing import Any

import pytest
from aiokafka import TopicPartition

from convoscope.embedded_broker import EmbeddedBroker
from convoscope.health import Health
from convoscope.ids import tracker_id
from convoscope.kafka import create_consumer, create_producer
from convoscope.settings import Settings
from processors.insights.worker import run_text_processors
from producers.conversation_settings import InlineTracker, conversation_settings_record
from schemas.topics import (
    CONVERSATION_SETTINGS,
    ENTITIES,
    INSIGHTS,
    TOPIC_PHRASES,
    TRACKER_MATCHES,
    TRANSCRIPTS_FINAL,
    Topic,
)
from tests.store.records import final, speaker

pytestmark = pytest.mark.slow

OUTPUTS: tuple[Topic, ...] = (INSIGHTS, TOPIC_PHRASES, TRACKER_MATCHES, ENTITIES)
START_MS = 1_763_942_400_000  # Monday 2025-11-24 00:00:00 UTC
LINES = (
    ("Maria", "How much does the enterprise plan cost?"),
    ("David", "I'll send the signed contract to Acme Corp by Friday."),
    ("Maria", "Thanks, the weather is nice today."),
)


async def _produce(settings: Settings, topic: Topic, records: list[dict[str, Any]]) -> None:
    producer = create_producer(settings)
    await producer.start()
    try:
        for record in records:
            await producer.send_and_wait(topic.name, topic.serde.serialize(record),
                                         key=record["conversation_id"].encode())
    finally:
        await producer.stop()


async def _collect(settings: Settings, conversation_id: str, expected_per_topic: int,
                   timeout_s: float = 60.0) -> dict[str, list[dict[str, Any]]]:
    consumer = create_consumer(settings)
    await consumer.start()
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    by_name = {t.name: t for t in OUTPUTS}
    try:
        await consumer.topics()
        tps = [TopicPartition(t.name, p) for t in OUTPUTS for p in consumer.partitions_for_topic(t.name) or ()]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        while any(len(found[t.name]) < expected_per_topic for t in OUTPUTS):
            assert time.monotonic() < deadline, {k: len(v) for k, v in found.items()}
            for tp, messages in (await consumer.getmany(timeout_ms=200)).items():
                for message in messages:
                    value = by_name[tp.topic].serde.deserialize(message.value)
                    if value["conversation_id"] == conversation_id:
                        found[tp.topic].append(value)
    finally:
        await consumer.stop()
    return found


async def _run_once(settings: Settings, conversation_id: str, expected: int, group_suffix: str
                    ) -> dict[str, list[dict[str, Any]]]:
    stop = asyncio.Event()
    # A fresh consumer group re-reads every transcript, as a new owner does after a crash before the commit.
    health = Health("test")
    task = asyncio.create_task(run_text_processors(settings, stop, health=health,
                                                   group_prefix=f"test-{group_suffix}"))
    try:
        ready = asyncio.create_task(health.ready.wait())
        await asyncio.wait([ready, task], timeout=300, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # it failed to start: show why
        assert health.ready.is_set(), f"processors not ready: {health.detail}"
        return await _collect(settings, conversation_id, expected)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_each_final_gets_one_record_per_processor_with_stable_ids(broker: EmbeddedBroker) -> None:
    settings = Settings(kafka_bootstrap=broker.bootstrap)
    cid, app_id = uuid.uuid4().hex[:16], "app-" + uuid.uuid4().hex[:8]
    await _produce(settings, CONVERSATION_SETTINGS, [conversation_settings_record(
        cid, app_id, START_MS, timezone_offset_min=0,
        inline_trackers=[InlineTracker("Contract", ("signed contract",))],
    )])
    stream = uuid.uuid4().hex
    finals = [
        final(cid, app_id, stream, speaker(cid, who), i, i * 80_000, i * 80_000 + 48_000, text, START_MS)
        for i, (who, text) in enumerate(LINES)
    ]
    await _produce(settings, TRANSCRIPTS_FINAL, finals)

    first = await _run_once(settings, cid, len(finals), "first")
    for topic in OUTPUTS:
        assert sorted(r["message"]["id"] for r in first[topic.name]) == sorted(f["message_id"] for f in finals)

    insights = {r["message"]["id"]: r["insights"] for r in first[INSIGHTS.name]}
    assert [i["type"] for i in insights[finals[0]["message_id"]]] == ["QUESTION"]
    action = insights[finals[1]["message_id"]]
    assert [i["type"] for i in action] == ["ACTION_ITEM"]
    assert action[0]["assignee_name"] == "David" and action[0]["assignee_is_speaker"]
    assert action[0]["due_by"] and action[0]["due_by"].startswith("2025-11-28")  # that Friday
    assert insights[finals[2]["message_id"]] == []

    matches = {r["message"]["id"]: r["matches"] for r in first[TRACKER_MATCHES.name]}
    assert [(m["tracker_name"], m["mode"], m["tracker_id"]) for m in matches[finals[1]["message_id"]]] == [
        ("Contract", "EXACT", tracker_id(app_id, "Contract"))]
    assert matches[finals[0]["message_id"]] == []
    entities = {r["message"]["id"]: r["entities"] for r in first[ENTITIES.name]}
    assert "organization" in {e["type"] for e in entities[finals[1]["message_id"]]}

    # Processing the same transcripts again yields the same ids, so the store and live clients deduplicate.
    again = await _run_once(settings, cid, len(finals), "again")

    def ids(found: dict[str, list[dict[str, Any]]]) -> set[str]:
        return (
            {i["insight_id"] for r in found[INSIGHTS.name] for i in r["insights"]}
            | {m["match_id"] for r in found[TRACKER_MATCHES.name] for m in r["matches"]}
            | {e["entity_id"] for r in found[ENTITIES.name] for e in r["entities"]}
        )

    assert ids(first) and ids(again) == ids(first)
