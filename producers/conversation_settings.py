"""What an ingest path (WebSocket, Telephony, Async API) tells the text processors about a conversation.

The record goes to the compacted ``convoscope.conversation.settings.v1`` topic, keyed by conversation id,
before any audio of the stream, so the processors know the trackers and time zone by the first transcript.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from convoscope.db.models import Tracker
from convoscope.ids import tracker_id
from convoscope.timestamps import now_ms

__all__ = ["InlineTracker", "app_trackers", "conversation_settings_record"]


@dataclass(frozen=True)
class InlineTracker:
    name: str
    vocabulary: tuple[str, ...]


async def app_trackers(sessions: async_sessionmaker[AsyncSession], app_id: str) -> list[dict[str, Any]]:
    """The app's trackers (Management API) as TrackerDefinition values."""
    async with sessions() as session:
        rows = await session.scalars(select(Tracker).where(Tracker.app_id == app_id).order_by(Tracker.name))
        return [{"id": t.id, "name": t.name, "vocabulary": list(t.vocabulary)} for t in rows]


def _merge_trackers(
    app_id: str, inline: Iterable[InlineTracker], stored: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Inline trackers first; an app tracker of the same name (case-insensitive) adds its phrases to it."""
    merged: dict[str, dict[str, Any]] = {}
    for tracker in inline:
        key = tracker.name.strip().lower()
        entry = merged.setdefault(key, {"id": tracker_id(app_id, tracker.name), "name": tracker.name,
                                        "vocabulary": []})
        entry["vocabulary"].extend(v for v in tracker.vocabulary if v not in entry["vocabulary"])
    for tracker in stored:
        key = str(tracker["name"]).strip().lower()
        entry = merged.setdefault(key, {"id": tracker["id"], "name": tracker["name"], "vocabulary": []})
        entry["vocabulary"].extend(v for v in tracker["vocabulary"] if v not in entry["vocabulary"])
    return [t for t in merged.values() if t["vocabulary"]]


def conversation_settings_record(
    conversation_id: str,
    app_id: str,
    conversation_started_at_ms: int,
    *,
    timezone_offset_min: int | None = None,
    insight_types: Sequence[str] = (),
    confidence_threshold: float = 0.5,
    inline_trackers: Iterable[InlineTracker] = (),
    stored_trackers: Sequence[dict[str, Any]] = (),
    tracker_interim_results: bool = False,
    sentiment: bool = False,
) -> dict[str, Any]:
    return {
        "conversation_id": conversation_id,
        "app_id": app_id,
        "conversation_started_at_ms": conversation_started_at_ms,
        "timezone_offset_min": timezone_offset_min or 0,
        "insight_types": list(insight_types),
        "confidence_threshold": confidence_threshold,
        "trackers": _merge_trackers(app_id, inline_trackers, stored_trackers),
        "tracker_interim_results": tracker_interim_results,
        # Entities are always detected and stored; detectEntities only decides whether live clients get them.
        "detect_entities": True,
        "sentiment": sentiment,
        "updated_at_ms": now_ms(),
    }
