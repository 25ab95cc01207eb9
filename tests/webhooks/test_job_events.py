"""Async API jobs: the job monitor queues ``job.completed`` / ``job.failed`` for registered webhooks in the
transaction of the status change (real broker for the completion announcement, SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from convoscope.auth import create_app
from convoscope.db.models import Job, TranscribedStream, Webhook, WebhookDelivery
from convoscope.embedded_broker import EmbeddedBroker
from convoscope.kafka import create_producer
from convoscope.settings import Settings
from convoscope.timestamps import now_ms
from producers.recorded.monitor import JobMonitor

HOUR_MS = 3_600_000

pytestmark = pytest.mark.usefixtures("empty_outbox")


def _job(app_id: str, stream_id: str, created_at_ms: int) -> Job:
    cid = str(1_700_000_000_000_000_000 + uuid.uuid4().int % 10**17)
    return Job(id=str(uuid.uuid4()), app_id=app_id, conversation_id=cid, kind="audio", status="in_progress",
               stream_ids=[stream_id], offset_ms=0, duration_ms=1_000, options={}, created_at_ms=created_at_ms,
               updated_at_ms=created_at_ms)


async def test_job_status_changes_queue_job_events_for_subscribed_webhooks(
    broker: EmbeddedBroker, database_url: str, db_sessions: async_sessionmaker[AsyncSession],
) -> None:
    app_id = (await create_app(db_sessions, "jobs")).app_id
    at = now_ms()
    done_stream, stuck_stream = uuid.uuid4().hex, uuid.uuid4().hex
    completed, failed = _job(app_id, done_stream, at), _job(app_id, stuck_stream, at - 2 * HOUR_MS)
    subscribed, other = str(uuid.uuid4()), str(uuid.uuid4())
    async with db_sessions.begin() as session:
        session.add_all([
            completed, failed,
            # The transcriber finished the first job's only stream, with no finals: the job is complete.
            TranscribedStream(stream_id=done_stream, conversation_id=completed.conversation_id, final_count=0,
                              transcribed_at_ms=at),
            Webhook(id=subscribed, app_id=app_id, url="https://hooks.example.com/jobs", secret="s" * 20,
                    event_types=["job.completed", "job.failed"], created_at_ms=at, updated_at_ms=at),
            Webhook(id=other, app_id=app_id, url="https://hooks.example.com/messages", secret="s" * 20,
                    event_types=["message.final"], created_at_ms=at, updated_at_ms=at),
        ])
    settings = Settings(kafka_bootstrap=broker.bootstrap, database_url=database_url, job_timeout_s=HOUR_MS / 1000)
    producer = create_producer(settings)
    await producer.start()
    try:
        monitor = JobMonitor(settings, db_sessions, producer)
        await monitor.check()
        await monitor.check()  # nothing changes the second time: nothing more is queued
    finally:
        await producer.stop()

    async with db_sessions() as session:
        rows = list(await session.scalars(select(WebhookDelivery).where(WebhookDelivery.app_id == app_id)))
        statuses = {job.id: job.status for job in await session.scalars(
            select(Job).where(Job.id.in_([completed.id, failed.id])))}
    assert statuses == {completed.id: "completed", failed.id: "failed"}
    assert {row.webhook_id for row in rows} == {subscribed}
    bodies = {row.event_type: json.loads(row.body) for row in rows}
    assert sorted(bodies) == ["job.completed", "job.failed"] and len(rows) == 2
    assert bodies["job.completed"]["data"] == {"jobId": completed.id, "status": "completed",
                                               "conversationId": completed.conversation_id}
    assert bodies["job.completed"]["conversationId"] == completed.conversation_id
    assert bodies["job.failed"]["data"]["jobId"] == failed.id
    assert bodies["job.failed"]["data"]["error"].startswith("not transcribed within")
    assert all(row.status == "pending" and row.attempts == 0 for row in rows)
