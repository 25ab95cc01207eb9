"""What each worker kind gets to chew on in a crash round, and how its output is counted.

- store: conversations (events, finals, one insight per final) → rows in ``messages`` and ``insights`` and a
  completed row in ``conversations``; each expected once, and no text stored twice under different ids.
- insights: finals → one record per final on each of the four output topics; a record published again after
  the crash must be identical to the first (same ids).
- webhooks: events of finals, insights and completions → a real HTTP receiver; each event at least once,
  every copy with the same event id and body, and every outbox row delivered in the end.

Every conversation also gets its settings record, so text processors (these or other tests') never wait for
them."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from convoscope.auth import create_app
from convoscope.db import create_engine, migrate, session_factory
from convoscope.db.models import Conversation, Insight, Message, Webhook, WebhookDelivery
from convoscope.kafka import create_producer, start_partition_reader
from convoscope.settings import Settings
from convoscope.timestamps import now_ms
from processors.insights.worker import TEXT_PROCESSORS, group_id
from producers.conversation_settings import conversation_settings_record
from schemas.topics import CONVERSATION_EVENTS, CONVERSATION_SETTINGS, INSIGHTS, TRANSCRIPTS_FINAL, Topic
from sinks.store.worker import STORE_GROUP, STORE_TOPICS
from sinks.webhooks.logic import EVENT_TYPES, events_from_record
from sinks.webhooks.outbox import DeliveryStatus
from sinks.webhooks.worker import WEBHOOK_TOPICS, WEBHOOKS_GROUP
from tests.reliability.tally import Tally, tally
from tests.store.records import event, final, insight, speaker, text_result
from tests.webhooks.test_worker import Receiver

__all__ = ["SCENARIOS", "InsightsScenario", "StoreScenario", "WebhooksScenario", "conversation"]

START_MS = 1_763_942_400_000
SAMPLES_PER_UTTERANCE = 48_000
LINES = (
    "Could you send the pricing sheet for order {i} by Friday?",
    "I will call the Acme team about shipment {i} tomorrow morning.",
    "The weather was lovely during sprint {i}, thanks for asking.",
    "How much does the enterprise plan cost for team {i}?",
)
RECEIVER_DELAY_S = 0.05
"""The receiver answers after this, so that a kill often finds deliveries in flight (sent again later)."""
Records = list[tuple[Topic, dict[str, Any]]]


def conversation(app_id: str, finals: int, *, with_insights: bool) -> tuple[str, Records]:
    """Settings, a start event, ``finals`` finals of two speakers on one stream (each followed by an insight of
    its own when ``with_insights``), a completion event. Every text is different."""
    cid = str(1_700_000_000_000_000_000 + uuid.uuid4().int % 10**17)
    stream = uuid.uuid4().hex
    speakers = [speaker(cid, "Maria Lopez", "maria@example.com", stream), speaker(cid, "David Chen", None, stream)]
    records: Records = [
        (CONVERSATION_SETTINGS, conversation_settings_record(cid, app_id, START_MS, timezone_offset_min=0)),
        (CONVERSATION_EVENTS, event("CONVERSATION_STARTED", cid, app_id, START_MS)),
    ]
    for index in range(finals):
        start = index * 2 * SAMPLES_PER_UTTERANCE
        text = LINES[index % len(LINES)].format(i=f"{cid[-4:]}-{index}")
        transcript = final(cid, app_id, stream, speakers[index % 2], index, start, start + SAMPLES_PER_UTTERANCE,
                           text, START_MS)
        records.append((TRANSCRIPTS_FINAL, transcript))
        if with_insights:
            found = insight(f"{transcript['message_id']}-q", "QUESTION", text)
            records.append((INSIGHTS, text_result(transcript, insights=[found])))
    end_ms = START_MS + finals * 2 * SAMPLES_PER_UTTERANCE // 16
    records.append((CONVERSATION_EVENTS, event("CONVERSATION_COMPLETED", cid, app_id, end_ms, final_count=finals)))
    return cid, records


def interleave(conversations: Sequence[Records]) -> Records:
    """Records of several conversations taken in turn (each conversation's own order kept)."""
    merged: Records = []
    for index in range(max(len(c) for c in conversations)):
        merged.extend(c[index] for c in conversations if index < len(c))
    return merged


async def produce_paced(settings: Settings, records: Records, pace_s: float, burst: int) -> None:
    """Each record keyed by its conversation (as the gateway and processors do), ``burst`` records at once then
    a pause, one record per ``pace_s`` on average: bursts keep the worker busy for a good share of the time, so
    that a kill often lands inside a batch rather than while it waits for records."""
    producer = create_producer(settings)
    await producer.start()
    try:
        for index, (topic, value) in enumerate(records, start=1):
            await producer.send(topic.name, topic.serde.serialize(value), key=value["conversation_id"].encode())
            if index % burst == 0:
                await producer.flush()
                await asyncio.sleep(pace_s * burst)
        await producer.flush()
    finally:
        await producer.stop()


class _DatabaseScenario:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        assert self._sessions is not None
        return self._sessions

    async def _open_database(self) -> None:
        await migrate(self.settings)
        self._engine = create_engine(self.settings)
        self._sessions = session_factory(self._engine)

    async def teardown(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()


class StoreScenario(_DatabaseScenario):
    kind = "store"
    ready_line = "store worker consuming"
    groups = ((STORE_GROUP, tuple(t.name for t in STORE_TOPICS)),)
    worker_env: dict[str, str] = {}
    pace_s = 0.02
    burst = 20

    def __init__(self, settings: Settings, conversations: int = 3, finals: int = 40) -> None:
        super().__init__(settings)
        built = [conversation("app-" + uuid.uuid4().hex[:8], finals, with_insights=True)
                 for _ in range(conversations)]
        self.conversation_ids = [cid for cid, _ in built]
        self.records = interleave([records for _, records in built])
        self.message_ids = [v["message_id"] for t, v in self.records if t is TRANSCRIPTS_FINAL]
        self.insight_ids = [i["insight_id"] for t, v in self.records if t is INSIGHTS for i in v["insights"]]
        self.items = len(self.message_ids) + len(self.insight_ids) + len(self.conversation_ids)

    async def setup(self) -> None:
        await self._open_database()

    async def produce(self, pace_s: float) -> None:
        await produce_paced(self.settings, self.records, pace_s, self.burst)

    async def progress(self) -> int:
        async with self.sessions() as session:
            messages = await session.scalar(
                select(func.count()).select_from(Message).where(Message.conversation_id.in_(self.conversation_ids)))
            insights = await session.scalar(
                select(func.count()).select_from(Insight).where(Insight.conversation_id.in_(self.conversation_ids)))
            completed = await session.scalar(select(func.count()).select_from(Conversation).where(
                Conversation.id.in_(self.conversation_ids), Conversation.end_ms.is_not(None)))
        return int(messages or 0) + int(insights or 0) + int(completed or 0)

    async def caught_up(self) -> bool:
        return await self.progress() >= self.items

    async def count(self) -> Tally:
        async with self.sessions() as session:
            messages = (await session.execute(select(Message.id, Message.text).where(
                Message.conversation_id.in_(self.conversation_ids)))).all()
            insights = (await session.execute(select(Insight.id, Insight.message_id, Insight.text).where(
                Insight.conversation_id.in_(self.conversation_ids)))).all()
            completed = (await session.execute(select(Conversation.id, Conversation.end_ms).where(
                Conversation.id.in_(self.conversation_ids), Conversation.end_ms.is_not(None)))).all()
        # Ids are primary keys, so a duplicate can only hide under another id: the same content twice.
        result = tally(self.message_ids, [(row.id, row.text) for row in messages], copies_allowed=False)
        result = result.add(tally(self.insight_ids, [(row.id, row.text) for row in insights], copies_allowed=False))
        result = result.add(tally(self.conversation_ids, [(row.id, row.end_ms) for row in completed],
                                  copies_allowed=False))
        for content, copies in [*Counter(row.text for row in messages).items(),
                                *Counter((row.message_id, row.text) for row in insights).items()]:
            if copies > 1:
                result.duplicated += copies - 1
                result.duplicated_ids.append(str(content))
        return result


def _same_result(record: dict[str, Any]) -> Hashable:
    """A text-processor record without its production time: a record published again must equal the first."""
    return json.dumps({k: v for k, v in record.items() if k != "produced_at_ms"}, sort_keys=True, default=str)


class InsightsScenario:
    kind = "insights"
    ready_line = "text processors"
    worker_env: dict[str, str] = {}
    pace_s = 0.04
    burst = 8

    def __init__(self, settings: Settings, conversations: int = 2, finals: int = 30) -> None:
        self.settings = settings
        self.outputs = tuple(p.output for p in TEXT_PROCESSORS.values())
        self.groups = tuple((group_id(p), tuple(t.name for t in p.inputs)) for p in TEXT_PROCESSORS.values())
        built = [conversation("app-" + uuid.uuid4().hex[:8], finals, with_insights=False)
                 for _ in range(conversations)]
        self.conversation_ids = {cid for cid, _ in built}
        self.records = interleave([records for _, records in built])
        finals_ids = [v["message_id"] for t, v in self.records if t is TRANSCRIPTS_FINAL]
        self.expected = [f"{topic.name}/{mid}" for topic in self.outputs for mid in finals_ids]
        self.items = len(self.expected)
        self.seen: list[tuple[str, Hashable]] = []
        self._reader: AIOKafkaConsumer | None = None
        self._reading: asyncio.Task[None] | None = None

    async def setup(self) -> None:
        self._reader, partitions = await start_partition_reader(self.settings, [t.name for t in self.outputs])
        await self._reader.seek_to_beginning(*partitions)
        self._reading = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._reader is not None
        by_name = {t.name: t for t in self.outputs}
        while True:
            for tp, messages in (await self._reader.getmany(timeout_ms=200, max_records=5000)).items():
                for message in messages:
                    if message.value is None:
                        continue
                    value = by_name[tp.topic].serde.deserialize(message.value)
                    if value["conversation_id"] in self.conversation_ids:
                        self.seen.append((f"{tp.topic}/{value['message']['id']}", _same_result(value)))

    async def produce(self, pace_s: float) -> None:
        await produce_paced(self.settings, self.records, pace_s, self.burst)

    async def progress(self) -> int:
        if self._reading is not None and self._reading.done():
            self._reading.result()  # the reader failed: say why
        return len({item_id for item_id, _ in self.seen})

    async def caught_up(self) -> bool:
        return await self.progress() >= self.items

    async def count(self) -> Tally:
        return tally(self.expected, self.seen, copies_allowed=True)

    async def teardown(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
            await asyncio.gather(self._reading, return_exceptions=True)
        if self._reader is not None:
            await self._reader.stop()


class WebhooksScenario(_DatabaseScenario):
    kind = "webhooks"
    ready_line = "webhook sink consuming"
    groups = ((WEBHOOKS_GROUP, tuple(t.name for t in WEBHOOK_TOPICS)),)
    # A killed sender's rows are sent again when their lease (request timeout + 10 s) runs out.
    worker_env = {"CONVOSCOPE_WEBHOOK_TIMEOUT_S": "2"}
    pace_s = 0.03
    burst = 10

    def __init__(self, settings: Settings, conversations: int = 2, finals: int = 30) -> None:
        super().__init__(settings)
        self.conversations, self.finals = conversations, finals
        self.receiver = Receiver()
        self.receiver.delay_s = RECEIVER_DELAY_S
        self.records: Records = []
        self.expected: list[str] = []
        self.items = 0
        self.webhook_id = ""

    async def setup(self) -> None:
        await self._open_database()
        app_id = (await create_app(self.sessions, "crash-round")).app_id
        built = [conversation(app_id, self.finals, with_insights=True) for _ in range(self.conversations)]
        self.records = interleave([records for _, records in built])
        # From the records as the worker reads them (Avro floats are 32-bit).
        self.expected = [e.id for topic, value in self.records
                         for e in events_from_record(topic.name, topic.serde.deserialize(topic.serde.serialize(value)))]
        self.items = len(self.expected)
        await self.receiver.start()
        self.webhook_id, secret = str(uuid.uuid4()), f"secret-{uuid.uuid4().hex}"
        self.receiver.secrets["ok"] = secret
        async with self.sessions.begin() as session:
            session.add(Webhook(id=self.webhook_id, app_id=app_id, url=self.receiver.url("ok"),
                                event_types=list(EVENT_TYPES), conversation_id=None, secret=secret,
                                created_at_ms=now_ms(), updated_at_ms=now_ms()))

    async def produce(self, pace_s: float) -> None:
        await produce_paced(self.settings, self.records, pace_s, self.burst)

    def _received(self) -> list[tuple[str, Hashable]]:
        return [(envelope["id"], json.dumps(envelope, sort_keys=True)) for envelope in self.receiver.received["ok"]]

    async def progress(self) -> int:
        return len({event_id for event_id, _ in self._received()} & set(self.expected))

    async def caught_up(self) -> bool:
        if await self.progress() < self.items:
            return False
        async with self.sessions() as session:
            unfinished = await session.scalar(select(func.count()).select_from(WebhookDelivery).where(
                WebhookDelivery.webhook_id == self.webhook_id, WebhookDelivery.status != DeliveryStatus.DELIVERED))
        return unfinished == 0

    async def count(self) -> Tally:
        return tally(self.expected, self._received(), copies_allowed=True)

    async def teardown(self) -> None:
        await self.receiver.stop()
        await super().teardown()


SCENARIOS = {"store": StoreScenario, "insights": InsightsScenario, "webhooks": WebhooksScenario}


def sqlite_url(folder: Path, name: str) -> str:
    return f"sqlite+aiosqlite:///{folder}/{name}.db"
