"""The email sink: consumer group ``convoscope-email`` on conversation events; sends each completed conversation's
summary email to the recipients its ``sendSummaryEmail`` actions named.

What it relies on: the store worker turns the actions (an attribute on the start events) into a
``summary_emails`` row before it applies the conversation's CONVERSATION_COMPLETED, and stores a summary a few
seconds after. So for a CONVERSATION_COMPLETED this sink waits (bounded) until the store has applied it, then reads
the row: none, and no email was asked for. Otherwise it waits (bounded) for the stored summary, makes the email from
the database and sends it, retrying with backoff, then marks the row ``sent`` or ``failed``.

Delivery: a batch's offsets are committed only after each of its COMPLETED events has a final row (sent or failed)
or none, so a crash re-handles the event; a row already ``sent`` is skipped, and ``sent`` is written right after
the SMTP server accepted the message. The one window left for a duplicate is a crash (or lost database) between
the server's acceptance and that write, a few milliseconds; the Message-ID is the same for every send of one
conversation, so mail systems that deduplicate show it once. Two sink processes may also both handle one event
for the length of a rebalance. The events of one batch are handled concurrently; the next batch waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import parseaddr
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Histogram
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from convoscope.api.report import load_report
from convoscope.auth import TokenIssuer, load_token_issuer
from convoscope.db.engine import create_engine, migrate, session_factory
from convoscope.db.models import Conversation
from convoscope.db.retry import RETRY_INITIAL_S, RETRY_MAX_S, retry_transient, sleep_unless_stopped
from convoscope.kafka import create_consumer
from convoscope.settings import Settings
from convoscope.view_links import conversation_page_url
from schemas.serde import SchemaError
from schemas.topics import CONVERSATION_EVENTS
from sinks.email.compose import compose_summary_email, summary_message_id
from sinks.email.exceptions import EmailConfigError, EmailError
from sinks.email.records import (
    EmailStatus,
    build_content,
    load_request,
    mark_failed,
    mark_sent,
    record_failed_attempt,
    stored_summary,
    wait_until_completion_stored,
)
from sinks.email.smtp import SmtpTarget, backoff_delay_s, send_email

if TYPE_CHECKING:
    from convoscope.health import Health

__all__ = ["EMAIL_GROUP", "EmailTimings", "SummaryEmailSender", "completed_events", "run_email_worker"]

log = logging.getLogger(__name__)

EMAIL_GROUP = "convoscope-email"
MAX_BATCH_RECORDS = 200
POLL_TIMEOUT_MS = 500
NO_SMTP_URL = "SMTP_URL is not set: summary emails cannot be sent (see docs/operations.md)"

EMAILS = Counter("convoscope_email_emails_total", "Summary email attempts by outcome (sent, retry, failed)",
                 ["outcome"])
SEND_SECONDS = Histogram("convoscope_email_send_seconds", "One SMTP send: connect, TLS, auth and the message",
                         buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0))
EVENTS = Counter("convoscope_email_completions_total",
                 "Completed conversations handled, by what they needed (no_request, sent, failed, already_done)",
                 ["outcome"])


@dataclass(frozen=True)
class EmailTimings:
    """How long to wait for the store, and how the SMTP retries are spaced; shorter in tests."""

    store_wait_s: float = 120.0
    """For the store worker to apply a CONVERSATION_COMPLETED (it is normally well under a second behind)."""
    summary_wait_s: float = 20.0
    """For the store worker's summary (made 5 s after completion) before this sink makes it itself."""
    poll_s: float = 0.5
    backoff_initial_s: float = 2.0
    backoff_max_s: float = 60.0


