"""Avro single-object encoding (Avro spec 1.12, "Single object encoding").

Every value on a convoscope topic is ``C3 01`` + the 8-byte little-endian CRC-64-AVRO
fingerprint of the writer schema's canonical form + the Avro binary body. Any Avro library
can read it without a schema registry: look the fingerprint up among the ``.avsc`` files in
this folder and ``history/``. fastavro does the encoding; ``bench/avro_codec.py`` measures why
(vs ``avro``).

Schemas evolve compatibly (new fields with defaults, new enum symbols). Each released version
of a schema stays in ``history/<name>.v<N>.avsc`` and ``released.json`` lists every released
fingerprint, so values written before an upgrade are still read, resolved to the current
schema, after it: records on the topics outlive the code that wrote them.
"""

from __future__ import annotations

import io
import json
import struct
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

__all__ = ["AvroSerde", "SchemaError", "earlier_versions", "load_schema", "schema_fingerprint"]

SCHEMA_DIR = Path(__file__).resolve().parent
HISTORY_DIR = SCHEMA_DIR / "history"
SINGLE_OBJECT_MAGIC = b"\xc3\x01"
HEADER_LEN = 10
# Files whose named types others refer to; parsed first so references resolve.
SHARED_TYPES = ("speaker.avsc", "word.avsc", "message_ref.avsc")


class SchemaError(ValueError):
    """A record does not fit its schema, or bytes are not a value of the expected schema."""


@cache
def _named_schemas() -> dict[str, Any]:
    named: dict[str, Any] = {}
    for file_name in SHARED_TYPES:
        fastavro.parse_schema(json.loads((SCHEMA_DIR / file_name).read_text()), named_schemas=named)
    return named


@cache
def load_schema(file_name: str) -> Any:
    """Parse ``schemas/<file_name>`` (or ``history/...``) with the shared named types resolved."""
    named = dict(_named_schemas())
    return fastavro.parse_schema(json.loads((SCHEMA_DIR / file_name).read_text()), named_schemas=named)


def earlier_versions(file_name: str) -> list[str]:
    """The released earlier versions of ``file_name``, as paths relative to this folder."""
    stem = file_name.removesuffix(".avsc")
    return [f"history/{p.name}" for p in sorted(HISTORY_DIR.glob(f"{stem}.v*.avsc"))]


def schema_fingerprint(parsed: Any) -> bytes:
    """CRC-64-AVRO fingerprint of the canonical form, little-endian, as the spec puts it on the wire."""
    hex_digest = fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO")
    return struct.pack("<Q", int(hex_digest, 16))


class AvroSerde:
    """Encodes and decodes one record type. Parses its schema once."""

    def __init__(self, file_name: str) -> None:
        self.file_name = file_name
        self.schema = load_schema(file_name)
        self.fingerprint = schema_fingerprint(self.schema)
        self._header = SINGLE_OBJECT_MAGIC + self.fingerprint
        self._writers = {schema_fingerprint(s): s for s in map(load_schema, earlier_versions(file_name))}

    @property
    def full_name(self) -> str:
        return str(self.schema["name"])

    def serialize(self, value: dict[str, Any]) -> bytes:
        buffer = io.BytesIO()
        buffer.write(self._header)
        try:
            fastavro.schemaless_writer(buffer, self.schema, value, strict_allow_default=True)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise SchemaError(f"value does not fit {self.full_name}: {exc}") from exc
        return buffer.getvalue()

    def deserialize(self, data: bytes) -> dict[str, Any]:
        if len(data) < HEADER_LEN or data[:2] != SINGLE_OBJECT_MAGIC:
            raise SchemaError(f"not an Avro single-object value of {self.full_name}")
        writer = self.schema
        if data[2:HEADER_LEN] != self.fingerprint:
            writer = self._writers.get(data[2:HEADER_LEN])
            if writer is None:
                raise SchemaError(f"value was written with a schema that is no version of {self.full_name}")
        try:
            # With an earlier writer schema, fastavro resolves the value to the current one (defaults filled in).
            return fastavro.schemaless_reader(io.BytesIO(data[HEADER_LEN:]), writer,
                                              None if writer is self.schema else self.schema)
        except (ValueError, EOFError, StopIteration, IndexError) as exc:
            raise SchemaError(f"corrupt {self.full_name} value: {exc}") from exc

    __call__ = serialize
