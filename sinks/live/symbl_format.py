"""Transcript records → Symbl streaming messages (the shapes in symbl-api.md §2.3). Pure functions."""

from __future__ import annotations

import json
from typing import Any

from convoscope.timestamps import iso_ms

__all__ = [
    "conversation_completed",
    "message_response",
    "recognition_result_final",
    "recognition_result_interim",
    "result_messages",
    "speaker_user",
]

SAMPLES_PER_MS = 16


def _duration(ms: int) -> dict[str, str]:
    # Symbl sends protobuf-Duration style strings.
    return {"seconds": str(ms // 1000), "nanos": str((ms % 1000) * 1_000_000)}


def speaker_user(speaker: dict[str, Any]) -> dict[str, Any]:
    user: dict[str, Any] = {"id": speaker["id"]}
    if speaker.get("name") is not None:
        user["name"] = speaker["name"]
    if speaker.get("user_id") is not None:
        user["userId"] = speaker["user_id"]
    return user


def recognition_result_interim(record: dict[str, Any]) -> dict[str, Any]:
    text = record["text"]
    return {
        "type": "message",
        "message": {
            "type": "recognition_result",
            "isFinal": False,
            "payload": {"raw": {"alternatives": [{"words": [], "transcript": text, "confidence": 0.0}]}},
            "punctuated": {"transcript": text},
            "user": speaker_user(record["speaker"]),
        },
        "timeOffset": record["stream_offset_ms"] + record["start_sample"] // SAMPLES_PER_MS,
    }


def recognition_result_final(record: dict[str, Any]) -> dict[str, Any]:
    words = [
        {"word": w["word"], "startTime": _duration(w["start_ms"]), "endTime": _duration(w["end_ms"])}
        for w in record["words"]
    ]
    return {
        "type": "message",
        "message": {
            "type": "recognition_result",
            "isFinal": True,
            "payload": {
                "raw": {
                    "alternatives": [
                        {"words": words, "transcript": record["text"], "confidence": record["confidence"]}
                    ]
                }
            },
            "punctuated": {"transcript": record["text"]},
            "user": speaker_user(record["speaker"]),
        },
        "timeOffset": record["stream_offset_ms"] + record["start_sample"] // SAMPLES_PER_MS,
    }


def message_response(record: dict[str, Any], sequence_number: int) -> dict[str, Any]:
    started = record["stream_started_at_ms"]
    start_ms = started + record["start_sample"] // SAMPLES_PER_MS
    end_ms = started + record["end_sample"] // SAMPLES_PER_MS
    words = [
        {"word": w["word"], "startTime": iso_ms(started + w["start_ms"]), "endTime": iso_ms(started + w["end_ms"])}
        for w in record["words"]
    ]
    return {
        "type": "message_response",
        "messages": [
            {
                "from": speaker_user(record["speaker"]),
                "payload": {"content": record["text"], "contentType": "text/plain"},
                "id": record["message_id"],
                "channel": {"id": "realtime-api"},
                "metadata": {
                    "disablePunctuation": False,
                    "originalContent": record["text"],
                    # Symbl sends the word list as a JSON-encoded string.
                    "words": json.dumps(words, separators=(",", ":")),
                    "originalMessageId": record["message_id"],
                },
                "dismissed": False,
                "duration": {
                    "startTime": iso_ms(start_ms),
                    "endTime": iso_ms(end_ms),
                    "timeOffset": round(record["stream_offset_ms"] / 1000 + record["start_sample"] / 16000, 3),
                    "duration": round((record["end_sample"] - record["start_sample"]) / 16000, 3),
                },
            }
        ],
        "sequenceNumber": sequence_number,
    }


def result_messages(kind: str, record: dict[str, Any], sequence_number: int) -> list[dict[str, Any]]:
    """What a live client receives for one transcript record: an interim result, or a final result followed by
    its ``message_response``. Other records (lifecycle events) produce nothing here."""
    if kind == "interim":
        return [recognition_result_interim(record)]
    if kind == "final":
        return [recognition_result_final(record), message_response(record, sequence_number)]
    return []


def conversation_completed(conversation_id: str) -> dict[str, Any]:
    """Both shapes the SDKs read: the id in the message itself (Web SDK) and under ``data`` (Go SDK)."""
    data = {"conversationId": conversation_id}
    return {"type": "message", "message": {"type": "conversation_completed", **data, "data": data}}
