"""Webhook deliveries without I/O: which events a topic record makes, their JSON envelope, the signature, which
answers are retried, and when.

Everything here is a plain function of its arguments (the clock and the random source are passed in), so the
worker and the job monitor share it and the unit tests need neither Kafka nor a database.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from convoscope.ids import CONVOSCOPE_NAMESPACE
from convoscope.timestamps import iso_ms
from sinks.live.symbl_format import INSIGHT_TYPE_NAMES, insight_json, message_ref_json

__all__ = [
    "EVENT_ID_HEADER",
    "EVENT_TYPES",
    "EVENT_TYPE_HEADER",
    "SIGNATURE_HEADER",
    "SIGNATURE_VERSION",
    "TIMESTAMP_HEADER",
    "Outcome",
    "WebhookEvent",
    "backoff_delay_s",
    "classify_response",
    "delivery_id",
    "envelope_body",
    "events_from_record",
    "job_event",
    "new_secret",
    "sign",
    "signed_headers",
    "verify_signature",
    "wants",
]

EVENT_TYPES: tuple[str, ...] = (
    "conversation.completed",
    "message.final",
    "insight.detected",
    "tracker.matched",
    "job.completed",
    "job.failed",
)
"""What a webhook can subscribe to (``eventTypes``)."""

TIMESTAMP_HEADER = "X-Convoscope-Timestamp"
SIGNATURE_HEADER = "X-Convoscope-Signature"
EVENT_ID_HEADER = "X-Convoscope-Event-Id"
EVENT_TYPE_HEADER = "X-Convoscope-Event-Type"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_S = 300
SECRET_BYTES = 32

SAMPLES_PER_MS = 16
SAMPLE_RATE_HZ = 16_000

# Topic names, spelled out rather than imported so this module stays free of the Avro layer.
CONVERSATION_EVENTS_TOPIC = "convoscope.conversation.events.v1"
TRANSCRIPTS_FINAL_TOPIC = "convoscope.transcripts.final.v1"
INSIGHTS_TOPIC = "convoscope.insights.v1"
TRACKER_MATCHES_TOPIC = "convoscope.trackers.matches.v1"


@dataclass(frozen=True)
class WebhookEvent:
    """One thing that happened, as every subscribed webhook receives it. ``id`` is derived from the record it came
    from, so the same record read twice is the same event (receivers deduplicate on it)."""

    id: str
    type: str
    app_id: str
    conversation_id: str | None
    created_at_ms: int
    data: Mapping[str, Any]


def _event_id(event_type: str, source_id: str) -> str:
    return str(uuid.uuid5(CONVOSCOPE_NAMESPACE, f"webhook-event/{event_type}/{source_id}"))


def delivery_id(webhook_id: str, event_id: str) -> str:
    """One outbox row per (webhook, event): inserting it again is a no-op."""
    return str(uuid.uuid5(CONVOSCOPE_NAMESPACE, f"webhook-delivery/{webhook_id}/{event_id}"))


def new_secret() -> str:
    return "whsec_" + secrets.token_hex(SECRET_BYTES)


def envelope_body(event: WebhookEvent) -> str:
    """The exact JSON sent (and signed): ``{id, type, conversationId, appId, createdAt, data}``."""
    return json.dumps(
        {
            "id": event.id,
            "type": event.type,
            "conversationId": event.conversation_id,
            "appId": event.app_id,
            "createdAt": iso_ms(event.created_at_ms),
            "data": event.data,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


def wants(event_types: Sequence[str], conversation_id: str | None, event: WebhookEvent) -> bool:
    """Whether a webhook subscribed to ``event_types`` (and to one conversation, when set) gets ``event``."""
    return event.type in event_types and (conversation_id is None or conversation_id == event.conversation_id)


# -- records to events ------------------------------------------------------------------------------------------


def _from(speaker: Mapping[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"id": speaker["id"], "name": speaker.get("name")}
    if speaker.get("user_id"):
        body["userId"] = speaker["user_id"]
        if "@" in speaker["user_id"]:
            body["email"] = speaker["user_id"]
    return body


def _message_data(final: Mapping[str, Any]) -> dict[str, Any]:
    """A final transcript as ``GET /v1/conversations/{id}/messages?verbose=true`` lists it."""
    started = int(final["stream_started_at_ms"])
    offset_s = int(final["stream_offset_ms"]) / 1000
    first_ms = int(final["start_sample"]) // SAMPLES_PER_MS
    return {
        "id": final["message_id"],
        "text": final["text"],
        "from": _from(final["speaker"]),
        "startTime": iso_ms(started + first_ms),
        "endTime": iso_ms(started + int(final["end_sample"]) // SAMPLES_PER_MS),
        "timeOffset": round(offset_s + int(final["start_sample"]) / SAMPLE_RATE_HZ, 3),
        "duration": round((int(final["end_sample"]) - int(final["start_sample"])) / SAMPLE_RATE_HZ, 3),
        "conversationId": final["conversation_id"],
        "words": [
            {
                "word": word["word"],
                "startTime": iso_ms(started + int(word["start_ms"])),
                "endTime": iso_ms(started + int(word["end_ms"])),
                "score": word.get("confidence"),
                "timeOffset": round(offset_s + int(word["start_ms"]) / 1000, 3),
                "duration": round((int(word["end_ms"]) - int(word["start_ms"])) / 1000, 3),
            }
            for word in final["words"]
        ],
    }


def _tracker_data(match: Mapping[str, Any], message: Mapping[str, Any]) -> dict[str, Any]:
    """One match in the shape of ``trackers-detected``: the tracker with this one match."""
    return {
        "id": match["tracker_id"],
        "name": match["tracker_name"],
        "matches": [{
            "type": "vocabulary",
            "value": match["vocabulary"],
            "mode": match["mode"].lower(),
            "score": round(float(match["score"]), 4),
            "messageRefs": [message_ref_json(dict(message), int(match["offset"]))],
            "insightRefs": [],
        }],
    }


def events_from_record(topic: str, value: Mapping[str, Any]) -> list[WebhookEvent]:
    """The webhook events one decoded topic record makes (often none)."""
    app_id, conversation_id = value["app_id"], value["conversation_id"]
    if topic == CONVERSATION_EVENTS_TOPIC:
        if value["type"] != "CONVERSATION_COMPLETED":
            return []
        data: dict[str, Any] = {"conversationId": conversation_id, "endTime": iso_ms(int(value["at_ms"]))}
        if job_id := value.get("attributes", {}).get("job_id"):
            data["jobId"] = job_id
        event_type = "conversation.completed"
        # A conversation completes once for webhooks however many of its streams (or jobs) announce it.
        return [WebhookEvent(_event_id(event_type, conversation_id), event_type, app_id, conversation_id,
                             int(value["at_ms"]), data)]
    if topic == TRANSCRIPTS_FINAL_TOPIC:
        event_type = "message.final"
        return [WebhookEvent(_event_id(event_type, value["message_id"]), event_type, app_id, conversation_id,
                             int(value["produced_at_ms"]), _message_data(value))]
    if topic == INSIGHTS_TOPIC:
        event_type = "insight.detected"
        return [
            WebhookEvent(_event_id(event_type, insight["insight_id"]), event_type, app_id, conversation_id,
                         int(value["produced_at_ms"]), insight_json(dict(insight), dict(value["message"])))
            for insight in value["insights"]
            if insight["type"] in INSIGHT_TYPE_NAMES
        ]
    if topic == TRACKER_MATCHES_TOPIC:
        if not value["is_final"]:
            return []  # interim matches are for live clients; an interim's text may still change
        event_type = "tracker.matched"
        return [
            WebhookEvent(_event_id(event_type, match["match_id"]), event_type, app_id, conversation_id,
                         int(value["produced_at_ms"]), _tracker_data(match, value["message"]))
            for match in value["matches"]
        ]
    return []


def job_event(app_id: str, conversation_id: str, job_id: str, status: str, at_ms: int,
              error: str | None = None) -> WebhookEvent | None:
    """``job.completed`` / ``job.failed`` for an Async API job reaching that status; None for other statuses."""
    if status not in ("completed", "failed"):
        return None
    event_type = f"job.{status}"
    data: dict[str, Any] = {"jobId": job_id, "status": status, "conversationId": conversation_id}
    if error:
        data["error"] = error
    return WebhookEvent(_event_id(event_type, job_id), event_type, app_id, conversation_id, at_ms, data)


# -- signing ----------------------------------------------------------------------------------------------------


def sign(secret: str, timestamp: int, body: str | bytes) -> str:
    """``v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>``"""
    raw = body.encode() if isinstance(body, str) else body
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + raw, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def signed_headers(secret: str, body: str, event_id: str, event_type: str, now_s: int) -> dict[str, str]:
    """Headers of one attempt; the timestamp is the attempt's, so a retry is signed afresh."""
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: str(now_s),
        SIGNATURE_HEADER: sign(secret, now_s, body),
        EVENT_ID_HEADER: event_id,
        EVENT_TYPE_HEADER: event_type,
    }


