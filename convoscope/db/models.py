"""Tables of the conversation store. Times are epoch milliseconds in BigIntegers, so both SQLite and PostgreSQL
hold them the same way; a message's place on the conversation timeline is kept in seconds as Symbl reports it.

There are no foreign keys on purpose: the store sink applies records in the order the topics deliver them,
and a final transcript may arrive before the event that announces its conversation.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Float, Index, Integer, LargeBinary, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "App",
    "Base",
    "Connection",
    "Conversation",
    "Entity",
    "Insight",
    "Job",
    "LiveStream",
    "Member",
    "Message",
    "MessageTopicPhrases",
    "SigningKey",
    "Summary",
    "SummaryEmail",
    "Tracker",
    "TrackerMatch",
    "TranscribedStream",
    "Webhook",
    "WebhookDelivery",
]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[dict[str, Any]]: JSON, list[str]: JSON}


class App(Base):
    """An API client: app id and secret are what Symbl calls appId and appSecret."""

    __tablename__ = "apps"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    secret_hash: Mapped[str] = mapped_column(String(300))
    created_at_ms: Mapped[int] = mapped_column(BigInteger)


class SigningKey(Base):
    """The JWT signing key generated when CONVOSCOPE_JWT_SECRET is unset; every process reads the same row."""

    __tablename__ = "signing_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)


class Connection(Base):
    """A client-chosen streaming connection id and the conversation its streams currently share."""

    __tablename__ = "connections"

    app_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    connection_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(32))
    conversation_started_at_ms: Mapped[int] = mapped_column(BigInteger)
    open_streams: Mapped[int] = mapped_column(Integer, default=0)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)
    ended_at_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class LiveStream(Base):
    """A stream holding a seat in its connection's conversation, and who answers for it.

    ``state`` is "live" while a gateway replica renews ``due_at_ms`` (its lease); "ending" once a reaper claimed an
    expired lease (``due_at_ms`` bounds the claim); "held" after the stream's END went out, until ``due_at_ms``, the
    end of the start_request's noConnectionTimeout. Deleting the row and decrementing the connection's open streams
    happen in one transaction, so each seat is given up exactly once."""

    __tablename__ = "live_streams"

    stream_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    app_id: Mapped[str] = mapped_column(String(64))
    connection_id: Mapped[str] = mapped_column(String(128))
    conversation_id: Mapped[str] = mapped_column(String(32))
    owner: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16))
    due_at_ms: Mapped[int] = mapped_column(BigInteger)
    hold_ms: Mapped[int] = mapped_column(BigInteger)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    __table_args__ = (
        Index("ix_live_streams_state_due_at_ms", "state", "due_at_ms"),
        Index("ix_live_streams_app_id_connection_id", "app_id", "connection_id"),
    )


class Conversation(Base):
    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    app_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str | None] = mapped_column(Text, nullable=True)
    type: Mapped[str] = mapped_column(String(32), default="meeting")
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)


class Member(Base):
    __tablename__ = "members"

    conversation_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str | None] = mapped_column(Text, nullable=True)
    user_id: Mapped[str | None] = mapped_column(Text, nullable=True)


class Message(Base):
    """One final transcript (one Symbl message). ``words`` holds dicts with ``word``, ``start_ms``/``end_ms``
    (epoch ms), ``time_offset_s`` (conversation timeline) and ``score``."""

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_conversation_id_start_ms", "conversation_id", "start_ms"),
        Index("ix_messages_stream_id_end_sample", "stream_id", "end_sample"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(32))
    app_id: Mapped[str] = mapped_column(String(64))
    stream_id: Mapped[str] = mapped_column(String(64))
    member_id: Mapped[str] = mapped_column(String(36))
    text: Mapped[str] = mapped_column(Text)
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int] = mapped_column(BigInteger)
    time_offset_s: Mapped[float] = mapped_column(Float)
    duration_s: Mapped[float] = mapped_column(Float)
    start_sample: Mapped[int] = mapped_column(BigInteger)
    end_sample: Mapped[int] = mapped_column(BigInteger)
    utterance_index: Mapped[int] = mapped_column(Integer)
    confidence: Mapped[float] = mapped_column(Float)
    words: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    language: Mapped[str] = mapped_column(String(16), default="en-US")
    created_at_ms: Mapped[int] = mapped_column(BigInteger)


class Insight(Base):
    """A question, action item or follow-up found in a message. Rows of a message are replaced together."""

    __tablename__ = "insights"
    __table_args__ = (Index("ix_insights_conversation_id_type", "conversation_id", "type"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(32))
    app_id: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(String(64), index=True)
    type: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    confidence: Mapped[float] = mapped_column(Float)
    char_offset: Mapped[int] = mapped_column(Integer, default=0)
    from_member_id: Mapped[str] = mapped_column(String(36))
    from_name: Mapped[str | None] = mapped_column(Text, nullable=True)
    from_user_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    assignee_name: Mapped[str | None] = mapped_column(Text, nullable=True)
    assignee_is_speaker: Mapped[bool] = mapped_column(default=False)
    due_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    due_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    message_start_ms: Mapped[int] = mapped_column(BigInteger)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)


class MessageTopicPhrases(Base):
    """Candidate topic phrases of one message; conversation topics are ranked from all rows of a conversation."""

    __tablename__ = "message_topic_phrases"

    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(32), index=True)
    app_id: Mapped[str] = mapped_column(String(64))
    message_start_ms: Mapped[int] = mapped_column(BigInteger)
    sentiment: Mapped[float] = mapped_column(Float)
    phrases: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)


class TrackerMatch(Base):
    __tablename__ = "tracker_matches"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(32), index=True)
    app_id: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(String(64), index=True)
    message_text: Mapped[str] = mapped_column(Text)
    message_start_ms: Mapped[int] = mapped_column(BigInteger)
    message_end_ms: Mapped[int] = mapped_column(BigInteger)
    tracker_id: Mapped[str] = mapped_column(String(64))
    tracker_name: Mapped[str] = mapped_column(Text)
    vocabulary: Mapped[str] = mapped_column(Text)
    mode: Mapped[str] = mapped_column(String(16))
    matched_text: Mapped[str] = mapped_column(Text)
    offset: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)


class Entity(Base):
    __tablename__ = "entities"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(32), index=True)
    app_id: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(String(64), index=True)
    message_text: Mapped[str] = mapped_column(Text)
    message_start_ms: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String(32))
    sub_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    category: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    offset: Mapped[int] = mapped_column(Integer)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)


class Tracker(Base):
    """An app-level tracker (Management API); applied to every conversation of the app unless it opts out."""

    __tablename__ = "trackers"
    __table_args__ = (Index("uq_trackers_app_id_name", "app_id", "name", unique=True),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    app_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))
    vocabulary: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)


class Job(Base):
    """An Async API job (symbl-api.md §5): recorded audio published to the audio topic for transcription.

    ``status`` goes scheduled → in_progress (a transcript of it is stored) → completed (all of them are) or failed.
    Reprocessing jobs re-read a stored conversation's audio into a new conversation (``source_conversation_id``).
    """

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status", "status"),
        Index("ix_jobs_app_id_status", "app_id", "status"),
        Index("ix_jobs_conversation_id", "conversation_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    app_id: Mapped[str] = mapped_column(String(64))
    conversation_id: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))  # audio | audio_url | reprocess
    status: Mapped[str] = mapped_column(String(16))
    stream_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    offset_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    """Where the job's audio starts on the conversation timeline (after earlier appended audio)."""
    duration_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    source: Mapped[str | None] = mapped_column(Text, nullable=True)
    source_conversation_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    webhook_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)
    completed_at_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class TranscribedStream(Base):
    """A stream the transcriber has finished (STREAM_TRANSCRIBED) and how many finals it produced in all, so a
    reader can tell when every transcript of the stream is stored."""

    __tablename__ = "transcribed_streams"

    stream_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(32), index=True)
    final_count: Mapped[int] = mapped_column(Integer)
    model: Mapped[str | None] = mapped_column(String(64), nullable=True)
    transcribed_at_ms: Mapped[int] = mapped_column(BigInteger)


