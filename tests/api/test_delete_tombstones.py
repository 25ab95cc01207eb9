"""DELETE /v1/conversations/{id} also leaves a tombstone for the conversation in every compacted topic, so
compaction forgets it and a worker rebuilding its state from such a topic drops it."""

from __future__ import annotations

import asyncio
import time
import types
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from aiokafka import TopicPartition
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from convoscope.api.conversations import compacted_topic_names
from convoscope.auth import create_app, load_token_issuer
from convoscope.embedded_broker import EmbeddedBroker
from convoscope.kafka import create_consumer, create_producer
from convoscope.settings import Settings
from processors.analytics.state import ConversationSpeech
from processors.analytics.worker import AnalyticsWorker
from schemas.topics import ANALYTICS, TRANSCRIPTION_PROGRESS
from tests.api.conftest import Api, build_app
from tests.api.test_conversation_api import _seed
from tests.store.records import final

pytestmark = [pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True),
              pytest.mark.asyncio(loop_scope="session")]


@pytest_asyncio.fixture(loop_scope="session")
async def kafka_api(database_url: str, db_sessions: async_sessionmaker[AsyncSession], broker: EmbeddedBroker
                    ) -> AsyncIterator[Api]:
    settings = Settings(database_url=database_url, jwt_secret=None, kafka_bootstrap=broker.bootstrap)
    tokens = await load_token_issuer(settings, db_sessions)
    credentials = await create_app(db_sessions, "delete test")
    token, _ = tokens.issue(credentials.app_id)
    producer = create_producer(settings)
    await producer.start()
    app = build_app(settings, db_sessions, tokens)
    app.state.services = types.SimpleNamespace(producer=producer)  # what the gateway's lifespan provides
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            yield Api(client, db_sessions, tokens, credentials, token)
    finally:
        await producer.stop()


async def _values_for_key(settings: Settings, topic: str, key: str, timeout_s: float = 15.0) -> list[bytes | None]:
    """Every value of ``key`` on ``topic``, oldest first, once the last one is a tombstone (or the time is up)."""
    reader = create_consumer(settings)
    await reader.start()
    found: list[bytes | None] = []
    try:
        await reader.topics()
        partitions = [TopicPartition(topic, p) for p in reader.partitions_for_topic(topic) or ()]
        reader.assign(partitions)
        await reader.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not (found and found[-1] is None):
            for records in (await reader.getmany(timeout_ms=200)).values():
                found += [r.value for r in records if r.key == key.encode()]
    finally:
        await reader.stop()
    return found


async def test_delete_writes_tombstones(kafka_api: Api, broker: EmbeddedBroker) -> None:
    settings = Settings(kafka_bootstrap=broker.bootstrap)
    cid, ann, _ = await _seed(kafka_api)
    # State the workers keep for this conversation in compacted topics.
    analytics = ConversationSpeech(cid, kafka_api.app.app_id)
    analytics.apply_final(final(cid, kafka_api.app.app_id, uuid.uuid4().hex, ann, 0, 0, 16_000, "hello", 0))
    producer = create_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(ANALYTICS.name, ANALYTICS.serde.serialize(analytics.to_record(0)),
                                     key=cid.encode())
        progress = {"conversation_id": cid, "streams": {"s": {"finalized_until_sample": 16_000, "final_count": 1,
                                                               "ended": True}}}
        await producer.send_and_wait(TRANSCRIPTION_PROGRESS.name, TRANSCRIPTION_PROGRESS.serde.serialize(progress),
                                     key=cid.encode())
    finally:
        await producer.stop()

    response = await kafka_api.client.delete(f"/v1/conversations/{cid}", headers=kafka_api.auth())
    assert response.status_code == 200, response.text

    assert ANALYTICS.name in compacted_topic_names() and TRANSCRIPTION_PROGRESS.name in compacted_topic_names()
    for topic in compacted_topic_names():
        values = await _values_for_key(settings, topic, cid)
        assert values and values[-1] is None, f"no tombstone for {cid} on {topic}: {values}"
    values = await _values_for_key(settings, ANALYTICS.name, cid)
    assert len(values) == 2 and values[0] is not None

    # An analytics worker rebuilding its state from the topic no longer knows the conversation.
    worker = AnalyticsWorker(settings, group_id=f"tombstone-test-{uuid.uuid4().hex[:8]}")
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.wait_for(worker.assigned.wait(), 60)
        assert cid not in worker.states
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
