"""A downstream service reading convoscope's final transcripts with plain aiokafka + fastavro.

It needs nothing from convoscope but the .avsc files: values are Avro single-object encoded
(C3 01, 8-byte CRC-64-AVRO fingerprint, body), so the fingerprint picks the writer schema.

    KAFKA_BOOTSTRAP=127.0.0.1:9092 python examples/consume_transcripts.py [path/to/schemas]
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import struct
import sys
from pathlib import Path

import fastavro
from aiokafka import AIOKafkaConsumer
from fastavro.schema import fingerprint, to_parsing_canonical_form

TOPIC = "convoscope.transcripts.final.v1"


def load_schemas(folder: Path) -> dict[bytes, dict]:
    """Every schema in the folder, by its single-object fingerprint."""
    named: dict = {}
    for shared in ("speaker.avsc", "word.avsc", "message_ref.avsc"):
        fastavro.parse_schema(json.loads((folder / shared).read_text()), named_schemas=named)
    by_fingerprint = {}
    for path in sorted(folder.rglob("*.avsc")):  # history/ holds earlier versions, still found on older records
        schema = fastavro.parse_schema(json.loads(path.read_text()), named_schemas=dict(named))
        digest = int(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"), 16)
        by_fingerprint[struct.pack("<Q", digest)] = schema
    return by_fingerprint


def decode(value: bytes, schemas: dict[bytes, dict]) -> dict:
    if value[:2] != b"\xc3\x01":
        raise ValueError("not an Avro single-object value")
    return fastavro.schemaless_reader(io.BytesIO(value[10:]), schemas[value[2:10]], None)


async def consume(schemas: dict[bytes, dict]) -> None:
    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
        group_id="example-transcript-reader",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        seen: set[str] = set()
        async for message in consumer:
            record = decode(message.value, schemas)
            if record["message_id"] in seen:  # delivery is at least once
                continue
            seen.add(record["message_id"])
            speaker = record["speaker"]["name"] or record["speaker"]["id"]
            print(f"{record['conversation_id']} {speaker}: {record['text']}", flush=True)
    finally:
        await consumer.stop()


if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "schemas"
    asyncio.run(consume(load_schemas(folder)))
