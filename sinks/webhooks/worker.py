"""The webhook sink (``convoscope worker webhooks``): consumer group ``convoscope-webhooks`` plus a sender.

Consumer: each ``getmany`` batch becomes webhook events (``logic.events_from_record``), queued in one database
transaction for the webhooks that want them (the outbox, ``webhook_deliveries``); offsets are committed only after
that transaction. The database outbox, not Kafka, holds what is still to be sent, so the consumer never waits on
a receiver: a slow or dead receiver cannot slow the pipeline.

Sender: claims due deliveries with a lease, POSTs each as its own task (at most ``webhook_concurrency`` at once and
at most ``per_webhook_limit`` per webhook, so a hanging receiver holds only its own few slots), records the
outcome, retries with exponential backoff and full jitter, and dead-letters to ``convoscope.webhooks.deadletter.v1``
after ``webhook_max_attempts`` or on a 4xx other than 408/429. A sender that crashes leaves its rows leased; they
are sent again when the lease runs out (at least once; receivers deduplicate by event id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from convoscope.db.engine import create_engine, migrate, session_factory
from convoscope.db.retry import RETRY_INITIAL_S, RETRY_MAX_S, sleep_unless_stopped
from convoscope.egress import BlockedDestination, guarded_transport, parse_networks
from convoscope.kafka import create_consumer, create_producer
from convoscope.settings import Settings
from convoscope.timestamps import now_ms
from schemas.serde import SchemaError
from schemas.topics import CONVERSATION_EVENTS, INSIGHTS, TRACKER_MATCHES, TRANSCRIPTS_FINAL, WEBHOOK_DEADLETTER, Topic
from sinks.webhooks.logic import (
    Outcome,
    WebhookEvent,
    backoff_delay_s,
    classify_response,
    events_from_record,
    signed_headers,
)
from sinks.webhooks.outbox import (
    ClaimedDelivery,
    DeliveryStatus,
    WebhookTarget,
    claim_due,
    enqueue,
    forget_finished,
    pending_count,
    record_attempt,
    release,
    webhooks_of,
)

if TYPE_CHECKING:
    from convoscope.health import Health

__all__ = [
    "WEBHOOKS_GROUP", "WEBHOOK_TOPICS", "WebhookDirectory", "WebhookSender", "decode_events", "run_webhook_worker",
]

log = logging.getLogger(__name__)

WEBHOOKS_GROUP = "convoscope-webhooks"
WEBHOOK_TOPICS: tuple[Topic, ...] = (CONVERSATION_EVENTS, TRANSCRIPTS_FINAL, INSIGHTS, TRACKER_MATCHES)
MAX_BATCH_RECORDS = 500
POLL_TIMEOUT_MS = 500
WEBHOOK_CACHE_S = 2.0
"""How long a process uses an app's webhook list before reading it again (new webhooks apply after this)."""
SENDER_POLL_S = 1.0
"""How often an idle sender looks for due deliveries (retries, and rows queued by other processes)."""
PENDING_GAUGE_EVERY_S = 5.0
LEASE_MARGIN_S = 10.0
DB_ATTEMPTS = 3
ERROR_TEXT_CHARS = 300

EVENTS = Counter("convoscope_webhooks_events_total", "Webhook events read from the topics", ["type"])
QUEUED = Counter("convoscope_webhooks_queued_total", "Deliveries queued in the outbox (webhook x event)")
DELIVERIES = Counter("convoscope_webhooks_deliveries_total", "Delivery attempts by outcome", ["outcome"])
REQUEST_SECONDS = Histogram("convoscope_webhooks_request_seconds", "Duration of one delivery attempt (HTTP POST)")
DELIVERY_SECONDS = Histogram(
    "convoscope_webhooks_delivery_seconds", "From queueing an event to its successful delivery, retries included",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200),
)
PENDING = Gauge("convoscope_webhooks_outbox_pending", "Deliveries waiting to be sent (all webhooks)")
IN_FLIGHT = Gauge("convoscope_webhooks_in_flight", "Deliveries being sent by this process")
FORGOTTEN = Counter("convoscope_webhooks_log_expired_total",
                    "Delivered or dead deliveries removed from the delivery log after the retention period")
