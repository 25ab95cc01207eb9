"""The store writer on both databases: records to rows, idempotency and replayed fragments (no Kafka)."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from convoscope.db import Conversation, Member, Message
from schemas.topics import CONVERSATION_EVENTS, TRANSCRIPTS_FINAL
from sinks.store import StoreRecord, message_row, write_batch, write_with_retry
from tests.store.records import event, final, speaker

START_MS = 1_700_000_000_000


def _ev(value: dict) -> StoreRecord:
    return StoreRecord(CONVERSATION_EVENTS.name, value)


def _fin(value: dict) -> StoreRecord:
    return StoreRecord(TRANSCRIPTS_FINAL.name, value)


def _ids() -> tuple[str, str, str]:
    return str(uuid.uuid4().int)[:18], uuid.uuid4().hex * 2, uuid.uuid4().hex


def test_message_row_timing() -> None:
    who = speaker("c", "Ann")
    value = final("c", "a", "s", who, 3, 32_000, 56_000, "hello there", START_MS, offset_ms=1_500)
    row = message_row(value, now_ms=1)
    assert row["start_ms"] == START_MS + 2_000 and row["end_ms"] == START_MS + 3_500
    assert row["time_offset_s"] == pytest.approx(3.5)
    assert row["duration_s"] == pytest.approx(1.5)
    assert row["member_id"] == who["id"] and row["utterance_index"] == 3
    assert row["words"][0] == {
        "word": "hello",
        "start_ms": START_MS + 2_000,
        "end_ms": START_MS + 2_750,
        "time_offset_s": pytest.approx(3.5),
        "score": 0.9,
    }


async def test_events_and_finals(db_sessions: async_sessionmaker[AsyncSession]) -> None:
    conversation_id, app_id, stream = _ids()
    ann = speaker(conversation_id, "Ann", "ann@example.com")
    records = [
        _ev(event("CONVERSATION_STARTED", conversation_id, app_id, START_MS, name="Planning")),
        _ev(event("MEMBER_JOINED", conversation_id, app_id, START_MS + 5, member=ann, stream_id=stream)),
        _ev(event("STREAM_STARTED", conversation_id, app_id, START_MS + 5, stream_id=stream)),
        _fin(final(conversation_id, app_id, stream, ann, 0, 0, 16_000, "one two", START_MS)),
        _fin(final(conversation_id, app_id, stream, ann, 1, 20_000, 40_000, "three", START_MS)),
        _ev(event("CONVERSATION_COMPLETED", conversation_id, app_id, START_MS + 9_000)),
        _ev(event("CONVERSATION_COMPLETED", conversation_id, app_id, START_MS + 8_000)),  # older: ignored
    ]
    stats = await write_batch(db_sessions, records)
    assert stats.messages == 2 and stats.dropped_replays == 0
    async with db_sessions() as session:
        conversation = await session.get(Conversation, conversation_id)
        assert conversation is not None
        assert (conversation.name, conversation.start_ms, conversation.end_ms) == (
            "Planning",
            START_MS,
            START_MS + 9_000,
        )
        assert conversation.app_id == app_id and conversation.type == "meeting"
        members = list(await session.scalars(select(Member).where(Member.conversation_id == conversation_id)))
        assert [(m.id, m.name, m.user_id) for m in members] == [(ann["id"], "Ann", "ann@example.com")]

    # the same records again change nothing
    again = await write_batch(db_sessions, records)
    assert again.messages == 0 and again.dropped_replays == 2
    async with db_sessions() as session:
        messages = list(await session.scalars(select(Message).where(Message.conversation_id == conversation_id)))
        assert sorted(m.text for m in messages) == ["one two", "three"]


async def test_final_before_started_and_replayed_fragment(db_sessions: async_sessionmaker[AsyncSession]) -> None:
    conversation_id, app_id, stream = _ids()
    bob = speaker(conversation_id, "Bob", stream_id=stream)
    first = final(conversation_id, app_id, stream, bob, 0, 0, 48_000, "a long first utterance", START_MS + 2_000, 2_000)
    # a fragment of the same audio cut differently after a crash: ends before the stored one
    fragment = final(
        conversation_id, app_id, stream, bob, 0, 16_000, 40_000, "first utterance", START_MS + 2_000, 2_000
    )
    later = final(conversation_id, app_id, stream, bob, 1, 48_000, 64_000, "next", START_MS + 2_000, 2_000)
    await write_batch(db_sessions, [_fin(first)])
    async with db_sessions() as session:
        conversation = await session.get(Conversation, conversation_id)
        assert conversation is not None and conversation.start_ms == START_MS and conversation.name is None
    stats = await write_batch(db_sessions, [_fin(fragment), _fin(later)])
    assert (stats.messages, stats.dropped_replays) == (1, 1)
    await write_batch(
        db_sessions, [_ev(event("CONVERSATION_STARTED", conversation_id, app_id, START_MS + 1, name="Late name"))]
    )
    async with db_sessions() as session:
        conversation = await session.get(Conversation, conversation_id)
        assert conversation is not None and (conversation.name, conversation.start_ms) == ("Late name", START_MS + 1)
        texts = list(
            await session.scalars(
                select(Message.text).where(Message.conversation_id == conversation_id).order_by(Message.start_ms)
            )
        )
        assert texts == ["a long first utterance", "next"]
        member = await session.get(Member, (conversation_id, bob["id"]))
        assert member is not None and member.name == "Bob"


async def test_batch_is_one_transaction(db_sessions: async_sessionmaker[AsyncSession]) -> None:
    conversation_id, app_id, stream = _ids()
    ann = speaker(conversation_id, "Ann")
    good = final(conversation_id, app_id, stream, ann, 0, 0, 16_000, "kept out", START_MS)
    broken = dict(final(conversation_id, app_id, stream, ann, 1, 16_000, 32_000, "x", START_MS), text=None)
    with pytest.raises(Exception):  # noqa: B017 - the database's own NOT NULL error type differs per driver
        await write_batch(db_sessions, [_fin(good), _fin(broken)])
    async with db_sessions() as session:
        assert await session.get(Message, good["message_id"]) is None


async def test_refused_record_is_skipped_and_logged(
    db_sessions: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    conversation_id, app_id, stream = _ids()
    ann = speaker(conversation_id, "Ann")
    good = final(conversation_id, app_id, stream, ann, 0, 0, 16_000, "kept", START_MS)
    broken = dict(final(conversation_id, app_id, stream, ann, 1, 16_000, 32_000, "x", START_MS), text=None)
    records = [
        StoreRecord(TRANSCRIPTS_FINAL.name, good, "convoscope.transcripts.final.v1[3]@41"),
        StoreRecord(TRANSCRIPTS_FINAL.name, broken, "convoscope.transcripts.final.v1[3]@42"),
    ]
    with caplog.at_level(logging.WARNING, logger="sinks.store"):
        assert await write_with_retry(db_sessions, records, asyncio.Event())
    async with db_sessions() as session:
        assert await session.get(Message, good["message_id"]) is not None
        assert await session.get(Message, broken["message_id"]) is None
    assert any("convoscope.transcripts.final.v1[3]@42" in r.getMessage() for r in caplog.records)
