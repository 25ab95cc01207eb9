"""The store worker end to end on the embedded broker (tansu) and a real database: Avro records produced with the
topic serdes, ``run_store_worker`` as a task, results read back from the database and the API."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from convoscope.auth import create_app, load_token_issuer
from convoscope.db import Conversation, Message, create_engine, session_factory
from convoscope.embedded_broker import EmbeddedBroker
from convoscope.health import Health
from convoscope.kafka import create_producer
from convoscope.settings import Settings
from schemas.topics import CONVERSATION_EVENTS, TRANSCRIPTS_FINAL, Topic
from sinks.store import run_store_worker
from tests.api.conftest import build_app
from tests.store.records import event, final, speaker

pytestmark = pytest.mark.slow

START_MS = 1_700_000_000_000


async def _produce(bootstrap: str, key: str, records: list[tuple[Topic, dict[str, Any] | bytes]]) -> None:
    producer = create_producer(Settings(kafka_bootstrap=bootstrap))
    await producer.start()
    try:
        for topic, value in records:
            data = value if isinstance(value, bytes) else topic.serde.serialize(value)
            await producer.send_and_wait(topic.name, data, key=key.encode())
    finally:
        await producer.stop()


@asynccontextmanager
async def _worker(settings: Settings, health: Health | None = None) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    group_id = f"store-test-{uuid.uuid4().hex[:8]}"
    task = asyncio.create_task(run_store_worker(settings, stop, group_id=group_id, health=health))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def _eventually(check: Callable[[], Awaitable[bool]], task: asyncio.Task[None], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if task.done():
            task.result()  # raise the worker's error
            raise AssertionError("store worker exited early")
        try:
            if await check():
                return
        except (OSError, asyncpg.PostgresError, SQLAlchemyError):
            pass  # the database is not there yet, or is in an outage the test made
        await asyncio.sleep(0.3)
    raise AssertionError("timed out waiting for the store worker")


async def _texts(sessions: async_sessionmaker[AsyncSession], conversation_id: str) -> list[str]:
    async with sessions() as session:
        query = select(Message.text).where(Message.conversation_id == conversation_id).order_by(Message.start_ms)
        return list(await session.scalars(query))


async def _end_ms(sessions: async_sessionmaker[AsyncSession], conversation_id: str) -> int | None:
    async with sessions() as session:
        conversation = await session.get(Conversation, conversation_id, populate_existing=True)
        return None if conversation is None else conversation.end_ms


def _meeting(app_id: str) -> tuple[str, list[tuple[Topic, dict[str, Any]]], dict[str, Any]]:
    cid = str(uuid.uuid4().int)[:18]
    s1, s2 = uuid.uuid4().hex, uuid.uuid4().hex
    ann, bob = speaker(cid, "Ann", "ann@example.com"), speaker(cid, "Bob")
    records: list[tuple[Topic, dict[str, Any]]] = [
        (CONVERSATION_EVENTS, event("CONVERSATION_STARTED", cid, app_id, START_MS, name="Store e2e")),
        (CONVERSATION_EVENTS, event("MEMBER_JOINED", cid, app_id, START_MS, member=ann, stream_id=s1)),
        (CONVERSATION_EVENTS, event("MEMBER_JOINED", cid, app_id, START_MS + 500, member=bob, stream_id=s2)),
        (TRANSCRIPTS_FINAL, final(cid, app_id, s1, ann, 0, 0, 32_000, "good morning all", START_MS)),
        (TRANSCRIPTS_FINAL, final(cid, app_id, s2, bob, 0, 8_000, 24_000, "morning ann", START_MS + 500, 500)),
        (TRANSCRIPTS_FINAL, final(cid, app_id, s1, ann, 1, 48_000, 80_000, "let us begin", START_MS)),
        (CONVERSATION_EVENTS, event("CONVERSATION_COMPLETED", cid, app_id, START_MS + 10_000)),
    ]
    extra = {"s1": s1, "ann": ann}
    return cid, records, extra


async def test_store_worker_end_to_end(
    broker: EmbeddedBroker,
    database_url: str,
    db_sessions: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="sinks.store")
    settings = Settings(kafka_bootstrap=broker.bootstrap, database_url=database_url, jwt_secret=None)
    app = await create_app(db_sessions, "store e2e")
    cid, records, extra = _meeting(app.app_id)
    await _produce(broker.bootstrap, cid, list(records))

    async with _worker(settings) as task:

        async def stored() -> bool:
            return len(await _texts(db_sessions, cid)) == 3 and await _end_ms(db_sessions, cid) == START_MS + 10_000

        await _eventually(stored, task)
        assert await _texts(db_sessions, cid) == ["good morning all", "morning ann", "let us begin"]

        # Everything again, a fragment of Ann's first utterance replayed, an undecodable record, then sentinels
        # on both topics (same key, so they come after the duplicates on their partitions).
        fragment = final(cid, app.app_id, extra["s1"], extra["ann"], 0, 16_000, 30_000, "morning all", START_MS)
        sentinel = final(cid, app.app_id, uuid.uuid4().hex, extra["ann"], 0, 0, 16_000, "the end", START_MS + 9_000)
        await _produce(
            broker.bootstrap,
            cid,
            [
                *records,
                (TRANSCRIPTS_FINAL, fragment),
                (TRANSCRIPTS_FINAL, b"definitely not avro"),
                (TRANSCRIPTS_FINAL, sentinel),
                (CONVERSATION_EVENTS, event("CONVERSATION_COMPLETED", cid, app.app_id, START_MS + 11_000)),
            ],
        )

        async def sentinels() -> bool:
            return "the end" in await _texts(db_sessions, cid) and await _end_ms(db_sessions, cid) == START_MS + 11_000

        await _eventually(sentinels, task)
        assert await _texts(db_sessions, cid) == ["good morning all", "morning ann", "let us begin", "the end"]
    assert any(
        "skipping bad record at convoscope.transcripts.final.v1[" in r.getMessage() and "]@" in r.getMessage()
        for r in caplog.records
    )

    # and through the API, in Symbl's shape
    tokens = await load_token_issuer(settings, db_sessions)
    transport = httpx.ASGITransport(app=build_app(settings, db_sessions, tokens))
    async with httpx.AsyncClient(transport=transport, base_url="http://convoscope.test") as client:
        headers = {"x-api-key": tokens.issue(app.app_id)[0]}
        conversation = (await client.get(f"/v1/conversations/{cid}", headers=headers)).json()
        messages = (await client.get(f"/v1/conversations/{cid}/messages?verbose=true", headers=headers)).json()
    assert conversation["name"] == "Store e2e" and conversation["endTime"] == "2023-11-14T22:13:31.000Z"
    assert {m["name"] for m in conversation["members"]} == {"Ann", "Bob"}
    assert [m["text"] for m in messages["messages"]][:2] == ["good morning all", "morning ann"]
    assert messages["messages"][1]["timeOffset"] == 1.0 and len(messages["messages"][1]["words"]) == 2


@pytest.mark.postgres
async def test_store_worker_waits_for_the_database(broker: EmbeddedBroker, postgres_url: str) -> None:
    """The database is missing when the worker starts, then refuses connections mid-run: nothing is lost."""
    admin_url = make_url(postgres_url)
    name = f"{admin_url.database}_late"
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    admin_dsn = admin_url.set(drivername="postgresql").render_as_string(hide_password=False)
    admin = await asyncpg.connect(admin_dsn)
    settings = Settings(kafka_bootstrap=broker.bootstrap, database_url=url)
    app_id = uuid.uuid4().hex * 2
    cid, records, _ = _meeting(app_id)
    engine = create_engine(url)
    sessions = session_factory(engine)
    health = Health("store-test")
    try:
        async with _worker(settings, health) as task:
            await _produce(broker.bootstrap, cid, records[:4])
            await asyncio.sleep(3)
            assert not task.done() and not health.ready.is_set()
            await admin.execute(f'CREATE DATABASE "{name}"')

            async def first() -> bool:
                return await _texts(sessions, cid) == ["good morning all"]

            await _eventually(first, task)

            async def ready() -> bool:
                return health.ready.is_set()

            await _eventually(ready, task)  # the database is back: the worker says so

            # an outage: no new connections, existing ones cut (a write in flight may fail: it is retried)
            await engine.dispose()
            await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
            await _produce(broker.bootstrap, cid, records[4:])
            await asyncio.sleep(3)
            assert not task.done() and not health.ready.is_set()
            await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')

            async def rest() -> bool:
                texts = await _texts(sessions, cid)
                return len(texts) == 3 and await _end_ms(sessions, cid) == START_MS + 10_000

            await _eventually(rest, task)
            assert health.ready.is_set()
    finally:
        await engine.dispose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
