"""The pure half of webhooks: envelopes from topic records, signatures, which answers are retried, and when."""

from __future__ import annotations

import hashlib
import hmac
import json
import random

import pytest

from schemas.topics import CONVERSATION_EVENTS, INSIGHTS, TRACKER_MATCHES, TRANSCRIPTS_FINAL
from sinks.webhooks.logic import (
    Outcome,
    backoff_delay_s,
    classify_response,
    delivery_id,
    envelope_body,
    events_from_record,
    job_event,
    sign,
    signed_headers,
    verify_signature,
    wants,
)
from tests.store.records import event, final, insight, speaker, text_result

START_MS = 1_700_000_000_000
CID = "1700000000000004242"
SECRET = "whsec_test_secret_0123456789"


def _final() -> dict:
    who = speaker(CID, "Maria Lopez", "maria@example.com")
    return final(CID, "app-1", "stream-1", who, 0, 16_000, 48_000, "I will send the contract.", START_MS, 2_000)


def test_a_final_transcript_becomes_message_final_in_the_api_message_shape() -> None:
    record = _final()
    assert TRANSCRIPTS_FINAL.serde.serialize(record)  # the test record fits the topic
    (event_,) = events_from_record(TRANSCRIPTS_FINAL.name, record)
    body = json.loads(envelope_body(event_))
    assert body["type"] == "message.final" and body["conversationId"] == CID and body["appId"] == "app-1"
    assert body["id"] == event_.id and body["createdAt"] == "2023-11-14T22:13:23.500Z"
    data = body["data"]
    assert data["id"] == record["message_id"] and data["text"] == "I will send the contract."
    assert data["from"] == {"id": record["speaker"]["id"], "name": "Maria Lopez", "userId": "maria@example.com",
                            "email": "maria@example.com"}
    # 1 s into a stream that starts 2 s into the conversation; 2 s long.
    assert data["startTime"] == "2023-11-14T22:13:21.000Z" and data["endTime"] == "2023-11-14T22:13:23.000Z"
    assert data["timeOffset"] == 3.0 and data["duration"] == 2.0
    assert [w["word"] for w in data["words"]] == ["I", "will", "send", "the", "contract."]
    # Read again (a replay after a crash): the same event id and the same bytes.
    (again,) = events_from_record(TRANSCRIPTS_FINAL.name, dict(record))
    assert again.id == event_.id and envelope_body(again) == envelope_body(event_)


def test_insights_trackers_and_completion_make_one_event_each() -> None:
    message = _final()
    insights = text_result(message, insights=[
        insight("ins-1", "ACTION_ITEM", "I will send the contract.", 0.9, assignee_name="Maria Lopez",
                assignee_is_speaker=True, due_by="2023-11-17T23:59:59+00:00", due_text="by Friday"),
        insight("ins-2", "QUESTION", "Is that fine?", 0.8),
    ])
    assert INSIGHTS.serde.serialize(insights)
    found = events_from_record(INSIGHTS.name, insights)
    assert [e.type for e in found] == ["insight.detected"] * 2 and len({e.id for e in found}) == 2
    action = found[0].data
    assert action["id"] == "ins-1" and action["type"] == "action_item" and action["dueBy"] == {
        "value": "2023-11-17T23:59:59+00:00"} and action["assignee"]["name"] == "Maria Lopez"

    match = {"match_id": "m-1", "tracker_id": "tr-1", "tracker_name": "Contract", "vocabulary": "contract",
             "mode": "EXACT", "matched_text": "contract", "offset": 16, "score": 1.0}
    finals = text_result(message, is_final=True, matches=[match])
    interims = text_result(message, is_final=False, matches=[{**match, "match_id": "m-2"}])
    assert TRACKER_MATCHES.serde.serialize(finals) and TRACKER_MATCHES.serde.serialize(interims)
    (tracked,) = events_from_record(TRACKER_MATCHES.name, finals)
    assert tracked.type == "tracker.matched" and tracked.data["name"] == "Contract"
    assert tracked.data["matches"][0]["messageRefs"][0] == {
        "id": message["message_id"], "text": message["text"], "offset": 16,
        "startTime": "2023-11-14T22:13:21.000Z", "endTime": "2023-11-14T22:13:23.000Z"}
    assert events_from_record(TRACKER_MATCHES.name, interims) == []

    completed = event("CONVERSATION_COMPLETED", CID, "app-1", START_MS + 9_000, attributes={"job_id": "job-7"})
    started = event("CONVERSATION_STARTED", CID, "app-1", START_MS)
    assert CONVERSATION_EVENTS.serde.serialize(completed)
    (done,) = events_from_record(CONVERSATION_EVENTS.name, completed)
    assert done.type == "conversation.completed"
    assert done.data == {"conversationId": CID, "endTime": "2023-11-14T22:13:29.000Z", "jobId": "job-7"}
    # Several streams each announcing completion are one event for webhooks.
    other = event("CONVERSATION_COMPLETED", CID, "app-1", START_MS + 9_500)
    assert events_from_record(CONVERSATION_EVENTS.name, other)[0].id == done.id
    assert events_from_record(CONVERSATION_EVENTS.name, started) == []

    job = job_event("app-1", CID, "job-7", "failed", START_MS, "not transcribed within 60 s")
    assert job is not None and job.type == "job.failed" and job.data["error"] == "not transcribed within 60 s"
    assert job_event("app-1", CID, "job-7", "in_progress", START_MS) is None


