"""Final analytics from stored messages (the ``messages`` table's word timings). Pure: rows in, figures out."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from processors.analytics.talk_time import (
    ConversationAnalytics,
    MemberSpeech,
    Span,
    analyse,
    message_speech,
    speech_segments,
)

__all__ = ["StoredMember", "StoredMessage", "conversation_analytics", "message_word_spans"]


@dataclass(frozen=True)
class StoredMember:
    id: str
    name: str | None
    user_id: str | None


@dataclass(frozen=True)
class StoredMessage:
    member_id: str
    time_offset_s: float
    duration_s: float
    words: Sequence[dict[str, Any]]
    """As stored: ``start_ms``/``end_ms`` (epoch), ``time_offset_s`` (conversation timeline)."""
    text: str = ""


def message_word_spans(message: StoredMessage) -> list[Span]:
    """The message's speech as word spans on the conversation timeline (``talk_time.message_speech``)."""
    spans = [
        (float(w["time_offset_s"]), float(w["time_offset_s"]) + (int(w["end_ms"]) - int(w["start_ms"])) / 1000)
        for w in message.words
    ]
    return message_speech(message.time_offset_s, message.time_offset_s + message.duration_s, spans)


def conversation_analytics(members: Iterable[StoredMember], messages: Iterable[StoredMessage]) -> ConversationAnalytics:
    """Members in the order given; a member with no messages counts as a listener. Messages of members not in
    ``members`` (a speaker stored before its member row) are counted under their member id."""
    known = {m.id: m for m in members}
    spans: dict[str, list[Span]] = {member_id: [] for member_id in known}
    words: dict[str, int] = dict.fromkeys(known, 0)
    for message in messages:
        spans.setdefault(message.member_id, []).extend(message_word_spans(message))
        words[message.member_id] = words.get(message.member_id, 0) + (
            len(message.words) or len(message.text.split())
        )
    speech = [
        MemberSpeech(
            member_id,
            tuple(speech_segments(member_spans)),
            words[member_id],
            known[member_id].name if member_id in known else None,
            known[member_id].user_id if member_id in known else None,
        )
        for member_id, member_spans in spans.items()
    ]
    return analyse(speech)