DEAD_LETTERS = Counter("convoscope_webhooks_deadletters_total", "Deliveries written to the dead-letter topic")
for _outcome in Outcome:
    DELIVERIES.labels(_outcome.value)  # every outcome shows (as 0) from the start

_BY_NAME = {topic.name: topic for topic in WEBHOOK_TOPICS}


def _where(record: ConsumerRecord[bytes, bytes]) -> str:
    return f"{record.topic}[{record.partition}]@{record.offset}"


def decode_events(
    batch: Mapping[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]],
) -> tuple[list[WebhookEvent], dict[TopicPartition, int]]:
    """The webhook events of a fetched batch, and the offsets to commit once they are queued. Undecodable
    records are logged and skipped."""
    events: list[WebhookEvent] = []
    offsets: dict[TopicPartition, int] = {}
    for tp, messages in batch.items():
        topic = _BY_NAME.get(tp.topic)
        for message in messages:
            offsets[tp] = message.offset + 1
            if topic is None or message.value is None:
                continue  # unexpected topic, or a tombstone
            try:
                value = topic.serde.deserialize(message.value)
                found = events_from_record(tp.topic, value)
            except (SchemaError, KeyError, TypeError, ValueError) as exc:
                log.error("skipping bad record at %s: %s", _where(message), exc)
                continue
            for event in found:
                EVENTS.labels(event.type).inc()
            events.extend(found)
    return events, offsets


class WebhookDirectory:
    """The webhooks of each app, read from the database at most every ``ttl_s`` per app, and always again for
    events newer than the last read: a webhook registered just before an event gets that event."""

    def __init__(self, ttl_s: float = WEBHOOK_CACHE_S) -> None:
        self._ttl_s = ttl_s
        self._cached: dict[str, tuple[float, int, list[WebhookTarget]]] = {}  # monotonic, wall ms, webhooks

    async def lookup(self, session: AsyncSession, events: Sequence[WebhookEvent]) -> dict[str, list[WebhookTarget]]:
        newest: dict[str, int] = {}
        for event in events:
            newest[event.app_id] = max(newest.get(event.app_id, 0), event.created_at_ms)
        now, wall_ms = time.monotonic(), now_ms()
        stale = {app_id for app_id, event_ms in newest.items()
                 if app_id not in self._cached or now - self._cached[app_id][0] > self._ttl_s
                 or self._cached[app_id][1] <= event_ms}
        if stale:
            for app_id, webhooks in (await webhooks_of(session, stale)).items():
                self._cached[app_id] = (now, wall_ms, webhooks)
        return {app_id: self._cached[app_id][2] for app_id in newest}


def _error_text(response: httpx.Response) -> str:
    return f"HTTP {response.status_code}: {response.text[:ERROR_TEXT_CHARS]}".rstrip(": ")


