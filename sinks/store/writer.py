"""Records to rows: idempotent upserts, no Kafka. The worker (``sinks.store.worker``) feeds it decoded batches.

Rules (docs/architecture.md, "Delivery guarantees"):
- CONVERSATION_STARTED upserts the conversation (name, start); a final transcript that arrives first creates it
  (start = stream start - stream offset), without overwriting what an event already set.
- CONVERSATION_COMPLETED sets end_ms to the latest completion seen.
- MEMBER_JOINED and every final upsert the speaker as a member.
- An event whose attributes carry ``summary_emails`` (a ``sendSummaryEmail`` action, producers/actions.py) upserts
  the conversation's ``summary_emails`` row, its recipients merged as a set, for the email sink (sinks/email).
- STREAM_TRANSCRIBED records how many finals the stream has in all (the highest count seen), so readers (Async API
  jobs) can tell when every one of them is stored.
- Finals insert a message ON CONFLICT DO NOTHING by message id, and are dropped when their stream already has a
  stored message ending at or after their end (a fragment replayed after a crash).
- The text processors send one record per message and kind (insights, topic phrases, final tracker matches,
  entities): it replaces that message's rows of that kind, so a replay rewrites the same rows.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, delete, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from convoscope.db.engine import dialect_insert
from convoscope.db.models import (
    Conversation,
    Entity,
    Insight,
    Member,
    Message,
    MessageTopicPhrases,
    SummaryEmail,
    TrackerMatch,
    TranscribedStream,
)
from producers.actions import parse_recipients_attribute
from schemas.topics import CONVERSATION_EVENTS, ENTITIES, INSIGHTS, TOPIC_PHRASES, TRACKER_MATCHES, TRANSCRIPTS_FINAL

__all__ = [
    "SAMPLES_PER_MS",
    "SAMPLE_RATE_HZ",
    "StoreRecord",
    "WriteStats",
    "apply_record",
    "message_row",
    "write_batch",
]

SAMPLE_RATE_HZ = 16_000
SAMPLES_PER_MS = SAMPLE_RATE_HZ // 1000
CONVERSATION_TYPE = "meeting"

_conversations = Conversation.__table__
_members = Member.__table__
_messages = Message.__table__


@dataclass(frozen=True, slots=True)
class StoreRecord:
    """A decoded record and where it came from (``topic[partition]@offset``, for logs)."""

    topic: str
    value: dict[str, Any]
    where: str = ""


@dataclass(slots=True)
class WriteStats:
    conversations: int = 0
    members: int = 0
    messages: int = 0
    dropped_replays: int = 0
    ignored: int = 0
    by_type: dict[str, int] = field(default_factory=dict)


def message_row(final: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """The ``messages`` row of a FinalTranscript value. Words get absolute times and conversation offsets."""
    started_ms = int(final["stream_started_at_ms"])
    offset_ms = int(final["stream_offset_ms"])
    start_sample, end_sample = int(final["start_sample"]), int(final["end_sample"])
    words = [
        {
            "word": word["word"],
            "start_ms": started_ms + int(word["start_ms"]),
            "end_ms": started_ms + int(word["end_ms"]),
            "time_offset_s": (offset_ms + int(word["start_ms"])) / 1000,
            "score": round(float(word["confidence"]), 4),
        }
        for word in final.get("words") or []
    ]
    return {
        "id": final["message_id"],
        "conversation_id": final["conversation_id"],
        "app_id": final["app_id"],
        "stream_id": final["stream_id"],
        "member_id": final["speaker"]["id"],
        "text": final["text"],
        "start_ms": started_ms + start_sample // SAMPLES_PER_MS,
        "end_ms": started_ms + end_sample // SAMPLES_PER_MS,
        "time_offset_s": offset_ms / 1000 + start_sample / SAMPLE_RATE_HZ,
        "duration_s": (end_sample - start_sample) / SAMPLE_RATE_HZ,
        "start_sample": start_sample,
        "end_sample": end_sample,
        "utterance_index": int(final["utterance_index"]),
        "confidence": float(final["confidence"]),
        "words": words,
        "language": final.get("language") or "en-US",
        "created_at_ms": now_ms,
    }


async def _upsert_member(session: AsyncSession, conversation_id: str, speaker: dict[str, Any]) -> None:
    insert = dialect_insert(session, _members).values(
        conversation_id=conversation_id, id=speaker["id"], name=speaker.get("name"), user_id=speaker.get("user_id")
    )
    await session.execute(
        insert.on_conflict_do_update(
            index_elements=["conversation_id", "id"],
            set_={
                "name": func.coalesce(insert.excluded.name, _members.c.name),
                "user_id": func.coalesce(insert.excluded.user_id, _members.c.user_id),
            },
        )
    )


def _conversation_values(conversation_id: str, app_id: str, start_ms: int, **extra: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "id": conversation_id,
        "app_id": app_id,
        "name": None,
        "type": CONVERSATION_TYPE,
        "start_ms": start_ms,
        "end_ms": None,
        "metadata": {},
    }
    values.update(extra)
    return values


async def _request_summary_email(session: AsyncSession, event: dict[str, Any], recipients: list[str]) -> None:
    """Insert the row, or add recipients to it. Events are keyed by conversation, so one store worker at a time
    writes a conversation's row: read-modify-write in the batch's transaction is safe. A replay adds nothing."""
    table = SummaryEmail.__table__
    conversation_id, at_ms = event["conversation_id"], int(event["at_ms"])
    await session.execute(dialect_insert(session, table).values(
        conversation_id=conversation_id, app_id=event["app_id"], recipients=[], status="requested", attempts=0,
        requested_at_ms=at_ms, updated_at_ms=at_ms,
    ).on_conflict_do_nothing(index_elements=["conversation_id"]))
    current = list(await session.scalar(select(table.c.recipients).where(table.c.conversation_id == conversation_id))
                   or [])
    known = {email.lower() for email in current}
    added = [email for email in dict.fromkeys(recipients) if email.lower() not in known]
    if added:
        await session.execute(table.update().where(table.c.conversation_id == conversation_id).values(
            recipients=current + added, updated_at_ms=at_ms,
        ))


async def _apply_event(session: AsyncSession, event: dict[str, Any], stats: WriteStats) -> None:
    kind = event["type"]
    conversation_id, app_id, at_ms = event["conversation_id"], event["app_id"], int(event["at_ms"])
    summary_recipients = parse_recipients_attribute(event.get("attributes"))
    if summary_recipients:
        await _request_summary_email(session, event, summary_recipients)
    if kind == "CONVERSATION_STARTED":
        insert = dialect_insert(session, _conversations).values(
            _conversation_values(conversation_id, app_id, at_ms, name=event.get("name"))
        )
        await session.execute(
            insert.on_conflict_do_update(
                index_elements=["id"],
                set_={
                    "name": func.coalesce(insert.excluded.name, _conversations.c.name),
                    "start_ms": insert.excluded.start_ms,
                },
            )
        )
        stats.conversations += 1
    elif kind == "CONVERSATION_COMPLETED":
        insert = dialect_insert(session, _conversations).values(
            _conversation_values(conversation_id, app_id, at_ms, end_ms=at_ms)
        )
        current = _conversations.c.end_ms
        latest = case(
            (current.is_(None), insert.excluded.end_ms),
            (current < insert.excluded.end_ms, insert.excluded.end_ms),
            else_=current,
        )
        await session.execute(insert.on_conflict_do_update(index_elements=["id"], set_={"end_ms": latest}))
        stats.conversations += 1
    elif kind == "MEMBER_JOINED" and event.get("member"):
        await _upsert_member(session, conversation_id, event["member"])
        stats.members += 1
    elif kind == "STREAM_TRANSCRIBED" and event.get("stream_id"):
        await _upsert_transcribed_stream(session, event)
    elif kind == "CALL_STATUS":
        await _apply_call_status(session, event)
    else:
        stats.ignored += 1


async def _apply_call_status(session: AsyncSession, event: dict[str, Any]) -> None:
    """A telephone call's latest status (producers/sip/status.py) goes to the conversation's metadata.telephony,
    where the Conversation API shows it."""
    attributes = event.get("attributes") or {}
    telephony = {key: value for key, value in {
        "status": attributes.get("call_status"),
        "sipCode": int(attributes["sip_code"]) if attributes.get("sip_code", "").isdigit() else None,
        "reason": attributes.get("sip_reason"),
        "endedBy": attributes.get("ended_by"),
        "direction": attributes.get("direction"),
        "connectionId": attributes.get("connection_id"),
        "atMs": int(event["at_ms"]),
    }.items() if value}
    conversation_id = event["conversation_id"]
    await session.execute(dialect_insert(session, _conversations).values(
        _conversation_values(conversation_id, event["app_id"], int(event["at_ms"]))
    ).on_conflict_do_nothing(index_elements=["id"]))
    current = await session.scalar(select(_conversations.c.metadata).where(_conversations.c.id == conversation_id))
    await session.execute(_conversations.update().where(_conversations.c.id == conversation_id).values(
        metadata={**(current or {}), "telephony": telephony}
    ))


async def _upsert_transcribed_stream(session: AsyncSession, event: dict[str, Any]) -> None:
    table = TranscribedStream.__table__
    insert = dialect_insert(session, table).values(
        stream_id=event["stream_id"],
        conversation_id=event["conversation_id"],
        final_count=int(event.get("final_count") or 0),
        model=(event.get("attributes") or {}).get("model"),
        transcribed_at_ms=int(event["at_ms"]),
    )
    current = table.c.final_count
    highest = case((current < insert.excluded.final_count, insert.excluded.final_count), else_=current)
    await session.execute(insert.on_conflict_do_update(index_elements=["stream_id"], set_={"final_count": highest}))


async def _apply_final(session: AsyncSession, final: dict[str, Any], now_ms: int, stats: WriteStats) -> None:
    row = message_row(final, now_ms)
    conversation_id = row["conversation_id"]
    start_ms = int(final["stream_started_at_ms"]) - int(final["stream_offset_ms"])
    conversation = dialect_insert(session, _conversations).values(
        _conversation_values(conversation_id, row["app_id"], start_ms)
    )
    await session.execute(conversation.on_conflict_do_nothing(index_elements=["id"]))
    await _upsert_member(session, conversation_id, final["speaker"])
    replayed = await session.scalar(
        select(exists().where(_messages.c.stream_id == row["stream_id"], _messages.c.end_sample >= row["end_sample"]))
    )
    if replayed:
        stats.dropped_replays += 1
        return
    insert = dialect_insert(session, _messages).values(row)
    await session.execute(insert.on_conflict_do_nothing(index_elements=["id"]))
    stats.messages += 1


def insight_rows(record: dict[str, Any], now_ms: int) -> list[dict[str, Any]]:
    message = record["message"]
    speaker = message["speaker"]
    return [
        {
            "id": insight["insight_id"],
            "conversation_id": record["conversation_id"],
            "app_id": record["app_id"],
            "message_id": message["id"],
            "type": insight["type"].lower(),
            "text": insight["text"],
            "confidence": insight["confidence"],
            "char_offset": insight["char_offset"],
            "from_member_id": speaker["id"],
            "from_name": speaker.get("name"),
            "from_user_id": speaker.get("user_id"),
            "assignee_name": insight.get("assignee_name"),
            "assignee_is_speaker": bool(insight.get("assignee_is_speaker")),
            "due_by": insight.get("due_by"),
            "due_text": insight.get("due_text"),
            "message_start_ms": message["start_ms"],
            "created_at_ms": now_ms,
        }
        for insight in record["insights"]
    ]


def topic_phrases_row(record: dict[str, Any], now_ms: int) -> dict[str, Any]:
    message = record["message"]
    return {
        "message_id": message["id"],
        "conversation_id": record["conversation_id"],
        "app_id": record["app_id"],
        "message_start_ms": message["start_ms"],
        "sentiment": record["sentiment"],
        "phrases": record["phrases"],
        "created_at_ms": now_ms,
    }


def tracker_match_rows(record: dict[str, Any], now_ms: int) -> list[dict[str, Any]]:
    message = record["message"]
    return [
        {
            "id": match["match_id"],
            "conversation_id": record["conversation_id"],
            "app_id": record["app_id"],
            "message_id": message["id"],
            "message_text": message["text"],
            "message_start_ms": message["start_ms"],
            "message_end_ms": message["end_ms"],
            "tracker_id": match["tracker_id"],
            "tracker_name": match["tracker_name"],
            "vocabulary": match["vocabulary"],
            "mode": match["mode"].lower(),
            "matched_text": match["matched_text"],
            "offset": match["offset"],
            "score": match["score"],
            "created_at_ms": now_ms,
        }
        for match in record["matches"]
    ]


def entity_rows(record: dict[str, Any], now_ms: int) -> list[dict[str, Any]]:
    message = record["message"]
    return [
        {
            "id": entity["entity_id"],
            "conversation_id": record["conversation_id"],
            "app_id": record["app_id"],
            "message_id": message["id"],
            "message_text": message["text"],
            "message_start_ms": message["start_ms"],
            "type": entity["type"],
            "sub_type": entity.get("sub_type"),
            "category": entity["category"],
            "value": entity["value"],
            "text": entity["text"],
            "offset": entity["offset"],
            "created_at_ms": now_ms,
        }
        for entity in record["entities"]
    ]


async def _replace_message_rows(session: AsyncSession, model: Any, message_id: str, rows: list[dict[str, Any]]
                                ) -> None:
    table = model.__table__
    await session.execute(delete(table).where(table.c.message_id == message_id))
    if rows:
        await session.execute(dialect_insert(session, table).values(rows))


async def _apply_text_result(session: AsyncSession, record: StoreRecord, now_ms: int, stats: WriteStats) -> None:
    value = record.value
    message_id = value["message"]["id"]
    if record.topic == INSIGHTS.name:
        await _replace_message_rows(session, Insight, message_id, insight_rows(value, now_ms))
    elif record.topic == TOPIC_PHRASES.name:
        await _replace_message_rows(session, MessageTopicPhrases, message_id, [topic_phrases_row(value, now_ms)])
    elif record.topic == TRACKER_MATCHES.name:
        if not value["is_final"]:
            stats.ignored += 1  # interim matches are for live clients only
            return
        await _replace_message_rows(session, TrackerMatch, message_id, tracker_match_rows(value, now_ms))
    else:
        await _replace_message_rows(session, Entity, message_id, entity_rows(value, now_ms))
    kind = record.topic.split(".")[1].upper()
    stats.by_type[kind] = stats.by_type.get(kind, 0) + 1


TEXT_RESULT_TOPICS = frozenset({INSIGHTS.name, TOPIC_PHRASES.name, TRACKER_MATCHES.name, ENTITIES.name})


async def apply_record(session: AsyncSession, record: StoreRecord, now_ms: int, stats: WriteStats) -> None:
    """Apply one record inside the caller's transaction."""
    if record.topic in TEXT_RESULT_TOPICS:
        await _apply_text_result(session, record, now_ms, stats)
    elif record.topic == CONVERSATION_EVENTS.name:
        kind = str(record.value.get("type"))
        stats.by_type[kind] = stats.by_type.get(kind, 0) + 1
        await _apply_event(session, record.value, stats)
    elif record.topic == TRANSCRIPTS_FINAL.name:
        stats.by_type["FINAL"] = stats.by_type.get("FINAL", 0) + 1
        await _apply_final(session, record.value, now_ms, stats)
    else:
        stats.ignored += 1


async def write_batch(
    sessions: async_sessionmaker[AsyncSession],
    records: Sequence[StoreRecord] | Iterable[StoreRecord],
    now_ms: int | None = None,
) -> WriteStats:
    """Apply records in order in one transaction: all of them or none."""
    now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    stats = WriteStats()
    async with sessions.begin() as session:
        for record in records:
            await apply_record(session, record, now_ms, stats)
    return stats
