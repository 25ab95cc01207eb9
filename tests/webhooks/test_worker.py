"""The webhook sink end to end: records produced to the embedded broker (tansu), ``run_webhook_worker`` as a task
on SQLite and PostgreSQL, and real HTTP receivers (aiohttp) that check every signature and refuse bad ones."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from convoscope.auth import create_app
from convoscope.db.models import Webhook, WebhookDelivery
from convoscope.embedded_broker import EmbeddedBroker
from convoscope.kafka import create_producer, read_to_highwater, start_partition_reader
from convoscope.settings import Settings
from convoscope.timestamps import now_ms
from schemas.topics import CONVERSATION_EVENTS, INSIGHTS, TRACKER_MATCHES, TRANSCRIPTS_FINAL, WEBHOOK_DEADLETTER, Topic
from sinks.webhooks.logic import EVENT_TYPES, events_from_record, verify_signature
from sinks.webhooks.worker import run_webhook_worker
from tests.store.records import event, final, insight, speaker, text_result

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("empty_outbox")]

START_MS = 1_700_000_000_000
TIMEOUT_S = 6.0


class Receiver:
    """Webhook receivers on one port, one per path: ``ok`` answers 200, ``flaky`` 503 twice per event then 200,
    ``reject`` 400, ``hang`` never answers. Every request's signature is checked first (401 if wrong)."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.received: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.attempts: dict[str, Counter[str]] = defaultdict(Counter)
        self.bad_signatures = 0
        self.hanging = 0
        self.first_hang_at: float | None = None
        self.delay_s = 0.0
        self.port = 0
        self._runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        body = await request.read()
        headers = request.headers
        if not verify_signature(self.secrets[path], headers.get("X-Convoscope-Timestamp", ""), body,
                                headers.get("X-Convoscope-Signature", ""), tolerance_s=60):
            self.bad_signatures += 1
            return web.Response(status=401, text="bad signature")
        envelope = json.loads(body)
        assert headers["X-Convoscope-Event-Id"] == envelope["id"]
        assert headers["X-Convoscope-Event-Type"] == envelope["type"]
        self.attempts[path][envelope["id"]] += 1
        if path == "hang":
            self.hanging += 1
            self.first_hang_at = self.first_hang_at or time.monotonic()
            try:
                await asyncio.sleep(3600)
            finally:
                self.hanging -= 1
        if path == "flaky" and self.attempts[path][envelope["id"]] <= 2:
            return web.Response(status=503, text="busy")
        if path == "reject":
            return web.Response(status=400, text="no thanks")
        await asyncio.sleep(self.delay_s)
        self.received[path].append(envelope)
        return web.Response(status=204)

    async def start(self, *more_hosts: str) -> None:
        """Listens on 127.0.0.1 and, on the same port, on ``more_hosts``."""
        app = web.Application()
        app.router.add_post("/{path}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        for host in more_hosts:
            await web.TCPSite(self._runner, host, self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    started = Receiver()
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


async def _webhook(sessions: async_sessionmaker[AsyncSession], receiver: Receiver, app_id: str, path: str,
                   event_types: tuple[str, ...], conversation_id: str | None = None, url: str | None = None) -> str:
    webhook_id, secret = str(uuid.uuid4()), f"secret-of-{path}-{uuid.uuid4().hex}"
    receiver.secrets[path] = secret
    async with sessions.begin() as session:
        session.add(Webhook(id=webhook_id, app_id=app_id, url=url or receiver.url(path), event_types=list(event_types),
                            conversation_id=conversation_id, secret=secret, created_at_ms=now_ms(),
                            updated_at_ms=now_ms()))
    return webhook_id


async def _produce(bootstrap: str, records: list[tuple[Topic, dict[str, Any]]]) -> None:
    producer = create_producer(Settings(kafka_bootstrap=bootstrap))
    await producer.start()
    try:
        for topic, value in records:
            await producer.send_and_wait(topic.name, topic.serde.serialize(value),
                                         key=value["conversation_id"].encode())
    finally:
        await producer.stop()


def _settings(broker: EmbeddedBroker, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"webhook_backoff_initial_s": 0.2, "webhook_backoff_max_s": 0.4,
                              "webhook_max_attempts": 4, "webhook_timeout_s": TIMEOUT_S, **overrides}
    return Settings(kafka_bootstrap=broker.bootstrap, database_url=database_url, **values)


@asynccontextmanager
async def _worker(settings: Settings, group_id: str) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(run_webhook_worker(settings, stop, group_id=group_id, cache_s=0.2,
                                                  sender_poll_s=0.1))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def _eventually(check: Callable[[], Awaitable[bool] | bool], task: asyncio.Task[None],
                      timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if task.done():
            task.result()
            raise AssertionError("webhook worker exited early")
        result = check()
        if await result if isinstance(result, Awaitable) else result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out waiting for the webhook worker")


async def _deliveries(sessions: async_sessionmaker[AsyncSession], webhook_id: str) -> list[WebhookDelivery]:
    async with sessions() as session:
        return list(await session.scalars(select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)))


def _conversation(app_id: str) -> tuple[str, list[tuple[Topic, dict[str, Any]]]]:
    cid = str(1_700_000_000_000_000_000 + uuid.uuid4().int % 10**17)
    who = speaker(cid, "Maria Lopez", "maria@example.com")
    stream = uuid.uuid4().hex
    first = final(cid, app_id, stream, who, 0, 0, 32_000, "Let us talk about the contract.", START_MS)
    second = final(cid, app_id, stream, who, 1, 48_000, 96_000, "I will send it by Friday.", START_MS)
    match = {"match_id": f"{cid}-m", "tracker_id": "tr-1", "tracker_name": "Contract", "vocabulary": "contract",
             "mode": "EXACT", "matched_text": "contract", "offset": 23, "score": 1.0}
    return cid, [
        (CONVERSATION_EVENTS, event("CONVERSATION_STARTED", cid, app_id, START_MS)),
        (TRANSCRIPTS_FINAL, first),
        (TRACKER_MATCHES, text_result(first, is_final=False, matches=[{**match, "match_id": f"{cid}-interim"}])),
        (TRACKER_MATCHES, text_result(first, is_final=True, matches=[match])),
        (TRANSCRIPTS_FINAL, second),
        (INSIGHTS, text_result(second, insights=[insight(f"{cid}-i", "ACTION_ITEM", "I will send it by Friday.")])),
        (CONVERSATION_EVENTS, event("CONVERSATION_COMPLETED", cid, app_id, START_MS + 7_000)),
    ]


async def test_events_are_signed_retried_dead_lettered_and_not_held_up_by_a_hanging_receiver(
    broker: EmbeddedBroker, database_url: str, db_sessions: async_sessionmaker[AsyncSession], receiver: Receiver,
) -> None:
    app_id = (await create_app(db_sessions, "webhooks")).app_id
    cid, records = _conversation(app_id)
    # From the records as the worker reads them (Avro floats are 32-bit).
    expected = [e for topic, value in records
                for e in events_from_record(topic.name, topic.serde.deserialize(topic.serde.serialize(value)))]
    assert [e.type for e in expected] == [
        "message.final", "tracker.matched", "message.final", "insight.detected", "conversation.completed"]
    webhook_ok = await _webhook(db_sessions, receiver, app_id, "ok", EVENT_TYPES)
    webhook_flaky = await _webhook(db_sessions, receiver, app_id, "flaky", ("message.final",), cid)
    webhook_reject = await _webhook(db_sessions, receiver, app_id, "reject", ("conversation.completed",))
    webhook_hang = await _webhook(db_sessions, receiver, app_id, "hang", ("message.final",))
    # Another conversation's events must not reach the conversation-filtered webhook.
    _, other_records = _conversation(app_id)
    other_finals = [e.id for t, v in other_records for e in events_from_record(t.name, v) if e.type == "message.final"]

    # Two slots in all, so at most one per webhook: the hanging receiver can never hold both.
    # Enough attempts that the hanging receiver's deliveries cannot die of timeouts however slow the machine is.
    settings = _settings(broker, database_url, webhook_concurrency=2, webhook_max_attempts=100)
    await _produce(broker.bootstrap, records + other_records)
    async with _worker(settings, f"webhooks-test-{uuid.uuid4().hex[:8]}") as task:
        ours = {e.id for e in expected}
        await _eventually(lambda: ours <= {e["id"] for e in receiver.received["ok"]}, task)
        healthy_done_at = time.monotonic()
        await _eventually(lambda: receiver.first_hang_at is not None, task)
        assert receiver.first_hang_at is not None
        # Everything reached the healthy receiver before the hanging one's first request could even time out.
        assert healthy_done_at < receiver.first_hang_at + TIMEOUT_S
        assert receiver.hanging >= 1

        await _eventually(lambda: len(receiver.received["flaky"]) == 2, task)
        await _eventually(lambda: _dead_count(db_sessions, webhook_reject), task)

    ok = [e for e in receiver.received["ok"] if e["conversationId"] == cid]
    assert sorted(e["id"] for e in ok) == sorted(e.id for e in expected)  # each exactly once
    by_id = {e["id"]: e for e in ok}
    for sent in expected:
        envelope = by_id[sent.id]
        assert envelope == {"id": sent.id, "type": sent.type, "conversationId": cid, "appId": app_id,
                            "createdAt": envelope["createdAt"], "data": json.loads(json.dumps(sent.data))}
    assert by_id[expected[0].id]["data"]["text"] == "Let us talk about the contract."
    assert receiver.bad_signatures == 0

    # 503, 503, 200: the third attempt carries the same event id; other conversations are filtered out.
    flaky_ids = {e.id for e in expected if e.type == "message.final"}
    assert {e["id"] for e in receiver.received["flaky"]} == flaky_ids
    assert all(receiver.attempts["flaky"][event_id] == 3 for event_id in flaky_ids)
    assert not set(other_finals) & set(receiver.attempts["flaky"])
    flaky_log = await _deliveries(db_sessions, webhook_flaky)
    assert {(d.status, d.attempts, d.last_status_code) for d in flaky_log} == {("delivered", 3, 204)}

    # 400: dead at once, no retry, and on the dead-letter topic with the exact body.
    (rejected,) = [d for d in await _deliveries(db_sessions, webhook_reject) if d.conversation_id == cid]
    rejected_events = [e for e in expected if e.type == "conversation.completed"]
    assert (rejected.status, rejected.attempts, rejected.last_status_code) == ("dead", 1, 400)
    assert receiver.attempts["reject"][rejected_events[0].id] == 1
    # The record was acknowledged before the row said dead; the broker may take a moment to show it to a reader.
    dead_letters: list[dict[str, Any]] = []
    for _ in range(20):
        if dead_letters := await _dead_letters(settings, rejected.id):
            break
        await asyncio.sleep(0.5)
    assert dead_letters and dead_letters[0]["body"] == rejected.body and dead_letters[0]["attempts"] == 1
    assert dead_letters[0]["last_status_code"] == 400 and dead_letters[0]["url"] == receiver.url("reject")

    # The hanging receiver's deliveries were handed back unsent when the worker stopped.
    hanging_log = await _deliveries(db_sessions, webhook_hang)
    assert hanging_log and all(d.status == "pending" and d.lease_until_ms is None for d in hanging_log)
    assert webhook_ok  # every event type subscribed; checked through the receiver above


async def _dead_count(sessions: async_sessionmaker[AsyncSession], webhook_id: str) -> bool:
    return any(d.status == "dead" for d in await _deliveries(sessions, webhook_id))


async def _dead_letters(settings: Settings, delivery_id: str) -> list[dict[str, Any]]:
    consumer, partitions = await start_partition_reader(settings, [WEBHOOK_DEADLETTER.name])
    found = []
    try:
        async for _, records in read_to_highwater(consumer, partitions, what="dead letters", timeout_s=30):
            for record in records:
                value = WEBHOOK_DEADLETTER.serde.deserialize(record.value)
                if value["delivery_id"] == delivery_id:
                    found.append(value)
    finally:
        await consumer.stop()
    return found


# The outbox's database behaviour is covered on both databases by the test above and tests/webhooks/test_outbox.py;
# a restart costs the broker's ~20 s rejoin, so this one runs on SQLite only.
@pytest.mark.parametrize("database_kind", ["sqlite"])
async def test_a_worker_cancelled_mid_batch_loses_no_event_after_restart(
    broker: EmbeddedBroker, database_url: str, db_sessions: async_sessionmaker[AsyncSession], receiver: Receiver,
) -> None:
    app_id = (await create_app(db_sessions, "webhooks restart")).app_id
    await _webhook(db_sessions, receiver, app_id, "ok", ("message.final",))
    cid = str(1_700_000_000_000_000_000 + uuid.uuid4().int % 10**17)
    who, stream = speaker(cid, "Ann"), uuid.uuid4().hex
    finals = [final(cid, app_id, stream, who, i, i * 16_000, i * 16_000 + 8_000, f"Line number {i}.", START_MS)
              for i in range(40)]
    expected = {e.id for f in finals for e in events_from_record(TRANSCRIPTS_FINAL.name, f)}
    receiver.delay_s = 0.05  # slow enough that the worker is cancelled with deliveries in flight
    await _produce(broker.bootstrap, [(TRANSCRIPTS_FINAL, f) for f in finals])
    settings = _settings(broker, database_url, webhook_concurrency=4, kafka_session_timeout_ms=3_000)
    group = f"webhooks-restart-{uuid.uuid4().hex[:8]}"

    first = asyncio.create_task(run_webhook_worker(settings, asyncio.Event(), group_id=group, cache_s=0.2,
                                                   sender_poll_s=0.1))
    await _eventually(lambda: len(receiver.received["ok"]) >= 5, first)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    delivered_before = {e["id"] for e in receiver.received["ok"]}
    assert delivered_before < expected  # it really stopped half way

    async with _worker(settings, group) as second:
        await _eventually(lambda: expected <= {e["id"] for e in receiver.received["ok"]}, second)
    assert {e["id"] for e in receiver.received["ok"]} == expected
    assert receiver.bad_signatures == 0


# The sender's network check has no database side: SQLite only.
@pytest.mark.parametrize("database_kind", ["sqlite"])
async def test_a_host_name_resolving_into_a_blocked_network_is_dead_lettered_unsent(
    broker: EmbeddedBroker, database_url: str, db_sessions: async_sessionmaker[AsyncSession],
) -> None:
    receiver = Receiver()
    await receiver.start("127.0.0.2")  # the same receiver on an address that stays allowed
    try:
        app_id = (await create_app(db_sessions, "webhooks blocked")).app_id
        # "localhost" passes registration (a name, not an address) and resolves to 127.0.0.1 (or ::1) at send time.
        blocked_url = f"http://localhost:{receiver.port}/blocked"
        blocked = await _webhook(db_sessions, receiver, app_id, "blocked", ("conversation.completed",), url=blocked_url)
        allowed = await _webhook(db_sessions, receiver, app_id, "ok", ("conversation.completed",),
                                 url=f"http://127.0.0.2:{receiver.port}/ok")
        cid = str(1_700_000_000_000_000_000 + uuid.uuid4().int % 10**17)
        await _produce(broker.bootstrap, [(CONVERSATION_EVENTS, event("CONVERSATION_COMPLETED", cid, app_id,
                                                                     START_MS))])
        # A 3 s session: the embedded broker holds a new group's first join for about the session timeout.
        settings = _settings(broker, database_url, outbound_blocked_networks="127.0.0.1/32,::1/128",
                             kafka_session_timeout_ms=3_000)
        async with _worker(settings, f"webhooks-blocked-{uuid.uuid4().hex[:8]}") as task:
            await _eventually(lambda: len(receiver.received["ok"]) == 1, task)
            await _eventually(lambda: _dead_count(db_sessions, blocked), task)
    finally:
        await receiver.stop()

    assert receiver.received["ok"][0]["conversationId"] == cid
    assert not receiver.attempts["blocked"], "nothing may reach the blocked address, though a receiver listens there"
    (dead,) = await _deliveries(db_sessions, blocked)
    # Dead at the first attempt (a retry cannot help), with the reason in the delivery log and the dead letter.
    assert (dead.status, dead.attempts, dead.last_status_code) == ("dead", 1, None)
    assert dead.last_error is not None
    assert dead.last_error.startswith("not sent: localhost resolves to "), dead.last_error
    assert "a network this server does not send requests to (CONVOSCOPE_OUTBOUND_BLOCKED_NETWORKS)" in dead.last_error
    assert [d.status for d in await _deliveries(db_sessions, allowed)] == ["delivered"]
    dead_letters: list[dict[str, Any]] = []
    for _ in range(20):
        if dead_letters := await _dead_letters(settings, dead.id):
            break
        await asyncio.sleep(0.5)
    assert dead_letters and dead_letters[0]["last_error"] == dead.last_error and dead_letters[0]["url"] == blocked_url
