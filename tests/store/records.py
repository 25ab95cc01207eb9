"""Topic record values for tests, shaped exactly as the Avro schemas want them."""

from __future__ import annotations

from typing import Any

from convoscope.ids import member_id, message_id
from processors.insights.records import message_ref

SAMPLE_RATE_HZ = 16_000


def speaker(conversation_id: str, name: str | None, user_id: str | None = None, stream_id: str = "") -> dict[str, Any]:
    return {"id": member_id(conversation_id, user_id, name, stream_id), "name": name, "user_id": user_id}


def event(kind: str, conversation_id: str, app_id: str, at_ms: int, **fields: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "event_id": f"{conversation_id}/{kind}/{fields.get('stream_id') or ''}/{at_ms}",
        "conversation_id": conversation_id,
        "app_id": app_id,
        "type": kind,
        "at_ms": at_ms,
        "stream_id": None,
        "member": None,
        "name": None,
        "final_count": None,
        "attributes": {},
    }
    value.update(fields)
    return value


def final(
    conversation_id: str,
    app_id: str,
    stream_id: str,
    who: dict[str, Any],
    index: int,
    start_sample: int,
    end_sample: int,
    text: str,
    started_at_ms: int,
    offset_ms: int = 0,
) -> dict[str, Any]:
    """Words share the utterance evenly; times in ms from the stream start."""
    tokens = text.split()
    start_ms, end_ms = start_sample * 1000 // SAMPLE_RATE_HZ, end_sample * 1000 // SAMPLE_RATE_HZ
    step = (end_ms - start_ms) // max(len(tokens), 1)
    words = [
        {"word": token, "start_ms": start_ms + i * step, "end_ms": start_ms + (i + 1) * step, "confidence": 0.9}
        for i, token in enumerate(tokens)
    ]
    return {
        "message_id": message_id(stream_id, start_sample),
        "conversation_id": conversation_id,
        "app_id": app_id,
        "stream_id": stream_id,
        "speaker": who,
        "utterance_index": index,
        "start_sample": start_sample,
        "end_sample": end_sample,
        "stream_started_at_ms": started_at_ms,
        "stream_offset_ms": offset_ms,
        "text": text,
        "confidence": 0.875,
        "words": words,
        "language": "en-US",
        "model": "test",
        "produced_at_ms": started_at_ms + end_ms + 500,
    }


def text_result(transcript: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """The envelope every text-processor record shares, plus its kind's fields."""
    return {
        "message": message_ref(transcript),
        "conversation_id": transcript["conversation_id"],
        "app_id": transcript["app_id"],
        "produced_at_ms": transcript["produced_at_ms"] + 100,
        **fields,
    }


def insight(insight_id: str, kind: str, text: str, confidence: float = 0.9, **fields: Any) -> dict[str, Any]:
    return {
        "insight_id": insight_id, "type": kind, "text": text, "confidence": confidence, "char_offset": 0,
        "assignee_name": None, "assignee_is_speaker": False, "due_by": None, "due_text": None, **fields,
    }
