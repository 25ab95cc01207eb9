"""fastavro vs the reference `avro` package on our own records: why the pipeline encodes with fastavro.

Prints records per second to encode and decode an AudioFrame (0.1 s of 16 kHz audio) and a
FinalTranscript (12 words), both schemaless bodies as they go on the wire.

    .venv/bin/python bench/avro_codec.py
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import avro.io
import avro.schema
import fastavro

from schemas.serde import SCHEMA_DIR, load_schema

SPEAKER = {"id": "6f1c", "name": "Alice", "user_id": "alice@example.com"}
AUDIO = {
    "conversation_id": "17000000000001234", "app_id": "a" * 64, "stream_id": "b" * 32, "kind": "AUDIO", "seq": 42,
    "start_sample": 67200, "sample_rate_hz": 16000, "pcm": bytes(3200), "speaker": SPEAKER,
    "stream_started_at_ms": 1_700_000_000_000, "stream_offset_ms": 0, "language": "en-US",
    "sent_at_ms": 1_700_000_004_200,
    "live": True,
}
FINAL = {
    "message_id": "c" * 36, "conversation_id": "17000000000001234", "app_id": "a" * 64, "stream_id": "b" * 32,
    "speaker": SPEAKER, "utterance_index": 3, "start_sample": 67200, "end_sample": 120000,
    "stream_started_at_ms": 1_700_000_000_000, "stream_offset_ms": 0,
    "text": "Can you finish the checkout tests by Friday, and send the report?", "confidence": 0.93,
    "words": [{"word": f"word{i}", "start_ms": i * 300, "end_ms": i * 300 + 250, "confidence": 0.9} for i in range(12)],
    "language": "en-US", "model": "whisper-tiny.en", "produced_at_ms": 1_700_000_008_000,
}


def reference_schema(file_name: str) -> avro.schema.Schema:
    names = avro.schema.Names()
    for shared in ("speaker.avsc", "word.avsc"):
        avro.schema.make_avsc_object(json.loads((SCHEMA_DIR / shared).read_text()), names)
    return avro.schema.make_avsc_object(json.loads((SCHEMA_DIR / file_name).read_text()), names)


def rate(function, seconds: float = 1.0) -> float:  # type: ignore[no-untyped-def]
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(200):
            function()
        count += 200
    return count / elapsed


def measure(label: str, file_name: str, value: dict) -> None:  # type: ignore[type-arg]
    fast = load_schema(file_name)
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fast, value)
    data = body.getvalue()
    ref = reference_schema(file_name)
    writer, reader = avro.io.DatumWriter(ref), avro.io.DatumReader(ref)

    def fast_encode() -> None:
        fastavro.schemaless_writer(io.BytesIO(), fast, value)

    def fast_decode() -> None:
        fastavro.schemaless_reader(io.BytesIO(data), fast, None)

    def ref_encode() -> None:
        writer.write(value, avro.io.BinaryEncoder(io.BytesIO()))

    def ref_decode() -> None:
        reader.read(avro.io.BinaryDecoder(io.BytesIO(data)))

    results = {}
    for library, enc, dec in (("fastavro", fast_encode, fast_decode), ("avro", ref_encode, ref_decode)):
        results[library] = (rate(enc), rate(dec))
        print(f"{label:18} {library:9} {results[library][0]:>10,.0f} {results[library][1]:>10,.0f}")
    print(f"{label:18} {'ratio':9} {results['fastavro'][0] / results['avro'][0]:>9.1f}x "
          f"{results['fastavro'][1] / results['avro'][1]:>9.1f}x")


def main() -> None:
    print(f"{'record':18} {'library':9} {'encode/s':>10} {'decode/s':>10}")
    measure("AudioFrame", "audio_frame.avsc", AUDIO)
    measure("FinalTranscript", "final_transcript.avsc", FINAL)


if __name__ == "__main__":
    main()
