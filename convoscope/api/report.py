"""Everything a person reads about one conversation, gathered from the store in one place: the conversation page
(``GET /conversations/{id}``) renders it, and so can anything else written for people (the summary email).

It reads with the same functions as the JSON API, so the page never says something the API does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from convoscope.api.insights import conversation_topics, detected_trackers, insight_json
from convoscope.db.models import Conversation, Insight, Member, Message
from convoscope.settings import Settings
from processors.analytics.stored import StoredMember, StoredMessage, conversation_analytics
from sinks.store.summaries import current_summary, display_name, refresh_summary

__all__ = [
    "ConversationReport",
    "ReportInsight",
    "ReportLine",
    "ReportParticipant",
    "ReportTracker",
    "SpeakerTime",
    "load_report",
]

TOPICS_SHOWN = 12


@dataclass(frozen=True, slots=True)
class ReportParticipant:
    name: str
    user_id: str | None = None
    """What the client said identifies the speaker; often an email address."""


@dataclass(frozen=True, slots=True)
class ReportLine:
    """One message of the transcript."""

    message_id: str
    speaker: str
    offset_s: float
    text: str


@dataclass(frozen=True, slots=True)
class ReportInsight:
    type: str  # question | action_item | follow_up
    text: str
    speaker: str
    message_id: str
    assignee: str | None = None
    due_by: str | None = None
    """ISO-8601 date-time the item is due, resolved in the conversation's time zone."""


@dataclass(frozen=True, slots=True)
class ReportTracker:
    name: str
    matches: tuple[tuple[str, int], ...]
    """(matched phrase, how many messages) pairs."""


@dataclass(frozen=True, slots=True)
class SpeakerTime:
    name: str
    talk_s: float
    talk_percent: float
    words_per_minute: int


@dataclass(frozen=True, slots=True)
class ConversationReport:
    conversation_id: str
    app_id: str
    title: str | None
    start_ms: int
    end_ms: int | None
    participants: tuple[ReportParticipant, ...]
    transcript: tuple[ReportLine, ...]
    insights: tuple[ReportInsight, ...]
    topics: tuple[str, ...]
    trackers: tuple[ReportTracker, ...]
    talk_time: tuple[SpeakerTime, ...]
    summary: tuple[str, ...]

    @property
    def in_progress(self) -> bool:
        return self.end_ms is None

    @property
    def duration_s(self) -> float:
        """From the start to the end, or to the last words while it goes on."""
        if self.end_ms is not None:
            return max(0.0, (self.end_ms - self.start_ms) / 1000)
        return max((line.offset_s for line in self.transcript), default=0.0)

    def of_type(self, kind: str) -> tuple[ReportInsight, ...]:
        return tuple(i for i in self.insights if i.type == kind)


def _insight(body: dict[str, Any], speaker: str) -> ReportInsight:
    return ReportInsight(
        type=body["type"], text=body["text"], speaker=speaker, message_id=body["messageIds"][0],
        assignee=(body.get("assignee") or {}).get("name"), due_by=body.get("dueBy"),
    )


async def load_report(sessions: async_sessionmaker[AsyncSession], settings: Settings,
                      conversation: Conversation) -> ConversationReport:
    """The report of a stored conversation. A completed conversation's summary is computed (and stored) when the
    stored one is missing or stale; one in progress shows whatever summary is stored."""
    async with sessions() as session:
        members = list(await session.scalars(
            select(Member).where(Member.conversation_id == conversation.id).order_by(Member.name, Member.id)
        ))
        by_id = {member.id: member for member in members}
        messages = list(await session.scalars(
            select(Message).where(Message.conversation_id == conversation.id)
            .order_by(Message.start_ms, Message.time_offset_s, Message.id)
        ))
        insight_rows = list(await session.scalars(
            select(Insight).where(Insight.conversation_id == conversation.id)
            .order_by(Insight.message_start_ms, Insight.char_offset)
        ))
        topics = await conversation_topics(session, conversation.id, limit=TOPICS_SHOWN)
        trackers = await detected_trackers(session, conversation.id)
        summary = await current_summary(session, conversation.id)
    if summary is None and conversation.end_ms is not None and messages:
        summary = await refresh_summary(sessions, settings, conversation.id, conversation.app_id)

    by_name: dict[str, Member] = {}
    for member in members:
        if member.name:
            by_name.setdefault(member.name.lower(), member)
            by_name.setdefault(member.name.split()[0].lower(), member)
    analytics = conversation_analytics(
        [StoredMember(m.id, m.name, m.user_id) for m in members],
        [StoredMessage(m.member_id, m.time_offset_s, m.duration_s, m.words or [], m.text) for m in messages],
    )
    return ConversationReport(
        conversation_id=conversation.id,
        app_id=conversation.app_id,
        title=conversation.name,
        start_ms=conversation.start_ms,
        end_ms=conversation.end_ms,
        participants=tuple(ReportParticipant(display_name(m), m.user_id) for m in members),
        transcript=tuple(
            ReportLine(m.id, display_name(by_id.get(m.member_id)), m.time_offset_s, m.text) for m in messages
        ),
        insights=tuple(
            _insight(insight_json(row, by_name), row.from_name or display_name(by_id.get(row.from_member_id)))
            for row in insight_rows
        ),
        topics=tuple(topic.phrase for topic in topics),
        trackers=tuple(
            ReportTracker(t["name"], tuple((m["value"], len(m["messageRefs"])) for m in t["matches"]))
            for t in trackers
        ),
        talk_time=tuple(
            SpeakerTime(display_name(by_id.get(m.member_id)), m.talk_s, m.talk_percent, round(m.wpm))
            for m in analytics.members
        ),
        summary=tuple(str(item.get("text", "")) for item in (summary.items if summary else []) if item.get("text")),
    )