def verify_signature(secret: str, timestamp: str | int, body: str | bytes, signature: str,
                     tolerance_s: int = DEFAULT_TOLERANCE_S, now_s: float | None = None) -> bool:
    """What a receiver checks: the signature matches the body and timestamp, and the timestamp is within
    ``tolerance_s`` of its clock (a captured request replayed later is refused). ``signature`` may hold several
    comma-separated values (``v1=...,v1=...``) during a secret rotation."""
    try:
        sent_s = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now_s is None else now_s) - sent_s) > tolerance_s:
        return False
    expected = sign(secret, sent_s, body)
    return any(hmac.compare_digest(expected, candidate.strip()) for candidate in signature.split(","))


# -- retries ----------------------------------------------------------------------------------------------------


class Outcome(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD = "dead"


RETRIED_STATUSES = frozenset({408, 429})


def classify_response(status_code: int | None) -> Outcome:
    """2xx delivered; 5xx, 408, 429 and no answer at all (``None``: timeout, connection error) are retried;
    anything else (other 4xx, redirects) will not change on retry, so the delivery is dead at once."""
    if status_code is None or status_code >= 500 or status_code in RETRIED_STATUSES:
        return Outcome.RETRY
    if 200 <= status_code < 300:
        return Outcome.DELIVERED
    return Outcome.DEAD


def backoff_delay_s(attempt: int, initial_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Delay before the next attempt after ``attempt`` (1-based) failed: "full jitter", uniformly random in
    [0, min(max_s, initial_s * 2^(attempt-1))], so receivers that failed together do not get retried together."""
    ceiling = min(max_s, initial_s * 2 ** min(max(attempt - 1, 0), 62))
    return (rng or random).uniform(0, ceiling)