class SummaryEmailSender:
    """Handles one CONVERSATION_COMPLETED: from the ``summary_emails`` row to a sent (or failed) email."""

    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], tokens: TokenIssuer,
                 timings: EmailTimings | None = None) -> None:
        self.settings, self.sessions, self.tokens = settings, sessions, tokens
        self.timings = timings or EmailTimings()
        self.sender = settings.smtp_from
        domain = parseaddr(self.sender)[1].rpartition("@")[2]
        self.message_id_domain = domain or "convoscope.invalid"
        self.target: SmtpTarget | None = None
        self.config_error: str | None = None
        if settings.smtp_url is None:
            self.config_error = NO_SMTP_URL
        else:
            try:
                self.target = SmtpTarget.parse(settings.smtp_url.get_secret_value())
            except EmailConfigError as exc:
                self.config_error = str(exc)

    async def handle_completed(self, event: dict[str, Any], stop: asyncio.Event) -> str | None:
        """The outcome (for metrics and logs), or None when stopped before the row was final."""
        conversation_id = event["conversation_id"]
        timings = self.timings
        stored = await wait_until_completion_stored(self.sessions, conversation_id, int(event["at_ms"]),
                                                    timings.store_wait_s, timings.poll_s, stop)
        if stop.is_set():
            return None
        if not stored:
            # Deleted meanwhile, or the store is far behind: decide on what is there rather than block the sink.
            log.warning("conversation %s: the store has not recorded its completion after %.0f s; going on",
                        conversation_id, timings.store_wait_s)
        request = await load_request(self.sessions, conversation_id)
        if request is None:
            return "no_request"
        if request.status != EmailStatus.REQUESTED:
            return "already_done"  # sent or failed before a restart: never send twice
        if self.config_error is not None:
            await mark_failed(self.sessions, conversation_id, request.attempts, self.config_error)
            EMAILS.labels("failed").inc()
            log.error("summary email of conversation %s not sent: %s", conversation_id, self.config_error)
            return "failed"
        assert self.target is not None
        if request.attempts >= self.settings.email_max_attempts:
            # Earlier runs used every attempt (the limit was lowered since, or a crash came before the final write).
            await mark_failed(self.sessions, conversation_id, None, request.last_error or "attempts used up")
            EMAILS.labels("failed").inc()
            return "failed"
        # The store worker's summary, a few seconds after completion: the report below then reads it as is.
        await stored_summary(self.sessions, self.settings, conversation_id, request.app_id,
                             timings.summary_wait_s, timings.poll_s, stop)
        link = conversation_page_url(self.settings, self.tokens, request.app_id, conversation_id)
        async with self.sessions() as session:
            conversation = await session.get(Conversation, conversation_id)
        if conversation is None:  # deleted through the API since it completed
            await mark_failed(self.sessions, conversation_id, None, "the conversation was deleted before sending")
            EMAILS.labels("failed").inc()
            return "failed"
        content = build_content(await load_report(self.sessions, self.settings, conversation), link)
        message_id = summary_message_id(conversation_id, self.message_id_domain)
        recipients = list(request.recipients)
        message = compose_summary_email(content, sender=self.sender, recipients=recipients, message_id=message_id)
        return await self._send_with_retries(conversation_id, message, recipients, request.attempts, stop)

    async def _send_with_retries(self, conversation_id: str, message: EmailMessage, recipients: list[str],
                                 attempts: int, stop: asyncio.Event) -> str | None:
        assert self.target is not None
        max_attempts = self.settings.email_max_attempts
        while True:
            attempts += 1
            started = time.perf_counter()
            try:
                answer, refused = await send_email(self.target, message, recipients,
                                                   timeout_s=self.settings.smtp_timeout_s)
            except EmailError as exc:
                SEND_SECONDS.observe(time.perf_counter() - started)
                error = f"attempt {attempts}: {exc}"
                if not exc.retriable or attempts >= max_attempts:
                    await mark_failed(self.sessions, conversation_id, attempts, error)
                    EMAILS.labels("failed").inc()
                    log.error("summary email of conversation %s failed after %d attempt(s): %s", conversation_id,
                              attempts, exc)
                    return "failed"
                await record_failed_attempt(self.sessions, conversation_id, attempts, error)
                EMAILS.labels("retry").inc()
                delay = backoff_delay_s(attempts, self.timings.backoff_initial_s, self.timings.backoff_max_s)
                log.warning("summary email of conversation %s: %s; retrying in %.1f s", conversation_id, exc, delay)
                if await sleep_unless_stopped(stop, delay):
                    return None
                continue
            SEND_SECONDS.observe(time.perf_counter() - started)
            # Recorded at once: from here a restart skips this conversation.
            # Addresses the server refused while taking the others are not retried: the email went out.
            note = ("refused recipients: " + "; ".join(f"{a}: {r}" for a, r in refused.items())) if refused else None
            await mark_sent(self.sessions, conversation_id, attempts, message["Message-ID"], note)
            EMAILS.labels("sent").inc()
            log.info("summary email of conversation %s sent to %d recipient(s) via %s: %s%s", conversation_id,
                     len(recipients) - len(refused), self.target.describe(), answer.strip()[:120],
                     f" ({note})" if note else "")
            return "sent"

    async def handle_safely(self, event: dict[str, Any], stop: asyncio.Event, health: Health | None = None
                            ) -> bool:
        """``handle_completed``, retrying while the database is unavailable; any other failure is logged and
        recorded on the row (when it can be). False only when stopped before the outcome was final."""
        conversation_id = event["conversation_id"]

        async def attempt() -> str | None:
            return await self.handle_completed(event, stop)

        try:
            done, outcome = await retry_transient(stop, f"summary email of conversation {conversation_id}", attempt,
                                                  health)
        except Exception as exc:  # a bad row or a bug must not stop the sink: the row says what happened
            log.exception("summary email of conversation %s failed", conversation_id)
            with contextlib.suppress(SQLAlchemyError, OSError):
                await mark_failed(self.sessions, conversation_id, None, f"internal error: {type(exc).__name__}: {exc}")
            EVENTS.labels("error").inc()
            return True
        if not done or outcome is None:
            return False
        EVENTS.labels(outcome).inc()
        return True


