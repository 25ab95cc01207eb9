"""Conversation summaries kept in the database.

A summary is computed from the stored messages (abstractive when ``CONVOSCOPE_LLM_URL`` answers in time, else
extractive) and stored with the number of messages it covers: it stays valid until more messages arrive. The store
worker computes one when a conversation completes, so ``GET .../summary`` is usually a lookup; the API computes one
on demand when there is none or it is stale.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from convoscope.db.engine import dialect_insert
from convoscope.db.models import Insight, Member, Message, Summary
from convoscope.ids import CONVOSCOPE_NAMESPACE
from convoscope.settings import Settings
from convoscope.timestamps import iso_ms, now_ms
from processors.summary.abstractive import AbstractiveSummarizer, SummaryUnavailable
from processors.summary.extractive import SummaryItem, SummarySource, extractive_summary

__all__ = ["SummaryResult", "current_summary", "display_name", "refresh_summary", "summarize", "summary_json"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SummaryResult:
    items: list[SummaryItem]
    method: str
    model: str | None
    fallback_reason: str | None


def display_name(member: Member | None) -> str:
    return (member.name if member else None) or "Unknown speaker"


async def summarize(
    settings: Settings, sources: list[SummarySource], insight_message_ids: set[str]
) -> SummaryResult:
    """Abstractive when an LLM endpoint is configured and answers well in time, else extractive."""
    fallback_reason = None
    if settings.llm_url and sources:
        summarizer = AbstractiveSummarizer(
            settings.llm_url,
            settings.llm_model,
            settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
            settings.llm_timeout_s,
        )
        try:
            return SummaryResult(await summarizer.summarize(sources), "abstractive", settings.llm_model, None)
        except SummaryUnavailable as exc:
            fallback_reason = str(exc)
            log.warning("abstractive summary unavailable, using the extractive one: %s", exc)
    return SummaryResult(extractive_summary(sources, insight_message_ids), "extractive", None, fallback_reason)


def _item_json(conversation_id: str, index: int, item: SummaryItem, times: dict[str, tuple[int, int]]
               ) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": str(uuid.uuid5(CONVOSCOPE_NAMESPACE, f"summary/{conversation_id}/{index}/{item.text}")),
        "text": item.text,
        "messageRefs": [{"id": message_id} for message_id in item.message_ids],
    }
    spans = [times[m] for m in item.message_ids if m in times]
    if spans:
        body["startTime"] = iso_ms(min(s for s, _ in spans))
        body["endTime"] = iso_ms(max(e for _, e in spans))
    return body


def summary_json(summary: Summary) -> dict[str, Any]:
    """The body of ``GET .../summary``: Symbl's ``summary`` list, and which summarizer produced it."""
    produced: dict[str, Any] = {"method": summary.method, "createdAt": iso_ms(summary.created_at_ms)}
    if summary.model:
        produced["model"] = summary.model
    if summary.fallback_reason:
        produced["fallbackReason"] = summary.fallback_reason
    return {"summary": summary.items, "producedBy": produced}


async def current_summary(session: AsyncSession, conversation_id: str) -> Summary | None:
    """The stored summary if it covers every stored message of the conversation."""
    stored = await session.get(Summary, conversation_id)
    if stored is None:
        return None
    count = await session.scalar(select(func.count()).where(Message.conversation_id == conversation_id))
    return stored if stored.message_count == count else None


async def refresh_summary(sessions: async_sessionmaker[AsyncSession], settings: Settings, conversation_id: str,
                          app_id: str) -> Summary:
    """Compute the conversation's summary from its stored messages and store it (replacing any older one)."""
    async with sessions() as session:
        members = {
            m.id: m for m in await session.scalars(select(Member).where(Member.conversation_id == conversation_id))
        }
        messages = list(await session.scalars(
            select(Message)
            .where(Message.conversation_id == conversation_id)
            .order_by(Message.start_ms, Message.time_offset_s, Message.id)
        ))
        insight_ids = set(
            await session.scalars(select(Insight.message_id).where(Insight.conversation_id == conversation_id))
        )
    sources = [SummarySource(m.id, display_name(members.get(m.member_id)), m.text) for m in messages]
    result = await summarize(settings, sources, insight_ids)
    times = {m.id: (m.start_ms, m.end_ms) for m in messages}
    values = {
        "conversation_id": conversation_id,
        "app_id": app_id,
        "method": result.method,
        "model": result.model,
        "items": [_item_json(conversation_id, i, item, times) for i, item in enumerate(result.items)],
        "message_count": len(messages),
        "fallback_reason": result.fallback_reason,
        "created_at_ms": now_ms(),
    }
    async with sessions.begin() as session:
        insert = dialect_insert(session, Summary.__table__).values(values)
        await session.execute(
            insert.on_conflict_do_update(
                index_elements=["conversation_id"], set_={k: v for k, v in values.items() if k != "conversation_id"}
            )
        )
    return Summary(**values)