class WebhookSender:
    """Sends due deliveries from the outbox until stopped; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        producer: AIOKafkaProducer,
        *,
        per_webhook_limit: int | None = None,
        poll_s: float = SENDER_POLL_S,
        rng: random.Random | None = None,
    ) -> None:
        self._settings, self._sessions, self._producer = settings, sessions, producer
        self._concurrency = settings.webhook_concurrency
        # A quarter of the slots per receiver: a receiver that hangs until every request times out holds at most
        # these, and the other receivers keep the rest.
        self._per_webhook = per_webhook_limit or max(1, self._concurrency // 4)
        self._lease_ms = int((settings.webhook_timeout_s + LEASE_MARGIN_S) * 1000)
        self._poll_s = poll_s
        self._rng = rng or random.Random()
        self._changed = asyncio.Event()
        self._in_flight: dict[asyncio.Task[None], ClaimedDelivery] = {}
        self._per_webhook_busy: dict[str, int] = defaultdict(int)
        self._http: httpx.AsyncClient | None = None
        self._gauge_at = 0.0

    def wake(self) -> None:
        """Look for due deliveries now (new rows were queued)."""
        self._changed.set()

    async def run(self, stop: asyncio.Event) -> None:
        limits = httpx.Limits(max_connections=self._concurrency, max_keepalive_connections=self._concurrency)
        stopping = asyncio.create_task(stop.wait())
        try:
            # Every connection is checked against CONVOSCOPE_OUTBOUND_BLOCKED_NETWORKS after DNS resolution.
            transport = guarded_transport(parse_networks(self._settings.outbound_blocked_networks), limits=limits)
            async with httpx.AsyncClient(timeout=self._settings.webhook_timeout_s, transport=transport,
                                         follow_redirects=False) as http:
                self._http = http
                while not stop.is_set():
                    self._changed.clear()
                    await self._fill()
                    await self._update_gauge()
                    changed = asyncio.create_task(self._changed.wait())
                    await asyncio.wait({changed, stopping}, timeout=self._poll_s,
                                       return_when=asyncio.FIRST_COMPLETED)
                    changed.cancel()
                await self._stop_in_flight()
        finally:
            stopping.cancel()
            if self._in_flight:
                await self._stop_in_flight()

    async def _stop_in_flight(self) -> None:
        """Cancel what is being sent and hand those rows back (an interrupted POST is sent again later)."""
        unsent = list(self._in_flight.values())
        for task in list(self._in_flight):
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        self._in_flight.clear()
        if unsent:
            with contextlib.suppress(SQLAlchemyError, OSError):  # else their leases simply run out
                async with self._sessions.begin() as session:
                    await release(session, unsent)

    async def _update_gauge(self) -> None:
        if time.monotonic() - self._gauge_at < PENDING_GAUGE_EVERY_S:
            return
        self._gauge_at = time.monotonic()
        with contextlib.suppress(SQLAlchemyError, OSError):
            async with self._sessions() as session:
                PENDING.set(await pending_count(session))
            # Housekeeping rides on the same beat: the delivery log keeps webhook_log_retention_s.
            async with self._sessions.begin() as session:
                cutoff = int(time.time() * 1000) - int(self._settings.webhook_log_retention_s * 1000)
                FORGOTTEN.inc(await forget_finished(session, cutoff))

    async def _fill(self) -> None:
        slots = self._concurrency - len(self._in_flight)
        if slots <= 0:
            return
        room = {webhook_id: self._per_webhook - busy for webhook_id, busy in self._per_webhook_busy.items()}
        try:
            async with self._sessions.begin() as session:
                claimed = await claim_due(session, now_ms(), self._lease_ms, slots, room, self._per_webhook)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("cannot claim webhook deliveries (database unavailable?): %s", exc)
            return
        for delivery in claimed:
            task = asyncio.create_task(self._deliver(delivery), name=f"webhook-delivery-{delivery.id}")
            self._in_flight[task] = delivery
            self._per_webhook_busy[delivery.webhook_id] += 1
            task.add_done_callback(self._done)
        IN_FLIGHT.set(len(self._in_flight))

    def _done(self, task: asyncio.Task[None]) -> None:
        delivery = self._in_flight.pop(task, None)
        if delivery is not None:
            self._per_webhook_busy[delivery.webhook_id] -= 1
            if self._per_webhook_busy[delivery.webhook_id] <= 0:
                del self._per_webhook_busy[delivery.webhook_id]
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook delivery task failed", exc_info=task.exception())
        IN_FLIGHT.set(len(self._in_flight))
        self._changed.set()

    async def _post(self, delivery: ClaimedDelivery) -> tuple[int | None, str | None]:
        assert self._http is not None
        headers = signed_headers(delivery.secret, delivery.body, delivery.event_id, delivery.event_type,
                                 int(time.time()))
        started = time.perf_counter()
        try:
            response = await self._http.post(delivery.url, content=delivery.body.encode(), headers=headers)
        except httpx.TimeoutException:
            return None, f"timed out after {self._settings.webhook_timeout_s:g} s"
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:ERROR_TEXT_CHARS]
        finally:
            REQUEST_SECONDS.observe(time.perf_counter() - started)
        return response.status_code, None if response.is_success else _error_text(response)

    async def _deliver(self, delivery: ClaimedDelivery) -> None:
        try:
            status_code, error = await self._post(delivery)
            outcome = classify_response(status_code)
        except BlockedDestination as exc:
            # The operator blocks that network: no retry can succeed, so it is dead now, with the reason.
            status_code, error, outcome = None, f"not sent: {exc}"[:ERROR_TEXT_CHARS], Outcome.DEAD
        attempts = delivery.attempts + 1
        if outcome is Outcome.RETRY and attempts >= self._settings.webhook_max_attempts:
            outcome = Outcome.DEAD
        at = now_ms()
        next_attempt = None
        if outcome is Outcome.RETRY:
            delay_s = backoff_delay_s(attempts, self._settings.webhook_backoff_initial_s,
                                      self._settings.webhook_backoff_max_s, self._rng)
            next_attempt = at + int(delay_s * 1000)
        if outcome is Outcome.DEAD and not await self._dead_letter(delivery, attempts, status_code, error, at):
            return  # not dead-lettered: the lease runs out and the delivery is tried again
        status = {Outcome.DELIVERED: DeliveryStatus.DELIVERED, Outcome.RETRY: DeliveryStatus.PENDING,
                  Outcome.DEAD: DeliveryStatus.DEAD}[outcome]
        for attempt in range(DB_ATTEMPTS):
            try:
                async with self._sessions.begin() as session:
                    held = await record_attempt(session, delivery, status=status, now_ms=at, status_code=status_code,
                                                error=error, next_attempt_at_ms=next_attempt)
                break
            except (SQLAlchemyError, OSError) as exc:
                if attempt == DB_ATTEMPTS - 1:
                    log.warning("outcome of webhook delivery %s not stored (sent again later): %s", delivery.id, exc)
                    return
                await asyncio.sleep(RETRY_INITIAL_S * 2**attempt)
        if not held:
            log.warning("webhook delivery %s: lease expired while sending (receiver slower than the lease)",
                        delivery.id)
        DELIVERIES.labels(outcome.value).inc()
        if outcome is Outcome.DELIVERED:
            DELIVERY_SECONDS.observe(max(0, at - delivery.created_at_ms) / 1000)
        elif outcome is Outcome.DEAD:
            log.warning("webhook delivery %s (%s to %s) dead after %d attempts: %s", delivery.id,
                        delivery.event_type, delivery.url, attempts, error)

    async def _dead_letter(self, delivery: ClaimedDelivery, attempts: int, status_code: int | None,
                           error: str | None, at: int) -> bool:
        record = {
            "delivery_id": delivery.id, "webhook_id": delivery.webhook_id, "app_id": delivery.app_id,
            "url": delivery.url, "event_id": delivery.event_id, "event_type": delivery.event_type,
            "conversation_id": delivery.conversation_id, "body": delivery.body, "attempts": attempts,
            "last_status_code": status_code, "last_error": error, "dead_at_ms": at,
        }
        try:
            await self._producer.send_and_wait(WEBHOOK_DEADLETTER.name, WEBHOOK_DEADLETTER.serde.serialize(record),
                                               key=delivery.webhook_id.encode())
        except KafkaError as exc:
            log.warning("webhook delivery %s not dead-lettered yet (Kafka unavailable): %s", delivery.id, exc)
            return False
        DEAD_LETTERS.inc()
        return True


async def _queue_with_retry(sessions: async_sessionmaker[AsyncSession], directory: WebhookDirectory,
                            events: list[WebhookEvent], stop: asyncio.Event, health: Health | None) -> bool:
    """Queue a batch's events (one transaction), retrying while the database is unavailable; False on stop."""
    delay = RETRY_INITIAL_S
    while True:
        try:
            async with sessions.begin() as session:
                webhooks = await directory.lookup(session, events)
                queued = await enqueue(session, webhooks, events, now_ms())
            QUEUED.inc(queued)
            if health is not None and not health.ready.is_set():
                health.set_ready("consuming")
            return True
        except (SQLAlchemyError, OSError) as exc:
            log.warning("queueing %d webhook events failed, retrying in %.1f s: %s", len(events), delay, exc)
            if health is not None:
                health.set_not_ready(f"database unavailable: {type(exc).__name__}")
        if await sleep_unless_stopped(stop, delay):
            return False
        delay = min(delay * 2, RETRY_MAX_S)