def _where(record: ConsumerRecord[bytes, bytes]) -> str:
    return f"{record.topic}[{record.partition}]@{record.offset}"


def completed_events(batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
                     ) -> tuple[list[dict[str, Any]], dict[TopicPartition, int]]:
    """The batch's CONVERSATION_COMPLETED events (one per conversation) and the offsets to commit after them."""
    events: dict[str, dict[str, Any]] = {}
    offsets: dict[TopicPartition, int] = {}
    for tp, records in batch.items():
        for record in records:
            offsets[tp] = record.offset + 1
            if record.value is None:
                continue
            try:
                event = CONVERSATION_EVENTS.serde.deserialize(record.value)
            except SchemaError as exc:
                log.error("skipping bad event at %s: %s", _where(record), exc)
                continue
            if event["type"] == "CONVERSATION_COMPLETED":
                events[event["conversation_id"]] = event
    return list(events.values()), offsets


async def _start_consumer(settings: Settings, group_id: str, stop: asyncio.Event) -> AIOKafkaConsumer | None:
    delay = RETRY_INITIAL_S
    while not stop.is_set():
        consumer = create_consumer(settings, CONVERSATION_EVENTS.name, group_id=group_id,
                                   max_poll_records=MAX_BATCH_RECORDS)
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


async def run_email_worker(settings: Settings, stop: asyncio.Event | None = None, *, group_id: str = EMAIL_GROUP,
                           health: Health | None = None, timings: EmailTimings | None = None) -> None:
    """Consume until ``stop`` is set. Runs without ``SMTP_URL`` too: requested emails are then recorded failed."""
    stop = stop or asyncio.Event()
    migrated, _ = await retry_transient(stop, "migrating the database", lambda: migrate(settings), health)
    if not migrated:
        return
    engine = create_engine(settings)
    sessions = session_factory(engine)
    consumer: AIOKafkaConsumer | None = None
    try:
        loaded, tokens = await retry_transient(stop, "loading the signing key",
                                               lambda: load_token_issuer(settings, sessions), health)
        if not loaded or tokens is None:
            return
        sender = SummaryEmailSender(settings, sessions, tokens, timings)
        if sender.config_error:
            log.warning("email worker: %s", sender.config_error)
        consumer = await _start_consumer(settings, group_id, stop)
        if consumer is None:
            return
        log.info("email worker consuming %s as %s (%s)", CONVERSATION_EVENTS.name, group_id,
                 sender.target.describe() if sender.target else "no SMTP server")
        if health is not None:
            health.set_ready("consuming")
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=MAX_BATCH_RECORDS)
            if not batch:
                continue
            events, offsets = completed_events(batch)
            finished = await asyncio.gather(*(sender.handle_safely(event, stop, health) for event in events))
            if not all(finished):
                break  # stopping mid-way: leave the batch uncommitted for the next owner
            try:
                await consumer.commit(offsets)
            except KafkaError as exc:
                # Lost the partitions in a rebalance: the new owner re-reads; rows already final are skipped.
                log.warning("offset commit failed, events will be re-read: %s", exc)
    finally:
        if consumer is not None:
            await consumer.stop()
        await engine.dispose()

