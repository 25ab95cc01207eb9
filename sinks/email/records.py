"""The email sink's database side: the ``summary_emails`` rows it sends from and records into, and the stored
results an email is made of. No Kafka, no SMTP."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from convoscope.api.report import ConversationReport, ReportInsight
from convoscope.db.models import Conversation, Summary, SummaryEmail
from convoscope.db.retry import sleep_unless_stopped
from convoscope.settings import Settings
from convoscope.timestamps import now_ms
from producers.actions import EMAIL_ADDRESS
from sinks.email.compose import ActionItemLine, Participant, SummaryEmailContent, format_due
from sinks.store.summaries import current_summary, refresh_summary

__all__ = [
    "EmailStatus",
    "build_content",
    "load_request",
    "mark_failed",
    "mark_sent",
    "record_failed_attempt",
    "stored_summary",
    "wait_until_completion_stored",
]

TOPICS_IN_EMAIL = 10
MAX_ERROR_CHARS = 1000


class EmailStatus:
    REQUESTED = "requested"
    SENT = "sent"
    FAILED = "failed"


async def wait_until_completion_stored(sessions: async_sessionmaker[AsyncSession], conversation_id: str,
                                       completed_at_ms: int, timeout_s: float, poll_s: float,
                                       stop: asyncio.Event | None = None) -> bool:
    """Until the store worker has applied this CONVERSATION_COMPLETED (the conversation's ``end_ms`` reached its
    time). Events are keyed by conversation, so the store applied every earlier event of the conversation too,
    including those that carry the email request: after this, "no ``summary_emails`` row" means none was asked
    for. False when ``timeout_s`` passed (or stop was requested) first."""
    deadline = time.monotonic() + timeout_s
    while True:
        async with sessions() as session:
            end_ms = await session.scalar(select(Conversation.end_ms).where(Conversation.id == conversation_id))
        if end_ms is not None and end_ms >= completed_at_ms:
            return True
        if time.monotonic() >= deadline or await sleep_unless_stopped(stop, poll_s):
            return False


async def load_request(sessions: async_sessionmaker[AsyncSession], conversation_id: str) -> SummaryEmail | None:
    async with sessions() as session:
        return await session.get(SummaryEmail, conversation_id)


async def stored_summary(sessions: async_sessionmaker[AsyncSession], settings: Settings, conversation_id: str,
                         app_id: str, wait_s: float, poll_s: float, stop: asyncio.Event | None = None) -> Summary:
    """The summary the store worker makes a few seconds after completion, once it covers every stored message;
    made here (and stored, as the API would) when it has not come within ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        async with sessions() as session:
            summary = await current_summary(session, conversation_id)
        if summary is not None:
            return summary
        if time.monotonic() >= deadline or await sleep_unless_stopped(stop, poll_s):
            break
    return await refresh_summary(sessions, settings, conversation_id, app_id)


def _participants(report: ConversationReport) -> list[Participant]:
    seen: set[str] = set()
    participants = []
    for member in report.participants:
        email = member.user_id if member.user_id and EMAIL_ADDRESS.match(member.user_id) else None
        key = (email or member.name).lower()
        if key not in seen:
            seen.add(key)
            participants.append(Participant(member.name, email))
    return participants


def _item_line(insight: ReportInsight) -> ActionItemLine:
    return ActionItemLine(text=insight.text, owner=insight.assignee, due=format_due(insight.due_by))


def build_content(report: ConversationReport, link: str) -> SummaryEmailContent:
    """What the email shows: the conversation as its page shows it (convoscope.api.report), in fewer words."""
    return SummaryEmailContent(
        conversation_id=report.conversation_id,
        title=report.title or f"Conversation {report.conversation_id}",
        started_at=dt.datetime.fromtimestamp(report.start_ms / 1000, dt.UTC),
        duration_s=report.duration_s,
        link=link,
        participants=_participants(report),
        summary=list(report.summary),
        action_items=[_item_line(i) for i in report.of_type("action_item")],
        follow_ups=[_item_line(i) for i in report.of_type("follow_up")],
        questions=[i.text for i in report.of_type("question")],
        topics=list(report.topics[:TOPICS_IN_EMAIL]),
    )


async def record_failed_attempt(sessions: async_sessionmaker[AsyncSession], conversation_id: str, attempts: int,
                                error: str) -> None:
    """An attempt failed and another will follow: the count and the error, visible in the API meanwhile."""
    async with sessions.begin() as session:
        await session.execute(SummaryEmail.__table__.update().where(
            SummaryEmail.conversation_id == conversation_id, SummaryEmail.status == EmailStatus.REQUESTED,
        ).values(attempts=attempts, last_error=error[:MAX_ERROR_CHARS], updated_at_ms=now_ms()))


async def mark_sent(sessions: async_sessionmaker[AsyncSession], conversation_id: str, attempts: int,
                    message_id: str, note: str | None = None) -> None:
    """``note``: recipients the server refused while accepting the others (kept in ``last_error``)."""
    at = now_ms()
    async with sessions.begin() as session:
        await session.execute(SummaryEmail.__table__.update().where(
            SummaryEmail.conversation_id == conversation_id,
        ).values(status=EmailStatus.SENT, attempts=attempts, message_id=message_id,
                 last_error=note[:MAX_ERROR_CHARS] if note else None, sent_at_ms=at, updated_at_ms=at))


async def mark_failed(sessions: async_sessionmaker[AsyncSession], conversation_id: str, attempts: int | None,
                      error: str) -> None:
    """Final: no more attempts. ``attempts`` None keeps the count (a failure that was not an attempt)."""
    values: dict[str, Any] = {"status": EmailStatus.FAILED, "last_error": error[:MAX_ERROR_CHARS],
                              "updated_at_ms": now_ms()}
    if attempts is not None:
        values["attempts"] = attempts
    async with sessions.begin() as session:
        await session.execute(SummaryEmail.__table__.update().where(
            SummaryEmail.conversation_id == conversation_id, SummaryEmail.status != EmailStatus.SENT,
        ).values(**values))
