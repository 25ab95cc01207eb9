"""Async API jobs in the database, and how far their transcription is.

A job's status follows from what the store holds (``derive_status`` is pure): ``scheduled`` while none of its
streams has a transcript stored, ``in_progress`` once one has, ``completed`` when the transcriber announced every
stream finished (STREAM_TRANSCRIBED, kept in ``transcribed_streams`` with its final count) and the last final of
each is stored. Status changes are compare-and-set updates, so with several gateways exactly one of them reports
each change.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from convoscope.db.models import Conversation, Job, Message, TranscribedStream

__all__ = [
    "OPEN_STATUSES",
    "JobStatus",
    "StreamProgress",
    "count_open_jobs",
    "derive_status",
    "new_job_id",
    "stream_progress",
    "timeline_end_ms",
    "transition",
]


class JobStatus(StrEnum):
    SCHEDULED = "scheduled"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"


OPEN_STATUSES = (JobStatus.SCHEDULED.value, JobStatus.IN_PROGRESS.value)


@dataclass(frozen=True)
class StreamProgress:
    stored_messages: int = 0
    last_index: int = -1
    """Highest utterance index stored; finals of a stream are stored in order, so all before it are too."""
    stored_until_sample: int = 0
    final_count: int | None = None
    """From STREAM_TRANSCRIBED; None while the transcriber is still at it."""

    @property
    def complete(self) -> bool:
        return self.final_count is not None and self.last_index + 1 >= self.final_count


def new_job_id() -> str:
    return str(uuid.uuid4())


def derive_status(stream_ids: Sequence[str], progress: Mapping[str, StreamProgress]) -> JobStatus:
    streams = [progress.get(stream_id, StreamProgress()) for stream_id in stream_ids]
    if streams and all(stream.complete for stream in streams):
        return JobStatus.COMPLETED
    if any(stream.stored_messages or stream.final_count is not None for stream in streams):
        return JobStatus.IN_PROGRESS
    return JobStatus.SCHEDULED


async def stream_progress(session: AsyncSession, stream_ids: Iterable[str]) -> dict[str, StreamProgress]:
    ids = sorted(set(stream_ids))
    if not ids:
        return {}
    stored = await session.execute(
        select(
            Message.stream_id,
            func.count(),
            func.max(Message.utterance_index),
            func.max(Message.end_sample),
        )
        .where(Message.stream_id.in_(ids))
        .group_by(Message.stream_id)
    )
    counts = {row[0]: (int(row[1]), int(row[2]), int(row[3])) for row in stored}
    rows = await session.execute(
        select(TranscribedStream.stream_id, TranscribedStream.final_count).where(TranscribedStream.stream_id.in_(ids))
    )
    transcribed = {row[0]: int(row[1]) for row in rows}
    progress = {}
    for stream_id in ids:
        messages, last_index, until = counts.get(stream_id, (0, -1, 0))
        progress[stream_id] = StreamProgress(messages, last_index, until, transcribed.get(stream_id))
    return progress


async def count_open_jobs(session: AsyncSession, app_id: str) -> int:
    return int(await session.scalar(
        select(func.count()).select_from(Job).where(Job.app_id == app_id, Job.status.in_(OPEN_STATUSES))
    ) or 0)


async def timeline_end_ms(session: AsyncSession, conversation: Conversation) -> int:
    """Where audio appended to ``conversation`` starts: after its earlier jobs' audio, or its end, or its last
    message (a conversation that began live)."""
    jobs_end = await session.scalar(
        select(func.max(Job.offset_ms + Job.duration_ms)).where(
            Job.conversation_id == conversation.id, Job.status != JobStatus.FAILED.value
        )
    )
    candidates = [int(jobs_end or 0)]
    if conversation.end_ms is not None:
        candidates.append(conversation.end_ms - conversation.start_ms)
    last_message_ms = await session.scalar(
        select(func.max(Message.end_ms)).where(Message.conversation_id == conversation.id)
    )
    if last_message_ms is not None:
        candidates.append(int(last_message_ms) - conversation.start_ms)
    return max(0, *candidates)


async def transition(
    session: AsyncSession, job_id: str, expected: str, status: JobStatus, now_ms: int, **values: Any
) -> bool:
    """Move the job from ``expected`` to ``status``; False if another process changed it first."""
    changes: dict[str, Any] = {"status": status.value, "updated_at_ms": now_ms, **values}
    if status is JobStatus.COMPLETED:
        changes["completed_at_ms"] = now_ms
    result = await session.execute(
        update(Job).where(Job.id == job_id, Job.status == expected).values(**changes)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
