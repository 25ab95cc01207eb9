"""Records written before an upgrade are still read after it: every released schema version stays readable."""

from __future__ import annotations

import io
import json
from pathlib import Path

import fastavro

from schemas.serde import SINGLE_OBJECT_MAGIC, earlier_versions, load_schema, schema_fingerprint
from schemas.topics import ALL_TOPICS, AUDIO_FRAMES, CONVERSATION_EVENTS

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
RELEASED = json.loads((SCHEMA_DIR / "released.json").read_text())


def _encode_with(file_name: str, value: dict) -> bytes:
    """A value as an older release wrote it: that version's fingerprint and body."""
    schema = load_schema(file_name)
    body = io.BytesIO()
    fastavro.schemaless_writer(body, schema, value)
    return SINGLE_OBJECT_MAGIC + schema_fingerprint(schema) + body.getvalue()


def test_every_schema_change_keeps_the_released_version() -> None:
    for file_name in sorted({topic.schema_file for topic in ALL_TOPICS}):
        current = schema_fingerprint(load_schema(file_name)).hex()
        released = RELEASED.get(file_name, [])
        assert released and released[-1] == current, (
            f"{file_name} changed: copy its released version to schemas/history/"
            f"{file_name.removesuffix('.avsc')}.v{len(released)}.avsc and append {current} to schemas/released.json"
        )
        archived = [schema_fingerprint(load_schema(path)).hex() for path in earlier_versions(file_name)]
        assert archived == released[:-1], f"{file_name}: schemas/history/ and released.json disagree"


def test_audio_and_events_from_before_an_upgrade_are_read_after_it() -> None:
    frame = {
        "conversation_id": "1700000000000001", "app_id": "a", "stream_id": "s", "kind": "AUDIO", "seq": 3,
        "start_sample": 4800, "sample_rate_hz": 16000, "pcm": b"\x01\x00" * 160,
        "speaker": {"id": "p", "name": "Ann", "user_id": None}, "stream_started_at_ms": 1_700_000_000_000,
        "stream_offset_ms": 0, "language": "en-US", "sent_at_ms": 1_700_000_000_300,
    }
    old_frame = _encode_with("history/audio_frame.v1.avsc", frame)
    assert old_frame[2:10] != AUDIO_FRAMES.serde.fingerprint
    # the defaults of the fields added since: live audio, nothing redacted
    assert AUDIO_FRAMES.serde.deserialize(old_frame) == {**frame, "live": True, "redaction_types": []}
    v2_frame = _encode_with("history/audio_frame.v2.avsc", {**frame, "live": False})
    assert v2_frame[2:10] not in (old_frame[2:10], AUDIO_FRAMES.serde.fingerprint)
    assert AUDIO_FRAMES.serde.deserialize(v2_frame) == {**frame, "live": False, "redaction_types": []}

    event = {
        "event_id": "e", "conversation_id": "1700000000000001", "app_id": "a", "type": "STREAM_TRANSCRIBED",
        "at_ms": 1_700_000_001_000, "stream_id": "s", "member": None, "name": None, "final_count": 4,
        "attributes": {"k": "v"},
    }
    old_event = _encode_with("history/conversation_event.v1.avsc", event)
    assert old_event[2:10] != CONVERSATION_EVENTS.serde.fingerprint
    assert CONVERSATION_EVENTS.serde.deserialize(old_event) == event