def test_webhooks_get_only_their_event_types_and_conversation() -> None:
    (event_,) = events_from_record(TRANSCRIPTS_FINAL.name, _final())
    assert wants(("message.final",), None, event_)
    assert wants(("message.final", "job.completed"), CID, event_)
    assert not wants(("insight.detected",), None, event_)
    assert not wants(("message.final",), "1700000000000000001", event_)
    assert delivery_id("w1", event_.id) == delivery_id("w1", event_.id) != delivery_id("w2", event_.id)


def test_signature_round_trip_and_what_it_refuses() -> None:
    body = envelope_body(events_from_record(TRANSCRIPTS_FINAL.name, _final())[0])
    now = 1_800_000_000
    headers = signed_headers(SECRET, body, "evt", "message.final", now)
    signature, timestamp = headers["X-Convoscope-Signature"], headers["X-Convoscope-Timestamp"]
    # The documented construction, computed independently: hex HMAC-SHA256 over "<timestamp>.<body>".
    expected = hmac.new(SECRET.encode(), f"{now}.{body}".encode(), hashlib.sha256).hexdigest()
    assert signature == f"v1={expected}" and timestamp == str(now)
    assert headers["X-Convoscope-Event-Id"] == "evt" and headers["X-Convoscope-Event-Type"] == "message.final"
    assert verify_signature(SECRET, timestamp, body.encode(), signature, now_s=now + 10)
    assert verify_signature(SECRET, timestamp, body, f"v1=deadbeef,{signature}", now_s=now)  # secret rotation
    assert not verify_signature(SECRET, timestamp, body.replace("contract", "contrast"), signature, now_s=now)
    assert not verify_signature("another-secret-value", timestamp, body, signature, now_s=now)
    assert not verify_signature(SECRET, str(now + 1), body, signature, now_s=now)  # timestamp is signed too
    assert not verify_signature(SECRET, timestamp, body, signature, tolerance_s=300, now_s=now + 301)  # replayed
    assert not verify_signature(SECRET, timestamp, body, signature, tolerance_s=300, now_s=now - 301)
    assert not verify_signature(SECRET, "soon", body, signature, now_s=now)
    assert sign(SECRET, now, body) == sign(SECRET, now, body.encode())


@pytest.mark.parametrize(("status", "outcome"), [
    (200, Outcome.DELIVERED), (201, Outcome.DELIVERED), (204, Outcome.DELIVERED),
    (None, Outcome.RETRY), (500, Outcome.RETRY), (502, Outcome.RETRY), (503, Outcome.RETRY), (504, Outcome.RETRY),
    (408, Outcome.RETRY), (429, Outcome.RETRY),
    (400, Outcome.DEAD), (401, Outcome.DEAD), (403, Outcome.DEAD), (404, Outcome.DEAD), (410, Outcome.DEAD),
    (413, Outcome.DEAD), (422, Outcome.DEAD), (301, Outcome.DEAD), (302, Outcome.DEAD),
])
def test_which_answers_are_retried(status: int | None, outcome: Outcome) -> None:
    assert classify_response(status) is outcome


def test_backoff_doubles_with_full_jitter_up_to_the_cap() -> None:
    rng = random.Random(7)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (9, 256.0), (10, 300.0), (40, 300.0),
                             (10_000, 300.0)]:
        delays = [backoff_delay_s(attempt, 1.0, 300.0, rng) for _ in range(400)]
        assert all(0 <= d <= ceiling for d in delays), attempt
        # Full jitter spreads retries over the whole window, not around one point.
        assert min(delays) < ceiling * 0.1 and max(delays) > ceiling * 0.9, attempt
