"""The job monitor: runs in every gateway, moves open jobs along as their transcripts reach the store.

Every ``interval_s`` it reads the open jobs and the progress of their streams (one query each), and for each
status change: on completion first announces CONVERSATION_COMPLETED (idempotent: its event id is derived from
the job), then compare-and-sets the status; the gateway whose update wins calls the job's webhook with
``{"jobId", "status"}`` (``scheduled`` is sent by the gateway that accepted the job). Webhooks are at most once
per change: three attempts, then a warning in the log. Webhooks registered through ``/v1/manage/webhooks`` for
``job.completed``/``job.failed`` get theirs queued in the outbox in the transaction of the status change, and sent
by the webhook sink with its retries and signature.
"""

from __future__ import annotations

import asyncio
import logging
from itertools import chain
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from convoscope.db.models import Conversation, Job
from convoscope.egress import BlockedDestination, guarded_transport, parse_networks
from convoscope.settings import Settings
from convoscope.timestamps import now_ms
from producers.recorded.jobs import OPEN_STATUSES, JobStatus, derive_status, stream_progress, transition
from producers.recorded.publish import conversation_event
from producers.websocket.publisher import AudioPublisher, PublishError
from sinks.webhooks.logic import job_event
from sinks.webhooks.outbox import queue_events

__all__ = ["JobMonitor"]

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 0.5
MAX_JOBS_PER_CHECK = 1_000
WEBHOOK_RETRY_DELAYS_S = (0.0, 1.0, 5.0)

JOB_TRANSITIONS = Counter("convoscope_jobs_transitions_total", "Async API job status changes", ["status"])
WEBHOOKS = Counter("convoscope_jobs_webhooks_total", "Async API webhook calls", ["outcome"])


class JobMonitor:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        producer: AIOKafkaProducer,
        *,
        interval_s: float = CHECK_INTERVAL_S,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._publisher = AudioPublisher(producer)
        self._interval_s = interval_s
        self._http: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        # webhookUrl is the client's choice: connections are checked against CONVOSCOPE_OUTBOUND_BLOCKED_NETWORKS.
        transport = guarded_transport(parse_networks(self._settings.outbound_blocked_networks))
        self._http = httpx.AsyncClient(timeout=self._settings.webhook_timeout_s, transport=transport)
        self._task = asyncio.create_task(self._run(), name="job-monitor")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._deliveries) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except (SQLAlchemyError, OSError) as exc:
                log.warning("job monitor: database unavailable, retrying: %s", exc)
            await asyncio.sleep(self._interval_s)

    async def check(self) -> None:
        """One pass over the open jobs."""
        now = now_ms()
        async with self._sessions() as session:
            jobs = list(await session.scalars(
                select(Job).where(Job.status.in_(OPEN_STATUSES)).order_by(Job.created_at_ms).limit(MAX_JOBS_PER_CHECK)
            ))
            if not jobs:
                return
            progress = await stream_progress(session, chain.from_iterable(job.stream_ids for job in jobs))
        timeout_ms = self._settings.job_timeout_s * 1000
        for job in jobs:
            status = derive_status(job.stream_ids, progress)
            error = None
            if status is not JobStatus.COMPLETED and now - job.created_at_ms > timeout_ms:
                status = JobStatus.FAILED
                error = f"not transcribed within {self._settings.job_timeout_s:.0f} s"
            if status.value == job.status:
                continue
            if status is JobStatus.COMPLETED:
                try:
                    await self._announce_completed(job)
                except PublishError as exc:
                    log.warning("job %s: completion not announced yet: %s", job.id, exc)
                    continue
            async with self._sessions.begin() as session:
                changed_at = now_ms()
                won = await transition(session, job.id, job.status, status, changed_at, error=error)
                if won and status is JobStatus.COMPLETED and job.source_conversation_id:
                    await _link_version(session, job)
                if won:
                    # In the same transaction as the status change: the registered webhooks' job.completed /
                    # job.failed deliveries are queued exactly when the change is stored (the webhook sink sends).
                    await _queue_job_webhooks(session, job, status, changed_at, error)
            if won:
                JOB_TRANSITIONS.labels(status.value).inc()
                log.info("job %s of conversation %s: %s", job.id, job.conversation_id, status.value)
                self.notify(job.id, job.webhook_url, status)

    async def _announce_completed(self, job: Job) -> None:
        async with self._sessions() as session:
            started_ms = await session.scalar(
                select(Conversation.start_ms).where(Conversation.id == job.conversation_id)
            )
        end_ms = (started_ms if started_ms is not None else job.created_at_ms) + job.offset_ms + job.duration_ms
        await self._publisher.event(conversation_event(
            job.app_id, job.conversation_id, "CONVERSATION_COMPLETED", end_ms, subject=f"job/{job.id}",
            attributes={"job_id": job.id},
        ))

    def notify(self, job_id: str, webhook_url: str | None, status: JobStatus) -> None:
        """Call the job's webhook (if any) in the background."""
        if not webhook_url:
            return
        task = asyncio.create_task(self._deliver(webhook_url, {"jobId": job_id, "status": status.value}))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, url: str, body: dict[str, Any]) -> None:
        assert self._http is not None
        reason = ""
        for delay in WEBHOOK_RETRY_DELAYS_S:
            await asyncio.sleep(delay)
            try:
                response = await self._http.post(url, json=body)
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}"
                continue
            except BlockedDestination as exc:
                reason = f"not sent: {exc}"  # retrying cannot help
                break
            if response.is_success:
                WEBHOOKS.labels("delivered").inc()
                return
            reason = f"HTTP {response.status_code}"
        WEBHOOKS.labels("failed").inc()
        log.warning("webhook for job %s (%s) not delivered: %s", body["jobId"], body["status"], reason)


async def _queue_job_webhooks(session: AsyncSession, job: Job, status: JobStatus, at_ms: int,
                              error: str | None) -> None:
    event = job_event(job.app_id, job.conversation_id, job.id, status.value, at_ms, error)
    if event is not None:
        await queue_events(session, [event], at_ms)


async def _link_version(session: AsyncSession, job: Job) -> None:
    """A reprocessing job completed: the original conversation now points at its newest version."""
    original = await session.scalar(select(Conversation).where(Conversation.id == job.source_conversation_id))
    if original is not None:
        original.metadata_ = {**(original.metadata_ or {}), "reprocessedAs": job.conversation_id}