class Summary(Base):
    """The stored summary of a conversation (``GET .../summary``): which method produced it and from how many
    messages, so a summary computed while the conversation went on is recomputed once it has more."""

    __tablename__ = "summaries"

    conversation_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    app_id: Mapped[str] = mapped_column(String(64), index=True)
    method: Mapped[str] = mapped_column(String(16))  # extractive | abstractive
    model: Mapped[str | None] = mapped_column(Text, nullable=True)
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    message_count: Mapped[int] = mapped_column(Integer)
    fallback_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    """Why the abstractive summarizer was not used although configured (error, timeout), else None."""
    created_at_ms: Mapped[int] = mapped_column(BigInteger)


class Webhook(Base):
    """A receiver an app registered (``/v1/manage/webhooks``) for some event types, optionally of one conversation.
    ``secret`` signs every delivery (HMAC-SHA256); it must be readable to sign, so it is stored as given."""

    __tablename__ = "webhooks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    app_id: Mapped[str] = mapped_column(String(64), index=True)
    url: Mapped[str] = mapped_column(Text)
    event_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    conversation_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    secret: Mapped[str] = mapped_column(String(128))
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)


class WebhookDelivery(Base):
    """One event for one webhook: the outbox row the webhook sink sends from, and the delivery log the API shows.

    ``id`` is derived from the webhook and event ids, so an event read twice is queued once. ``body`` is the exact
    JSON sent, so every retry carries the same bytes (and signature over them, with a fresh timestamp).
    ``status``: pending (waiting for ``next_attempt_at_ms``), delivered, or dead (attempts exhausted or refused
    with a 4xx; also written to the dead-letter topic)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_status_next_attempt_at_ms", "status", "next_attempt_at_ms"),
        Index("ix_webhook_deliveries_webhook_id_created_at_ms", "webhook_id", "created_at_ms"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    webhook_id: Mapped[str] = mapped_column(String(36))
    app_id: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(32))
    conversation_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at_ms: Mapped[int] = mapped_column(BigInteger)
    lease_until_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    """A sender owns the row until then; a sender that died leaves it to the next one after the lease expires."""
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)
    delivered_at_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class SummaryEmail(Base):
    """The ``sendSummaryEmail`` action of a conversation: who asked to get it, and whether it went out.

    One row per conversation; recipients of several requests (one per speaker's connection) are merged.
    ``status``: requested, sent, or failed (attempts exhausted; ``last_error`` says why)."""

    __tablename__ = "summary_emails"

    conversation_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    app_id: Mapped[str] = mapped_column(String(64), index=True)
    recipients: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    message_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    """The Message-ID header of the email sent."""
    requested_at_ms: Mapped[int] = mapped_column(BigInteger)
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)
    sent_at_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