async def _start_kafka(settings: Settings, group_id: str, stop: asyncio.Event
                       ) -> tuple[AIOKafkaConsumer, AIOKafkaProducer] | None:
    delay = RETRY_INITIAL_S
    while not stop.is_set():
        consumer = create_consumer(settings, *(t.name for t in WEBHOOK_TOPICS), group_id=group_id,
                                   max_poll_records=MAX_BATCH_RECORDS)
        producer = create_producer(settings)
        try:
            await consumer.start()
            await producer.start()
            return consumer, producer
        except KafkaError as exc:
            await consumer.stop()
            await producer.stop()
            log.warning("cannot reach Kafka, retrying in %.1f s: %s", delay, exc)
        if await sleep_unless_stopped(stop, delay):
            break
        delay = min(delay * 2, RETRY_MAX_S)
    return None


async def _migrate(settings: Settings, stop: asyncio.Event) -> bool:
    delay = RETRY_INITIAL_S
    while True:
        try:
            await migrate(settings)
            return True
        except (SQLAlchemyError, OSError) as exc:
            log.warning("migrating the database failed, retrying in %.1f s: %s", delay, exc)
        if await sleep_unless_stopped(stop, delay):
            return False
        delay = min(delay * 2, RETRY_MAX_S)


async def run_webhook_worker(
    settings: Settings,
    stop: asyncio.Event | None = None,
    *,
    group_id: str = WEBHOOKS_GROUP,
    health: Health | None = None,
    cache_s: float = WEBHOOK_CACHE_S,
    sender_poll_s: float = SENDER_POLL_S,
) -> None:
    """Consume and send until ``stop`` is set (or the task is cancelled)."""
    stop = stop or asyncio.Event()
    if not await _migrate(settings, stop):
        return
    engine = create_engine(settings)
    sessions = session_factory(engine)
    clients = await _start_kafka(settings, group_id, stop)
    if clients is None:
        await engine.dispose()
        return
    consumer, producer = clients
    sender = WebhookSender(settings, sessions, producer, poll_s=sender_poll_s)
    sending = asyncio.create_task(sender.run(stop), name="webhook-sender")
    directory = WebhookDirectory(cache_s)
    try:
        log.info("webhook sink consuming %s as %s", [t.name for t in WEBHOOK_TOPICS], group_id)
        if health is not None:
            health.set_ready("consuming")
        while not stop.is_set() and not sending.done():
            batch = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=MAX_BATCH_RECORDS)
            if not batch:
                continue
            events, offsets = decode_events(batch)
            if events:
                if not await _queue_with_retry(sessions, directory, events, stop, health):
                    break  # stopping while the database is down: leave the batch uncommitted
                sender.wake()
            try:
                await consumer.commit(offsets)
            except KafkaError as exc:
                # Lost the partitions in a rebalance: the new owner re-reads, and queueing is idempotent.
                log.warning("offset commit failed, records will be re-read: %s", exc)
        if sending.done():
            sending.result()  # the sender died: raise its error
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await sending
        await consumer.stop()
        await producer.stop()
        await engine.dispose()
