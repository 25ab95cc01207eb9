"""Transcript records → Symbl streaming messages (the shapes in symbl-api.md §2.3). Pure functions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from convoscope.timestamps import iso_ms

__all__ = [
    "conversation_completed",
    "entity_response",
    "insight_json",
    "insight_response",
    "message_ref_json",
    "message_response",
    "recognition_result_final",
    "recognition_result_interim",
    "result_messages",
    "speaker_user",
    "topic_json",
    "topic_response",
    "tracker_response",
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


# -- insights, topics, trackers, entities (symbl-api.md §2.3 B2-B5) ---------------------------------------------

INSIGHT_TYPE_NAMES = {"QUESTION": "question", "ACTION_ITEM": "action_item", "FOLLOW_UP": "follow_up"}


def insight_json(insight: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    """One insight of a MessageInsights record as Symbl streams it: ``text`` and ``payload.content`` both."""
    speaker = speaker_user(message["speaker"])
    body: dict[str, Any] = {
        "id": insight["insight_id"],
        "confidence": round(insight["confidence"], 4),
        "messageReference": {"id": message["id"]},
        "hints": [{"key": "confidenceScore", "value": str(round(insight["confidence"], 4))}],
        "type": INSIGHT_TYPE_NAMES[insight["type"]],
        "tags": [],
        "dismissed": False,
        "payload": {"content": insight["text"], "contentType": "text/plain"},
        "from": speaker,
        "entities": None,
        "text": insight["text"],
    }
    if insight.get("assignee_name"):
        assignee = speaker if insight.get("assignee_is_speaker") else {"name": insight["assignee_name"]}
        body["assignee"] = assignee
        body["tags"].append({"type": "person", "text": insight["assignee_name"], "beginOffset": -1,
                             "value": {"value": {**assignee, "assignee": True}}})
    if insight.get("due_by"):
        body["dueBy"] = {"value": insight["due_by"]}
        body["tags"].append({"type": "date", "text": insight.get("due_text") or "", "beginOffset": -1,
                             "value": {"value": {"datetime": insight["due_by"][:10]}}})
    return body


def insight_response(record: dict[str, Any], types: frozenset[str], sequence_number: int) -> dict[str, Any] | None:
    insights = [
        insight_json(insight, record["message"])
        for insight in record["insights"]
        if INSIGHT_TYPE_NAMES[insight["type"]] in types
    ]
    if not insights:
        return None
    return {"type": "insight_response", "insights": insights, "sequenceNumber": sequence_number}


def topic_json(conversation_id: str, topic: Any, message_index: dict[str, int], *,
               with_sentiment: bool = True) -> dict[str, Any]:
    """A RankedTopic (processors.insights.topics) in the streaming shape; ids are stable per phrase."""
    from convoscope.ids import result_id

    body: dict[str, Any] = {
        "id": result_id("topic", conversation_id, topic.phrase.lower()),
        "messageReferences": [{"id": m, "relation": "text instance"} for m in topic.message_ids],
        "phrases": topic.phrase,
        "rootWords": [{"text": word} for word in topic.root_words],
        "score": round(topic.score, 4),
        "type": "topic",
        "messageIndex": min((message_index.get(m, 0) for m in topic.message_ids), default=0),
    }
    if with_sentiment:
        body["sentiment"] = topic.sentiment.as_json()
    return body


def topic_response(conversation_id: str, topics: Sequence[Any], message_index: dict[str, int]
                   ) -> dict[str, Any]:
    return {"type": "topic_response",
            "topics": [topic_json(conversation_id, topic, message_index) for topic in topics]}


def message_ref_json(message: dict[str, Any], offset: int) -> dict[str, Any]:
    return {"id": message["id"], "text": message["text"], "offset": offset,
            "startTime": iso_ms(message["start_ms"]), "endTime": iso_ms(message["end_ms"])}


def tracker_response(record: dict[str, Any], sequence_number: int) -> dict[str, Any] | None:
    """Matches grouped by tracker; ``value`` is the tracker phrase that matched, as Symbl reports it."""
    trackers: dict[str, dict[str, Any]] = {}
    for match in record["matches"]:
        tracker = trackers.setdefault(match["tracker_id"], {
            "id": match["tracker_id"], "name": match["tracker_name"], "matches": [],
        })
        tracker["matches"].append({
            "type": "vocabulary",
            "value": match["vocabulary"],
            "messageRefs": [message_ref_json(record["message"], match["offset"])],
            "insightRefs": [],
        })
    if not trackers:
        return None
    return {"type": "tracker_response", "isFinal": record["is_final"], "trackers": list(trackers.values()),
            "sequenceNumber": sequence_number}


def entity_response(record: dict[str, Any], sequence_number: int) -> dict[str, Any] | None:
    """Entities grouped by (type, subType) with one match per detected value, the shape of the Go SDK."""
    groups: dict[tuple[str, str | None], dict[str, Any]] = {}
    for entity in record["entities"]:
        group = groups.setdefault((entity["type"], entity["sub_type"]), {
            "type": entity["type"], "subType": entity["sub_type"] or entity["type"],
            "category": entity["category"], "matches": [],
        })
        group["matches"].append({
            "detectedValue": entity["value"],
            "messageRefs": [{"id": record["message"]["id"], "text": record["message"]["text"],
                             "offset": entity["offset"]}],
        })
    if not groups:
        return None
    return {"type": "entity_response", "entities": list(groups.values()), "sequenceNumber": sequence_number}
