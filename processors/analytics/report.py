"""Analytics in Symbl's JSON shape (symbl-api.md §4 "Analytics"), for the REST API and live clients. Pure.

Symbl's fields come first and keep their names (metrics use ``percent``, member times ``percentage``); a few
additive fields carry what Symbl did not report: per member ``turns``, ``longestMonologue`` and ``wordCount``,
per overlapping member ``interruptions``, and at the top ``duration`` and ``silences`` (gaps over the threshold).
"""

from __future__ import annotations

from typing import Any

from processors.analytics.state import ConversationSpeech
from processors.analytics.talk_time import ConversationAnalytics, MemberAnalytics

__all__ = ["analytics_json", "analytics_response", "record_analytics_response"]


def _round(value: float) -> float:
    return round(value, 3)


def _who(member_id: str, names: dict[str, tuple[str | None, str | None]]) -> dict[str, Any]:
    name, user_id = names.get(member_id, (None, None))
    body: dict[str, Any] = {"id": member_id, "name": name or "unknown"}
    if user_id:
        body["userId"] = user_id
    return body


def _member_json(member: MemberAnalytics, names: dict[str, tuple[str | None, str | None]]) -> dict[str, Any]:
    body = _who(member.member_id, names)
    body.update(
        {
            "pace": {"wpm": round(member.wpm)},
            "talkTime": {"percentage": _round(member.talk_percent), "seconds": _round(member.talk_s)},
            "listenTime": {"percentage": _round(member.listen_percent), "seconds": _round(member.listen_s)},
            "overlap": {
                "overlapDuration": _round(member.overlap_s),
                "overlappingMembers": [
                    {
                        **_who(overlap.member_id, names),
                        "percent": _round(overlap.percent),
                        "seconds": _round(overlap.seconds),
                        "interruptions": overlap.interruptions,
                    }
                    for overlap in member.overlaps
                ],
            },
            "turns": member.turns,
            "longestMonologue": {"seconds": _round(member.longest_monologue_s)},
            "wordCount": member.speech.word_count,
        }
    )
    return body


def _metric(kind: str, percent: float, seconds: float) -> dict[str, Any]:
    return {"type": kind, "percent": _round(percent), "seconds": _round(seconds)}


def analytics_json(analytics: ConversationAnalytics) -> dict[str, Any]:
    """``{"metrics": [...], "members": [...], "duration", "silences"}``; members in the order given to analyse."""
    names = {m.member_id: (m.speech.name, m.speech.user_id) for m in analytics.members}
    return {
        "metrics": [
            _metric("total_silence", analytics.silence_percent, analytics.silence_s),
            _metric("total_talk_time", analytics.talk_percent, analytics.talk_s),
            _metric("total_overlap", analytics.overlap_percent, analytics.overlap_s),
        ],
        "members": [_member_json(member, names) for member in analytics.members],
        "duration": _round(analytics.duration_s),
        "silences": [
            {"timeOffset": _round(start), "duration": _round(end - start)} for start, end in analytics.silence_gaps
        ],
    }


def analytics_response(conversation_id: str, analytics: ConversationAnalytics, sequence_number: int) -> dict[str, Any]:
    """The live message for streaming and subscribe clients: the same body as ``GET .../analytics``."""
    return {
        "type": "analytics_response",
        "conversationId": conversation_id,
        "analytics": analytics_json(analytics),
        "sequenceNumber": sequence_number,
    }


def record_analytics_response(record: dict[str, Any], sequence_number: int) -> dict[str, Any]:
    """``analytics_response`` for a ``convoscope.analytics.v1`` record, as the live hub receives it."""
    analytics = ConversationSpeech.from_record(record).analytics()
    return analytics_response(record["conversation_id"], analytics, sequence_number)
