"""The email sink on real parts: the embedded broker, SQLite and PostgreSQL, and aiosmtpd servers.

The database is seeded through the store worker's own writer (``write_batch``), as the store worker would have
left it when the conversation completed; the CONVERSATION_COMPLETED event then goes through Kafka to the sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from convoscope.api import api_exception_handlers
from convoscope.api.emails import email_routes
from convoscope.auth import create_app, load_token_issuer
from convoscope.db.models import SummaryEmail
from convoscope.embedded_broker import EmbeddedBroker, free_port
from convoscope.health import Health
from convoscope.kafka import create_producer
from convoscope.settings import Settings
from producers.actions import recipients_attribute
from schemas.topics import CONVERSATION_EVENTS, INSIGHTS, TOPIC_PHRASES, TRANSCRIPTS_FINAL
from sinks.email.worker import EmailTimings, run_email_worker
from sinks.store.writer import StoreRecord, write_batch
from tests.email.smtp_server import SMTP_PASSWORD, SMTP_USER, SmtpServer, start_smtp_server
from tests.store.records import event, final, insight, speaker, text_result

pytestmark = pytest.mark.slow

TITLE = "Pricing review <Q4>"
FAST = EmailTimings(store_wait_s=3.0, summary_wait_s=0.5, poll_s=0.1, backoff_initial_s=0.3, backoff_max_s=1.0)
RECIPIENTS = ["ann@example.com", "ben@example.org"]


def _settings(broker: EmbeddedBroker, database_url: str, smtp_url: str | None, **extra: Any) -> Settings:
    return Settings(kafka_bootstrap=broker.bootstrap, database_url=database_url, smtp_url=smtp_url,
                    smtp_from="convoscope <noreply@convoscope.test>", smtp_timeout_s=5.0, **extra)


@contextlib.asynccontextmanager
async def running_worker(settings: Settings, group_id: str | None = None) -> AsyncIterator[asyncio.Task[None]]:
    stop, health = asyncio.Event(), Health("email")
    task = asyncio.create_task(run_email_worker(settings, stop, group_id=group_id or f"email-{uuid.uuid4().hex}",
                                                health=health, timings=FAST))
    waiter = asyncio.create_task(health.ready.wait())
    await asyncio.wait({task, waiter}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        task.result()  # raises what stopped it
    assert health.ready.is_set(), "the email worker did not get ready"
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def seed_conversation(sessions: async_sessionmaker[AsyncSession], app_id: str, emails: list[str]
                            ) -> dict[str, Any]:
    """A two-person conversation stored as the store worker stores it; returns its CONVERSATION_COMPLETED."""
    conversation_id = str(uuid.uuid4().int)[:18]
    started_ms = int(time.time() * 1000) - 120_000
    alice = speaker(conversation_id, "Alice", "alice@example.com", "s1")
    bob = speaker(conversation_id, "Bob", "bob@example.com", "s2")
    first = final(conversation_id, app_id, "s1", alice, 0, 0, 64_000,
                  "Bob, can you send the pricing deck by Friday?", started_ms)
    second = final(conversation_id, app_id, "s2", bob, 0, 80_000, 144_000,
                   "Sure. What is the budget for the launch <script>alert(1)</script>?", started_ms)
    completed = event("CONVERSATION_COMPLETED", conversation_id, app_id, started_ms + 95_000)
    events = CONVERSATION_EVENTS.name
    await write_batch(sessions, [
        StoreRecord(events, event("CONVERSATION_STARTED", conversation_id, app_id, started_ms, name=TITLE)),
        StoreRecord(events, event("MEMBER_JOINED", conversation_id, app_id, started_ms, member=alice)),
        StoreRecord(events, event("STREAM_STARTED", conversation_id, app_id, started_ms, stream_id="s1",
                                  member=alice, attributes=recipients_attribute(emails))),
        StoreRecord(events, event("MEMBER_JOINED", conversation_id, app_id, started_ms, member=bob)),
        StoreRecord(TRANSCRIPTS_FINAL.name, first),
        StoreRecord(TRANSCRIPTS_FINAL.name, second),
        StoreRecord(INSIGHTS.name, text_result(first, insights=[insight(
            str(uuid.uuid4()), "ACTION_ITEM", "Bob will send the pricing deck by Friday", assignee_name="Bob",
            due_by="2026-11-27T00:00:00+00:00", due_text="by Friday")])),
        StoreRecord(INSIGHTS.name, text_result(second, insights=[insight(
            str(uuid.uuid4()), "QUESTION", "What is the budget for the launch?")])),
        StoreRecord(TOPIC_PHRASES.name, text_result(first, sentiment=0.2, phrases=[
            {"phrase": "pricing deck", "root_words": ["pricing", "deck"], "offset": 21}])),
        StoreRecord(TOPIC_PHRASES.name, text_result(second, sentiment=0.0, phrases=[
            {"phrase": "pricing deck", "root_words": ["pricing", "deck"], "offset": 0}])),
        StoreRecord(events, completed),
    ])
    return completed


async def publish(settings: Settings, value: dict[str, Any]) -> None:
    producer = create_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(CONVERSATION_EVENTS.name, CONVERSATION_EVENTS.serde(value),
                                     key=value["conversation_id"].encode())
    finally:
        await producer.stop()


async def row_where(sessions: async_sessionmaker[AsyncSession], conversation_id: str, ready: Any,
                    timeout_s: float = 30.0) -> SummaryEmail:
    deadline = time.monotonic() + timeout_s
    while True:
        async with sessions() as session:
            row = await session.get(SummaryEmail, conversation_id)
        if row is not None and ready(row):
            return row
        if time.monotonic() > deadline:
            raise AssertionError(f"summary_emails row not as expected in time: {row and vars(row)}")
        await asyncio.sleep(0.1)


def _api(sessions: async_sessionmaker[AsyncSession], settings: Settings, tokens: Any) -> httpx.AsyncClient:
    app = Starlette(routes=email_routes(), exception_handlers=api_exception_handlers())
    app.state.settings, app.state.sessions, app.state.tokens = settings, sessions, tokens
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://convoscope.test")


async def _until(condition: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


def _count(outcome: str) -> float:
    return REGISTRY.get_sample_value("convoscope_email_completions_total", {"outcome": outcome}) or 0.0


async def test_sends_the_summary_email_once(broker: EmbeddedBroker, database_url: str,
                                            db_sessions: async_sessionmaker[AsyncSession],
                                            smtp_server: SmtpServer) -> None:
    settings = _settings(broker, database_url, smtp_server.url)
    credentials = await create_app(db_sessions, "email test")
    completed = await seed_conversation(db_sessions, credentials.app_id, RECIPIENTS)
    conversation_id = completed["conversation_id"]
    async with running_worker(settings):
        await publish(settings, completed)
        received = await asyncio.to_thread(smtp_server.mailbox.wait_for, 1, 30)
        assert len(received) == 1
        row = await row_where(db_sessions, conversation_id, lambda r: r.status == "sent")
    mail = received[0]
    assert sorted(mail.recipients) == RECIPIENTS
    assert mail.sender == "noreply@convoscope.test"
    message = mail.message
    assert message["Subject"] == f"Summary: {TITLE}"
    assert message["Message-ID"] == row.message_id and row.attempts == 1 and row.sent_at_ms is not None
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and html is not None
    plain_text, html_text = plain.get_content(), html.get_content()
    for text in (plain_text, html_text):
        for expected in ("Alice", "alice@example.com", "Bob", "Bob will send the pricing deck by Friday",
                         "Fri 27 Nov 2026", "What is the budget for the launch?", "pricing deck",
                         f"/conversations/{conversation_id}?token="):
            assert expected in text, expected
    assert TITLE in plain_text and "Pricing review &lt;Q4&gt;" in html_text
    assert "<script>" not in html_text
    # The stored summary (made here: the store worker did not run) is what the email shows.
    assert "Bob, can you send the pricing deck by Friday?" in plain_text

    tokens = await load_token_issuer(settings, db_sessions)
    async with _api(db_sessions, settings, tokens) as client:
        token, _ = tokens.issue(credentials.app_id)
        answer = await client.get(f"/v1/conversations/{conversation_id}/emails",
                                  headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200
        [shown] = answer.json()["emails"]
        assert (shown["recipients"], shown["status"], shown["attempts"], shown["lastError"]) == (
            RECIPIENTS, "sent", 1, None)
        other = await create_app(db_sessions, "another app")
        other_token, _ = tokens.issue(other.app_id)
        refused = await client.get(f"/v1/conversations/{conversation_id}/emails",
                                   headers={"Authorization": f"Bearer {other_token}"})
        assert refused.status_code == 404

    # As after a crash before the offset commit: a new consumer reads the same COMPLETED again.
    skipped_before = _count("already_done")
    async with running_worker(settings):
        await _until(lambda: _count("already_done") > skipped_before, 30)
    assert len(smtp_server.mailbox.received) == 1


# The database side is the same as in the test above, which runs on both: these run on SQLite only.
@pytest.mark.parametrize("database_kind", ["sqlite"])
async def test_retries_until_the_smtp_server_is_up(broker: EmbeddedBroker, database_url: str,
                                                   db_sessions: async_sessionmaker[AsyncSession]) -> None:
    port = free_port()
    settings = _settings(broker, database_url, f"smtp://127.0.0.1:{port}", email_max_attempts=8)
    completed = await seed_conversation(db_sessions, uuid.uuid4().hex, ["late@example.com"])
    conversation_id = completed["conversation_id"]
    async with running_worker(settings):
        await publish(settings, completed)
        waiting = await row_where(db_sessions, conversation_id, lambda r: r.attempts >= 1)
        assert waiting.status == "requested" and "attempt 1" in (waiting.last_error or "")
        server = start_smtp_server(port)
        try:
            received = await asyncio.to_thread(server.mailbox.wait_for, 1, 30)
            row = await row_where(db_sessions, conversation_id, lambda r: r.status == "sent")
        finally:
            server.stop()
    assert [r.recipients for r in received] == [["late@example.com"]]
    assert row.attempts >= 2 and row.last_error is None


@pytest.mark.parametrize("database_kind", ["sqlite"])
async def test_a_failed_email_is_recorded_and_the_worker_goes_on(
        broker: EmbeddedBroker, database_url: str, db_sessions: async_sessionmaker[AsyncSession],
        smtp_server: SmtpServer) -> None:
    down = _settings(broker, database_url, f"smtp://127.0.0.1:{free_port()}", email_max_attempts=3)
    credentials = await create_app(db_sessions, "email failures")
    unreachable = await seed_conversation(db_sessions, credentials.app_id, ["nobody@example.com"])
    async with running_worker(down) as task:
        await publish(down, unreachable)
        row = await row_where(db_sessions, unreachable["conversation_id"], lambda r: r.status == "failed")
        assert not task.done()
    assert row.attempts == 3 and row.sent_at_ms is None
    assert "attempt 3" in (row.last_error or "") and "127.0.0.1" in (row.last_error or "")
    tokens = await load_token_issuer(down, db_sessions)
    token, _ = tokens.issue(credentials.app_id)
    async with _api(db_sessions, down, tokens) as client:
        shown = (await client.get(f"/v1/conversations/{unreachable['conversation_id']}/emails",
                                  headers={"Authorization": f"Bearer {token}"})).json()["emails"]
    assert [(e["status"], e["attempts"], e["sentAt"]) for e in shown] == [("failed", 3, None)]
    assert "attempt 3" in shown[0]["lastError"]

    # A refusal (5xx) is final at once; then a good email from the same, still running, worker, to the one
    # recipient the server takes.
    refused, good = (await seed_conversation(db_sessions, credentials.app_id, ["gone@example.com"]),
                     await seed_conversation(db_sessions, credentials.app_id, ["ok@example.com", "old@example.com"]))
    smtp_server.mailbox.refuse_addresses["old@example.com"] = "550 5.1.1 mailbox closed"
    settings = _settings(broker, database_url, smtp_server.url, email_max_attempts=3)
    async with running_worker(settings) as task:
        smtp_server.mailbox.refuse_rcpt = "550 5.1.1 no such mailbox"
        await publish(settings, refused)
        row = await row_where(db_sessions, refused["conversation_id"], lambda r: r.status == "failed")
        assert row.attempts == 1 and "550" in (row.last_error or "")
        smtp_server.mailbox.refuse_rcpt = None
        await publish(settings, good)
        sent = await row_where(db_sessions, good["conversation_id"], lambda r: r.status == "sent")
        assert not task.done()
    assert sent.last_error == "refused recipients: old@example.com: 550 5.1.1 mailbox closed"
    assert [r.recipients for r in smtp_server.mailbox.received] == [["ok@example.com"]]


async def test_without_smtp_url_requests_fail_clearly(broker: EmbeddedBroker, sqlite_url: str,
                                                      db_sessions_sqlite: async_sessionmaker[AsyncSession]) -> None:
    settings = _settings(broker, sqlite_url, None)
    completed = await seed_conversation(db_sessions_sqlite, uuid.uuid4().hex, ["ann@example.com"])
    async with running_worker(settings):
        await publish(settings, completed)
        row = await row_where(db_sessions_sqlite, completed["conversation_id"], lambda r: r.status == "failed")
    assert row.last_error is not None and "SMTP_URL is not set" in row.last_error and row.attempts == 0


async def test_starttls_and_auth(broker: EmbeddedBroker, sqlite_url: str,
                                 db_sessions_sqlite: async_sessionmaker[AsyncSession],
                                 starttls_smtp_server: SmtpServer, self_signed_cert: tuple[Path, Path]) -> None:
    cert, _ = self_signed_cert
    password = SMTP_PASSWORD.replace(":", "%3A")
    url = (f"smtp://{SMTP_USER}:{password}@127.0.0.1:{starttls_smtp_server.port}"
           f"?starttls=require&cafile={cert}")
    settings = _settings(broker, sqlite_url, url)
    completed = await seed_conversation(db_sessions_sqlite, uuid.uuid4().hex, ["secure@example.com"])
    wrong = await seed_conversation(db_sessions_sqlite, uuid.uuid4().hex, ["secure@example.com"])
    async with running_worker(settings):
        await publish(settings, completed)
        received = await asyncio.to_thread(starttls_smtp_server.mailbox.wait_for, 1, 30)
        await row_where(db_sessions_sqlite, completed["conversation_id"], lambda r: r.status == "sent")
    assert [r.recipients for r in received] == [["secure@example.com"]]
    assert received[0].message["Subject"] == f"Summary: {TITLE}"

    bad_password = _settings(broker, sqlite_url, url.replace(password, "wrong"))
    async with running_worker(bad_password):
        await publish(bad_password, wrong)
        row = await row_where(db_sessions_sqlite, wrong["conversation_id"], lambda r: r.status == "failed")
    assert row.attempts == 1 and "535" in (row.last_error or "")  # bad credentials: not retried


@pytest.fixture
async def db_sessions_sqlite(sqlite_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    from convoscope.db import create_engine, migrate, session_factory

    await migrate(sqlite_url)
    engine = create_engine(sqlite_url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()
