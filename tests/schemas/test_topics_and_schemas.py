"""The topic catalogue and schemas that downstream consumers rely on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from schemas.catalogue import render_catalogue
from schemas.serde import SchemaError
from schemas.topics import ALL_TOPICS, AUDIO_FRAMES, TRANSCRIPTS_FINAL

ROOT = Path(__file__).resolve().parents[2]
FINAL = {
    "message_id": "m1", "conversation_id": "17000000000001234", "app_id": "a", "stream_id": "s",
    "speaker": {"id": "p", "name": "Alice", "user_id": None}, "utterance_index": 0, "start_sample": 16000,
    "end_sample": 48000, "stream_started_at_ms": 1_700_000_000_000, "stream_offset_ms": 0, "text": "Hello there.",
    "confidence": 0.5, "words": [{"word": "Hello", "start_ms": 1000, "end_ms": 1400, "confidence": 0.5}],
    "language": "en-US", "model": "whisper-tiny.en", "produced_at_ms": 1_700_000_003_000,
}


def test_catalogue_is_up_to_date() -> None:
    assert (ROOT / "docs" / "topics.md").read_text() == render_catalogue(), (
        "docs/topics.md is stale: run `convoscope topics markdown > docs/topics.md`"
    )


def test_topics_are_versioned_and_co_partitioned() -> None:
    names = [t.name for t in ALL_TOPICS]
    assert len(names) == len(set(names))
    assert all(name.startswith("convoscope.") and name.endswith(".v1") for name in names)
    assert len({t.partitions for t in ALL_TOPICS}) == 1


def test_single_object_encoding_round_trips_and_rejects_foreign_bytes() -> None:
    serde = TRANSCRIPTS_FINAL.serde
    data = serde.serialize(FINAL)
    assert data[:2] == b"\xc3\x01" and data[2:10] == serde.fingerprint
    assert serde.deserialize(data) == FINAL
    with pytest.raises(SchemaError, match="no version of"):
        AUDIO_FRAMES.serde.deserialize(data)
    with pytest.raises(SchemaError, match="single-object"):
        serde.deserialize(b"{}")
    with pytest.raises(SchemaError):
        serde.deserialize(data[:20])
    with pytest.raises(SchemaError, match="does not fit"):
        serde.serialize({**FINAL, "start_sample": "soon"})


def test_example_consumer_decodes_with_only_the_avsc_files(tmp_path: Path) -> None:
    # The example consumer depends on nothing from convoscope: load it standalone and decode our bytes.
    code = (
        "import sys, runpy; ns = runpy.run_path(sys.argv[1]);"
        "schemas = ns['load_schemas'](__import__('pathlib').Path(sys.argv[2]));"
        "print(ns['decode'](bytes.fromhex(sys.argv[3]), schemas)['text'])"
    )
    data = TRANSCRIPTS_FINAL.serde.serialize(FINAL)
    out = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "examples" / "consume_transcripts.py"), str(ROOT / "schemas"),
         data.hex()], capture_output=True, text=True, check=True, cwd=tmp_path,
    )
    assert out.stdout.strip() == "Hello there."
