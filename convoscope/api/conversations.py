"""The rest of the Conversation API (symbl-api.md §4): analytics, summary, formatted transcript, metadata,
members, speaker events and delete.

GET    /v1/conversations/{id}/analytics         talk time, listen time, silence, overlap, pace (Symbl's shape)
GET    /v1/conversations/{id}/summary           ``?refresh=true``; extractive, or abstractive via CONVOSCOPE_LLM_URL
POST   /v1/conversations/{id}/transcript        text/markdown or text/srt
PUT    /v1/conversations/{id}                   ``{"metadata": {...}}`` (only metadata is mutable)
DELETE /v1/conversations/{id}                   every row of the conversation, and tombstones in compacted topics
PUT    /v1/conversations/{id}/members/{member}  ``{"id", "name", "email"}``
PUT    /v1/conversations/{id}/speakers          ``{"speakerEvents": [...]}``: messages to the speaker talking then
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from aiokafka.errors import KafkaError
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from convoscope.api.routes import ApiError, _flag, _json_errors, _members, _owned_conversation, _sessions, authenticate
from convoscope.api.transcript_format import TranscriptLine, markdown_transcript, srt_transcript
from convoscope.db.engine import dialect_insert
from convoscope.db.models import Base, Conversation, Insight, Member, Message
from convoscope.ids import member_id
from processors.analytics.report import analytics_json
from processors.analytics.stored import StoredMember, StoredMessage, conversation_analytics
from schemas.topics import ALL_TOPICS
from sinks.store.summaries import current_summary, display_name, refresh_summary, summary_json

__all__ = ["compacted_topic_names", "conversation_routes", "speaker_intervals"]

log = logging.getLogger(__name__)

MAX_METADATA_BYTES = 64 * 1024
MAX_SPEAKER_EVENTS = 10_000
MAX_MEMBER_ID_CHARS = 36
MAX_TEXT_CHARS = 1000
TRANSCRIPT_TYPES = ("text/markdown", "text/srt")
SPEAKER_EVENT_TYPES = ("started_speaking", "stopped_speaking")


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "Request body must be a JSON object.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object.")
    return body


async def _messages(session: AsyncSession, conversation_id: str) -> list[Message]:
    rows = await session.scalars(
        select(Message)
        .where(Message.conversation_id == conversation_id)
        .order_by(Message.start_ms, Message.time_offset_s, Message.id)
    )
    return list(rows)


# --- analytics ------------------------------------------------------------------------------------


@_json_errors
async def get_analytics(request: Request) -> Response:
    """GET /v1/conversations/{id}/analytics, computed from the stored messages' word timings."""
    app_id = authenticate(request)
    async with _sessions(request)() as session:
        conversation = await _owned_conversation(session, app_id, request.path_params["conversation_id"])
        members = await _members(session, conversation.id)
        messages = await _messages(session, conversation.id)
    analytics = conversation_analytics(
        [StoredMember(m.id, m.name, m.user_id) for m in members],
        [StoredMessage(m.member_id, m.time_offset_s, m.duration_s, m.words or [], m.text) for m in messages],
    )
    return JSONResponse(analytics_json(analytics))


# --- summary --------------------------------------------------------------------------------------


@_json_errors
async def get_summary(request: Request) -> Response:
    """GET /v1/conversations/{id}/summary: the stored summary while it covers every message (the store worker
    makes one when the conversation completes); computed and stored when there is none, when messages arrived
    since, or with ``refresh=true``."""
    app_id = authenticate(request)
    sessions = _sessions(request)
    async with sessions() as session:
        conversation = await _owned_conversation(session, app_id, request.path_params["conversation_id"])
        stored = None if _flag(request, "refresh") else await current_summary(session, conversation.id)
    if stored is None:
        stored = await refresh_summary(sessions, request.app.state.settings, conversation.id, app_id)
    return JSONResponse(summary_json(stored))


# --- formatted transcript -------------------------------------------------------------------------


