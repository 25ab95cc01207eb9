"""Job progress read from what the store sink wrote (SQLite and PostgreSQL): a job completes only once the
transcriber finished every stream and the store holds each stream's last final."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from convoscope.db.models import Conversation, Job
from producers.recorded.jobs import JobStatus, derive_status, stream_progress, timeline_end_ms, transition
from schemas.topics import CONVERSATION_EVENTS, TRANSCRIPTS_FINAL
from sinks.store.writer import StoreRecord, write_batch
from tests.store.records import event, final, speaker

START_MS = 1_700_000_000_000


async def test_a_job_completes_when_every_final_of_every_stream_is_stored(
    db_sessions: async_sessionmaker[AsyncSession],
) -> None:
    app_id, conversation_id = uuid.uuid4().hex, str(1_900_000_000_000_000_000 + uuid.uuid4().int % 10**17)
    left, right = uuid.uuid4().hex, uuid.uuid4().hex
    alice, bob = speaker(conversation_id, "Alice"), speaker(conversation_id, "Bob")
    finals = [
        final(conversation_id, app_id, left, alice, 0, 8_000, 40_000, "Can you finish the tests?", START_MS),
        final(conversation_id, app_id, right, bob, 0, 48_000, 80_000, "Yes, by Thursday.", START_MS),
        final(conversation_id, app_id, right, bob, 1, 96_000, 120_000, "I will send the report.", START_MS),
    ]

    async def store(*records: StoreRecord) -> None:
        await write_batch(db_sessions, records)

    async def status() -> JobStatus:
        async with db_sessions() as session:
            return derive_status([left, right], await stream_progress(session, [left, right]))

    assert await status() is JobStatus.SCHEDULED
    await store(StoreRecord(TRANSCRIPTS_FINAL.name, finals[0]))
    assert await status() is JobStatus.IN_PROGRESS
    # The transcriber is done (events may overtake the finals topic), but the store lacks Bob's last final.
    await store(
        StoreRecord(CONVERSATION_EVENTS.name, event("STREAM_TRANSCRIBED", conversation_id, app_id, START_MS,
                                                     stream_id=left, final_count=1)),
        StoreRecord(CONVERSATION_EVENTS.name, event("STREAM_TRANSCRIBED", conversation_id, app_id, START_MS,
                                                     stream_id=right, final_count=2)),
        StoreRecord(TRANSCRIPTS_FINAL.name, finals[1]),
    )
    assert await status() is JobStatus.IN_PROGRESS
    await store(StoreRecord(TRANSCRIPTS_FINAL.name, finals[2]))
    assert await status() is JobStatus.COMPLETED
    async with db_sessions() as session:
        progress = await stream_progress(session, [left, right])
    assert progress[right].stored_messages == 2 and progress[right].stored_until_sample == 120_000

    # A replayed STREAM_TRANSCRIBED with a stale count does not lower it.
    await store(StoreRecord(CONVERSATION_EVENTS.name, event("STREAM_TRANSCRIBED", conversation_id, app_id,
                                                            START_MS + 1, stream_id=right, final_count=1)))
    async with db_sessions() as session:
        assert (await stream_progress(session, [right]))[right].final_count == 2


async def test_status_changes_are_compare_and_set_and_appends_follow_earlier_audio(
    db_sessions: async_sessionmaker[AsyncSession],
) -> None:
    app_id, conversation_id, job_id = uuid.uuid4().hex, str(1_800_000_000_000_000_000 + uuid.uuid4().int % 10**17), \
        str(uuid.uuid4())
    async with db_sessions.begin() as session:
        session.add(Conversation(id=conversation_id, app_id=app_id, name=None, type="meeting", start_ms=START_MS,
                                 end_ms=None, metadata_={}))
        session.add(Job(id=job_id, app_id=app_id, conversation_id=conversation_id, kind="audio",
                        status=JobStatus.SCHEDULED.value, stream_ids=["s"], offset_ms=0, duration_ms=7_500,
                        options={}, created_at_ms=START_MS, updated_at_ms=START_MS))
    async with db_sessions.begin() as session:
        assert await transition(session, job_id, "scheduled", JobStatus.IN_PROGRESS, START_MS + 1)
    async with db_sessions.begin() as session:
        assert not await transition(session, job_id, "scheduled", JobStatus.COMPLETED, START_MS + 2), \
            "another gateway already moved it"
        assert await transition(session, job_id, "in_progress", JobStatus.COMPLETED, START_MS + 3)
    async with db_sessions() as session:
        job = await session.get(Job, job_id)
        assert job is not None and job.status == "completed" and job.completed_at_ms == START_MS + 3
        conversation = await session.get(Conversation, conversation_id)
        assert conversation is not None
        assert await timeline_end_ms(session, conversation) == 7_500
