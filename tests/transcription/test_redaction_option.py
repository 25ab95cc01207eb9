"""The ``redaction`` option on every ingest path: accepted in one shape, refused with a clear error otherwise, and
carried to the transcription worker on the audio frames (and through a Telephony START command)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from processors.pii import REDACTION_TYPES
from producers.recorded.exceptions import InvalidOptions
from producers.recorded.options import options_from_json, options_from_query
from producers.redaction import RedactionError, parse_redaction, redaction_attribute, types_of_attribute
from producers.sip.requests import ConnectStart, TelephonyRequestError, parse_connect_request, start_command
from producers.websocket.protocol import ProtocolError, StartRequest, parse_client_message
from schemas.topics import AUDIO_FRAMES, TELEPHONY_COMMANDS

GOOD: list[tuple[Any, tuple[str, ...]]] = [
    (None, ()),
    (False, ()),
    (True, REDACTION_TYPES),
    ({"types": ["person", "email", "email"]}, ("email", "person")),
    ({"types": ["credit_card"]}, ("credit_card",)),
    ("true", REDACTION_TYPES),  # JSON text, as query strings carry it
    ('{"types": ["phone_number", "number"]}', ("phone_number", "number")),
]
BAD: list[tuple[Any, str]] = [
    ({"types": ["email", "address"]}, "unknown ['address']; known: ['email', 'phone_number', 'credit_card', 'number'"),
    ({"types": []}, "types must be a non-empty list of email, phone_number"),
    ({"types": "email"}, "types must be a non-empty list"),
    ({"kinds": ["email"]}, 'must be true, false or {"types": [...]}'),
    ({"types": ["email"], "mode": "mask"}, 'must be true, false or {"types": [...]}'),
    (["email"], 'must be true, false or {"types": [...]}'),
    ("yes", 'must be true, false or {"types": [...]}'),
    (1, 'must be true, false or {"types": [...]}'),
]


@pytest.mark.parametrize(("value", "types"), GOOD)
def test_accepted_shapes(value: Any, types: tuple[str, ...]) -> None:
    assert parse_redaction(value) == types


@pytest.mark.parametrize(("value", "complaint"), BAD)
def test_refused_shapes_say_what_is_wrong(value: Any, complaint: str) -> None:
    with pytest.raises(RedactionError) as refused:
        parse_redaction(value)
    assert complaint in str(refused.value)


def _start_request(config: dict[str, Any], **top: Any) -> str:
    return json.dumps({"type": "start_request", **top, "config": {
        "speechRecognition": {"encoding": "LINEAR16", "sampleRateHertz": 16000}, **config}})


def test_start_request_takes_it_in_config() -> None:
    request = parse_client_message(_start_request({"redaction": {"types": ["email", "person"]}}))
    assert isinstance(request, StartRequest) and request.redaction == ("email", "person")
    top_level = parse_client_message(_start_request({}, redaction=True))
    assert isinstance(top_level, StartRequest) and top_level.redaction == REDACTION_TYPES
    plain = parse_client_message(_start_request({}))
    assert isinstance(plain, StartRequest) and plain.redaction == ()
    with pytest.raises(ProtocolError) as refused:
        parse_client_message(_start_request({"redaction": {"types": ["ssn"]}}))
    assert refused.value.message == "Bad request"
    assert refused.value.details.startswith("config.redaction.types: unknown ['ssn']")


def test_async_api_takes_it_in_the_query_or_the_body() -> None:
    assert options_from_query({"redaction": '{"types": ["phone_number"]}'}).redaction == ("phone_number",)
    assert options_from_query({"redaction": "true"}).redaction == REDACTION_TYPES
    _, options = options_from_json({"url": "https://example.com/a.wav", "redaction": {"types": ["number"]}})
    assert options.redaction == ("number",)
    assert options_from_query({}).redaction == ()
    with pytest.raises(InvalidOptions, match=r"redaction\.types must be a non-empty list"):
        options_from_query({"redaction": '{"types": []}'})


def test_telephony_start_carries_it_to_the_sip_gateway() -> None:
    start = parse_connect_request({"operation": "start", "endpoint": {"type": "sip", "uri": "sip:8021@pbx.example.com"},
                                   "redaction": {"types": ["credit_card", "email"]}})
    assert isinstance(start, ConnectStart) and start.redaction == ("email", "credit_card")
    command = start_command(start, "1700000000000001", "app", 1_700_000_000_000, 1_700_000_000_000)
    decoded = TELEPHONY_COMMANDS.serde.deserialize(TELEPHONY_COMMANDS.serde.serialize(command))
    assert types_of_attribute(decoded["attributes"]) == ("email", "credit_card")  # what the gateway reads
    with pytest.raises(TelephonyRequestError, match="redaction must be true, false"):
        parse_connect_request({"operation": "start", "endpoint": {"type": "sip", "uri": "sip:8021@pbx.example.com"},
                               "redaction": "all"})


def test_attributes_and_frames_carry_the_types() -> None:
    assert redaction_attribute(()) == {}
    assert types_of_attribute(redaction_attribute(("email", "person"))) == ("email", "person")
    assert types_of_attribute({"redaction": "email,address"}) == ("email",)  # a newer producer's type is dropped
    frame = {
        "conversation_id": "1700000000000001", "app_id": "a", "stream_id": "s", "kind": "AUDIO", "seq": 0,
        "start_sample": 0, "sample_rate_hz": 16000, "pcm": b"\0\0",
        "speaker": {"id": "p", "name": None, "user_id": None},
        "stream_started_at_ms": 1, "stream_offset_ms": 0, "language": "en-US", "sent_at_ms": 1,
    }
    serde = AUDIO_FRAMES.serde
    assert serde.deserialize(serde.serialize(frame))["redaction_types"] == []  # producers that leave it out
    marked = {**frame, "redaction_types": ["email", "number"]}
    assert serde.deserialize(serde.serialize(marked))["redaction_types"] == ["email", "number"]
