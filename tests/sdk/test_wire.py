"""What the SDK puts on the wire: start_request, audio frames, query strings, endpoint:connect bodies; and how
answers read."""

from __future__ import annotations

import json

import pytest
from convoscope_sdk.conversation import query_params
from convoscope_sdk.exceptions import ConfigurationError
from convoscope_sdk.records import EventText, Record, wrap
from convoscope_sdk.streaming import build_start_request, split_frames
from convoscope_sdk.telephony import build_endpoint_request


def test_start_request_has_the_official_sdk_defaults() -> None:
    request = build_start_request(speaker={"name": "John", "userId": "john@example.com"},
                                  insight_types=["question", "action_item"])
    assert request == {
        "type": "start_request",
        "insightTypes": ["question", "action_item"],
        "speaker": {"name": "John", "userId": "john@example.com"},
        "config": {
            "confidenceThreshold": 0.5,
            "languageCode": "en-US",
            "speechRecognition": {"encoding": "LINEAR16", "sampleRateHertz": 44100},
        },
        "noConnectionTimeout": 60,
    }


def test_start_request_merges_speech_recognition_key_by_key() -> None:
    request = build_start_request(config={"meetingTitle": "Standup", "speechRecognition": {"sampleRateHertz": 16000}})
    assert request["config"]["speechRecognition"] == {"encoding": "LINEAR16", "sampleRateHertz": 16000}
    assert request["config"]["meetingTitle"] == "Standup"
    # The module-level defaults are not changed by a merge.
    assert build_start_request()["config"]["speechRecognition"]["sampleRateHertz"] == 44100


def test_start_request_carries_trackers_actions_and_extras() -> None:
    actions = [{"invokeOn": "stop", "name": "sendSummaryEmail", "parameters": {"emails": ["a@example.com"]}}]
    request = build_start_request(
        trackers=[{"name": "Pricing", "vocabulary": ["price", "cost"]}], actions=actions,
        no_connection_timeout_s=None, extra={"customVocabulary": ["convoscope"]},
    )
    assert request["trackers"] == [{"name": "Pricing", "vocabulary": ["price", "cost"]}]
    assert request["actions"] == actions
    assert request["customVocabulary"] == ["convoscope"]
    assert "noConnectionTimeout" not in request and "speaker" not in request


def test_start_request_ignores_insight_types_that_are_not_a_list_like_the_official_sdk() -> None:
    assert build_start_request(insight_types="question")["insightTypes"] == []  # type: ignore[arg-type]


def test_config_must_be_a_dict() -> None:
    with pytest.raises(TypeError, match="config"):
        build_start_request(config=["nope"])  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, 1, 8191, 8192, 8193, 20_000, 44_100 * 2])
def test_frames_are_at_most_8192_bytes_and_lose_nothing(size: int) -> None:
    audio = bytes(range(256)) * (size // 256) + bytes(size % 256)
    frames = split_frames(audio)
    assert b"".join(frames) == audio
    assert all(0 < len(frame) <= 8192 for frame in frames)
    assert all(len(frame) % 2 == 0 for frame in frames[:-1])  # no 16-bit sample split between frames


def test_query_params_as_the_api_reads_them() -> None:
    params = query_params({"verbose": True, "sentiment": False, "parent_refs": True, "customVocabulary": ["a", "b"],
                           "limit": 5, "skipped": None})
    assert params == {"verbose": "true", "sentiment": "false", "parentRefs": "true",
                      "customVocabulary": json.dumps(["a", "b"]), "limit": "5"}


def test_sip_request_body() -> None:
    body = build_endpoint_request(
        {"type": "sip", "uri": "sip:8021@example.com", "audioConfig": {"sampleRate": 16000, "sampleSize": "16"}},
        actions=[{"invokeOn": "stop", "name": "sendSummaryEmail", "parameters": {"emails": ["a@example.com"]}}],
        data={"session": {"name": "My Meeting"}}, languages=["en-US"], timezone="US/Pacific",
        insight_types=["question"],
    )
    assert body == {
        "operation": "start",
        "endpoint": {"type": "sip", "uri": "sip:8021@example.com",
                     "audioConfig": {"sampleRate": 16000, "sampleSize": "16"}},
        "actions": [{"invokeOn": "stop", "name": "sendSummaryEmail", "parameters": {"emails": ["a@example.com"]}}],
        "data": {"session": {"name": "My Meeting"}},
        "languages": ["en-US"],
        "timezone": "US/Pacific",
        "insightTypes": ["question"],
    }


@pytest.mark.parametrize(
    ("endpoint", "kwargs", "message"),
    [
        ({"type": "sip"}, {}, "uri is required"),
        ({"type": "pstn", "phoneNumber": ""}, {}, "phoneNumber is required"),
        ({"type": "webrtc"}, {}, "not valid"),
        ({"type": "sip", "uri": "sip:a@b"}, {"actions": [{"name": "sendSummaryEmail"}]}, "invokeOn"),
        ({"type": "sip", "uri": "sip:a@b"}, {"languages": "en-US"}, "list"),
    ],
)
def test_endpoint_request_is_validated_before_sending(endpoint: dict[str, str], kwargs: dict[str, object],
                                                      message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        build_endpoint_request(endpoint, **kwargs)  # type: ignore[arg-type]


def test_answers_read_as_json_and_as_the_official_sdk_models() -> None:
    answer = wrap({"messages": [{"id": "1", "text": "Hi.", "timeOffset": 1.5, "from": {"name": "Ann"}}]})
    assert answer["messages"][0]["timeOffset"] == 1.5
    assert answer.messages[0].time_offset == 1.5
    assert answer.messages[0].text == "Hi."
    assert answer.to_dict() == {"messages": [{"id": "1", "text": "Hi.", "time_offset": 1.5, "from": {"name": "Ann"}}]}
    assert json.loads(json.dumps(answer)) == {"messages": [{"id": "1", "text": "Hi.", "timeOffset": 1.5,
                                                            "from": {"name": "Ann"}}]}
    with pytest.raises(AttributeError, match="no field"):
        _ = answer.topics


def test_telephony_events_are_json_text_that_also_reads_like_a_dict() -> None:
    event = EventText(Record({"type": "transcript_response", "payload": {"content": "Hello"}, "isFinal": False}))
    assert json.loads(event)["payload"]["content"] == "Hello"  # what code for the official SDK did
    assert event["type"] == "transcript_response" and event.get("isFinal") is False
    assert event[0] == "{" and "transcript_response" in event