def _bool_option(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise ApiError(400, f"{name} must be a boolean.")
    return value


@_json_errors
async def post_transcript(request: Request) -> Response:
    """POST /v1/conversations/{id}/transcript ``{contentType, createParagraphs, showSpeakerSeparation, phrases}``
    -> ``{"transcript": {"payload": "...", "contentType": ...}}``."""
    app_id = authenticate(request)
    body = await _json_object(request)
    content_type = body.get("contentType", "text/markdown")
    if content_type not in TRANSCRIPT_TYPES:
        raise ApiError(400, f"contentType must be one of {', '.join(TRANSCRIPT_TYPES)}.")
    speakers = _bool_option(body, "showSpeakerSeparation", True)
    paragraphs = _bool_option(body, "createParagraphs", True)
    phrases = body.get("phrases") or {}
    if not isinstance(phrases, dict):
        raise ApiError(400, "phrases must be an object.")
    highlight = any(_bool_option(phrases, key, False) for key in ("highlightOnlyInsightKeyPhrases",
                                                                   "highlightAllKeyPhrases"))
    async with _sessions(request)() as session:
        conversation = await _owned_conversation(session, app_id, request.path_params["conversation_id"])
        members = {m.id: m for m in await _members(session, conversation.id)}
        messages = await _messages(session, conversation.id)
        marks: dict[str, list[str]] = defaultdict(list)
        if highlight:
            for message_id, text in await session.execute(
                select(Insight.message_id, Insight.text).where(Insight.conversation_id == conversation.id)
            ):
                marks[message_id].append(text)
    lines = [
        TranscriptLine(
            speaker=display_name(members.get(m.member_id)),
            text=m.text,
            start_s=m.time_offset_s,
            end_s=m.time_offset_s + m.duration_s,
            words=[
                (w["word"], float(w["time_offset_s"]),
                 float(w["time_offset_s"]) + (int(w["end_ms"]) - int(w["start_ms"])) / 1000)
                for w in m.words or []
            ],
            highlights=marks.get(m.id, ()),
        )
        for m in messages
    ]
    if content_type == "text/srt":
        payload = srt_transcript(lines, speakers=speakers)
    else:
        payload = markdown_transcript(lines, speakers=speakers, paragraphs=paragraphs)
    return JSONResponse({"transcript": {"payload": payload, "contentType": content_type}})


# --- metadata, members, speakers ------------------------------------------------------------------


@_json_errors
async def put_conversation(request: Request) -> Response:
    """PUT /v1/conversations/{id} ``{"metadata": {...}}`` replaces the metadata -> ``{"id", "metadata"}``."""
    app_id = authenticate(request)
    body = await _json_object(request)
    metadata = body.get("metadata")
    if not isinstance(metadata, dict):
        raise ApiError(400, "metadata must be a JSON object (only metadata can be updated).")
    if len(json.dumps(metadata)) > MAX_METADATA_BYTES:
        raise ApiError(400, f"metadata must be at most {MAX_METADATA_BYTES} bytes of JSON.")
    async with _sessions(request).begin() as session:
        conversation = await _owned_conversation(session, app_id, request.path_params["conversation_id"])
        conversation.metadata_ = metadata
    return JSONResponse({"id": conversation.id, "metadata": metadata})


def _optional_text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and (not isinstance(value, str) or "\x00" in value or len(value) > MAX_TEXT_CHARS):
        raise ApiError(400, f"{name} must be a string of at most {MAX_TEXT_CHARS} characters, without NUL.")
    return value or None


@_json_errors
async def put_member(request: Request) -> Response:
    """PUT /v1/conversations/{id}/members/{member_id} ``{"id", "name", "email"}``: rename a member."""
    app_id = authenticate(request)
    body = await _json_object(request)
    member_id_ = request.path_params["member_id"]
    if body.get("id") not in (None, member_id_):
        raise ApiError(400, "id in the body must match the member id in the path.")
    name, email = _optional_text(body, "name"), _optional_text(body, "email")
    if name is None and email is None:
        raise ApiError(400, "name or email is required.")
    async with _sessions(request).begin() as session:
        conversation = await _owned_conversation(session, app_id, request.path_params["conversation_id"])
        member = await session.get(Member, (conversation.id, member_id_))
        if member is None:
            raise ApiError(404, f"Member with id: {member_id_} does not exist in the conversation.")
        member.name = name or member.name
        member.user_id = email or member.user_id
        await session.execute(
            update(Insight)
            .where(Insight.conversation_id == conversation.id, Insight.from_member_id == member.id)
            .values(from_name=member.name, from_user_id=member.user_id)
        )
    return JSONResponse({
        "message": f"Member with id: {member_id_} for conversationId: {conversation.id} updated successfully! "
                   "The update should be reflected in all messages and insights along with this conversation"
    })


@dataclass(frozen=True)
class _Speaker:
    id: str
    name: str | None
    email: str | None


def _event_seconds(offset: Any) -> float:
    if not isinstance(offset, dict):
        raise ApiError(400, "each speaker event needs offset {seconds, nanos}.")
    try:
        return float(offset.get("seconds") or 0) + float(offset.get("nanos") or 0) / 1e9
    except (TypeError, ValueError):
        raise ApiError(400, "offset seconds and nanos must be numbers.") from None


def _event_speaker(conversation_id: str, user: Any) -> _Speaker:
    if not isinstance(user, dict):
        raise ApiError(400, "each speaker event needs a user object.")
    name, email = _optional_text(user, "name"), _optional_text(user, "email") or _optional_text(user, "userId")
    given = _optional_text(user, "id")
    if not (given or name or email):
        raise ApiError(400, "a speaker event's user needs an id, name or email.")
    if given and len(given) <= MAX_MEMBER_ID_CHARS:
        return _Speaker(given, name, email)
    return _Speaker(member_id(conversation_id, email or given, name, ""), name, email)


def speaker_intervals(conversation_id: str, events: Any) -> dict[_Speaker, list[tuple[float, float]]]:
    """Who spoke when, from started/stopped events; a start with no stop lasts to the end of the conversation."""
    if not isinstance(events, list) or not events:
        raise ApiError(400, "speakerEvents must be a non-empty list.")
    if len(events) > MAX_SPEAKER_EVENTS:
        raise ApiError(400, f"at most {MAX_SPEAKER_EVENTS} speaker events per request.")
    parsed = []
    for event in events:
        if not isinstance(event, dict) or event.get("type") not in SPEAKER_EVENT_TYPES:
            raise ApiError(400, f"each speaker event needs type {' or '.join(SPEAKER_EVENT_TYPES)}.")
        speaker = _event_speaker(conversation_id, event.get("user"))
        parsed.append((_event_seconds(event.get("offset")), event["type"], speaker))
    parsed.sort(key=lambda e: (e[0], e[1] == "started_speaking"))  # a stop and a start at once: stop first
    speakers: dict[str, _Speaker] = {}
    started: dict[str, float] = {}
    intervals: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for at_s, kind, speaker in parsed:
        known = speakers.setdefault(speaker.id, speaker)
        speakers[speaker.id] = _Speaker(speaker.id, speaker.name or known.name, speaker.email or known.email)
        if kind == "started_speaking":
            started.setdefault(speaker.id, at_s)
        elif speaker.id in started:
            intervals[speaker.id].append((started.pop(speaker.id), at_s))
    for speaker_id, at_s in started.items():
        intervals[speaker_id].append((at_s, float("inf")))
    return {speakers[speaker_id]: spans for speaker_id, spans in intervals.items()}


def _best_speaker(start_s: float, end_s: float, intervals: dict[_Speaker, list[tuple[float, float]]]
                  ) -> _Speaker | None:
    best, best_overlap = None, 0.0
    for speaker, spans in intervals.items():
        overlap = sum(max(0.0, min(end_s, b) - max(start_s, a)) for a, b in spans)
        if start_s == end_s and any(a <= start_s < b for a, b in spans):
            overlap = max(overlap, 1e-9)
        if overlap > best_overlap:
            best, best_overlap = speaker, overlap
    return best


@_json_errors
async def put_speakers(request: Request) -> Response:
    """PUT /v1/conversations/{id}/speakers ``{"speakerEvents": [...]}``: each message goes to the speaker whose
    started/stopped interval covers most of it. Speakers become members (an existing member id renames it); a
    member left with no messages by this is removed, so speaker events also merge speakers."""
    app_id = authenticate(request)
    body = await _json_object(request)
    conversation_id = request.path_params["conversation_id"]
    intervals = speaker_intervals(conversation_id, body.get("speakerEvents"))
    async with _sessions(request).begin() as session:
        conversation = await _owned_conversation(session, app_id, conversation_id)
        messages = await _messages(session, conversation.id)
        before = {m.member_id for m in messages}
        moved: dict[str, _Speaker] = {}
        for message in messages:
            speaker = _best_speaker(message.time_offset_s, message.time_offset_s + message.duration_s, intervals)
            if speaker is not None:
                moved[message.id] = speaker
                message.member_id = speaker.id
        for speaker in intervals:
            insert = dialect_insert(session, Member.__table__).values(
                conversation_id=conversation.id, id=speaker.id, name=speaker.name, user_id=speaker.email
            )
            await session.execute(
                insert.on_conflict_do_update(
                    index_elements=["conversation_id", "id"],
                    set_={
                        "name": func.coalesce(insert.excluded.name, Member.__table__.c.name),
                        "user_id": func.coalesce(insert.excluded.user_id, Member.__table__.c.user_id),
                    },
                )
            )
        await session.flush()
        after = {m.member_id for m in messages}
        emptied = before - after - {s.id for s in intervals}
        if emptied:
            await session.execute(
                delete(Member).where(Member.conversation_id == conversation.id, Member.id.in_(emptied))
            )
        for message_id, speaker in moved.items():
            member = await session.get(Member, (conversation.id, speaker.id))
            await session.execute(
                update(Insight)
                .where(Insight.message_id == message_id)
                .values(from_member_id=speaker.id, from_name=member.name if member else speaker.name,
                        from_user_id=member.user_id if member else speaker.email)
            )
    return JSONResponse({
        "message": f"Speaker events associated for conversationId: {conversation.id} successfully! "
                   "The update should be reflected in all messages and insights along with this conversation"
    })


# --- delete ---------------------------------------------------------------------------------------


def compacted_topic_names() -> list[str]:
    """Topics keyed by conversation whose latest record per key is state: a delete leaves a tombstone there."""
    return [topic.name for topic in ALL_TOPICS if topic.compacted]


async def _tombstone(request: Request, conversation_id: str) -> None:
    services = getattr(request.app.state, "services", None)
    if services is None:  # an API without Kafka (tests of the REST layer alone)
        return
    futures = [
        await services.producer.send(topic, None, key=conversation_id.encode()) for topic in compacted_topic_names()
    ]
    for future in futures:
        await future


@_json_errors
async def delete_conversation(request: Request) -> Response:
    """DELETE /v1/conversations/{id}: tombstones first (so a failure leaves everything to retry), then every row
    of every table with a ``conversation_id`` column, and the conversation."""
    app_id = authenticate(request)
    sessions = _sessions(request)
    async with sessions() as session:
        conversation = await _owned_conversation(session, app_id, request.path_params["conversation_id"])
    try:
        await _tombstone(request, conversation.id)
    except KafkaError as exc:
        log.warning("delete of %s: tombstones failed: %s", conversation.id, exc)
        raise ApiError(503, "The conversation could not be deleted now; try again.") from exc
    async with sessions.begin() as session:
        for table in Base.metadata.sorted_tables:
            if "conversation_id" in table.c and table.name != Conversation.__tablename__:
                await session.execute(delete(table).where(table.c.conversation_id == conversation.id))
        await session.execute(delete(Conversation).where(Conversation.id == conversation.id))
    log.info("deleted conversation %s", conversation.id)
    return JSONResponse({"message": "successfully deleted the conversation"})


def conversation_routes() -> list[BaseRoute]:
    conversation = "/v1/conversations/{conversation_id}"
    return [
        Route(conversation, put_conversation, methods=["PUT"]),
        Route(conversation, delete_conversation, methods=["DELETE"]),
        Route(f"{conversation}/analytics", get_analytics, methods=["GET"]),
        Route(f"{conversation}/summary", get_summary, methods=["GET"]),
        Route(f"{conversation}/transcript", post_transcript, methods=["POST"]),
        Route(f"{conversation}/members/{{member_id}}", put_member, methods=["PUT"]),
        Route(f"{conversation}/speakers", put_speakers, methods=["PUT"]),
    ]

