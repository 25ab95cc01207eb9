"""Renders docs/topics.md from the topic declarations, so the catalogue cannot drift from the code."""

from __future__ import annotations

import json

from schemas.serde import SCHEMA_DIR
from schemas.topics import ALL_TOPICS

__all__ = ["render_catalogue"]

INTRO = """# Topic catalogue

Generated from `schemas/topics.py` by `convoscope topics markdown`; a test fails if this file is stale.

- **Keys**: the conversation id as UTF-8 bytes. One conversation is on one partition, so its records are in order.
- **Values**: Avro single-object encoding (`C3 01`, the 8-byte little-endian CRC-64-AVRO fingerprint of the writer
  schema's canonical form, then the Avro binary body). Any Avro library reads them with the `.avsc` files in
  `schemas/`; `examples/consume_transcripts.py` is a complete consumer in 60 lines.
- **Evolution rule**: within a topic version (`.v1`), schemas change only in ways that are both backward and forward
  compatible: add a field *with a default*, or add an enum symbol at the end. Never remove, rename or retype a field,
  never reorder enum symbols. Anything else is a new topic version (`.v2`) produced side by side until consumers move.
  Every released version of a schema stays in `schemas/history/` (listed in `schemas/released.json`; a test fails
  when a schema changes without that), so records written before an upgrade are read after it, resolved to the
  current schema; a consumer that looks fingerprints up in `schemas/` and `schemas/history/` reads them all.
- **Partitions**: every topic has the same partition count, so the transcription worker's progress topic lines up
  with its audio partitions.
"""


def render_catalogue() -> str:
    lines = [INTRO]
    lines.append("| topic | value schema | partitions | cleanup | retention | delivery | meaning |")
    lines.append("|---|---|---|---|---|---|---|")
    for topic in ALL_TOPICS:
        schema = json.loads((SCHEMA_DIR / topic.schema_file).read_text())
        full_name = f"{schema['namespace']}.{schema['name']}"
        config = topic.config()
        hours = topic.retention_ms / 3_600_000
        retention = f"{hours / 24:g} d" if hours >= 24 else f"{hours:g} h"
        lines.append(
            f"| `{topic.name}` | `{full_name}` ([{topic.schema_file}](../schemas/{topic.schema_file})) "
            f"| {topic.partitions} | {config['cleanup.policy']} | {retention} | {topic.delivery} | {topic.doc} |"
        )
    lines.append("")
    lines.append("## Fields")
    for topic in ALL_TOPICS:
        schema = json.loads((SCHEMA_DIR / topic.schema_file).read_text())
        lines.append(f"\n### `{topic.name}`\n\n{schema.get('doc', '')}\n")
        lines.append("| field | type | meaning |")
        lines.append("|---|---|---|")
        for field in schema["fields"]:
            kind = field["type"]
            if isinstance(kind, dict):
                kind = kind.get("type") if kind.get("type") != "enum" else "enum " + "/".join(kind["symbols"])
            elif isinstance(kind, list):
                kind = " or ".join(k if isinstance(k, str) else k.get("type", "record") for k in kind)
            lines.append(f"| `{field['name']}` | {kind} | {field.get('doc', '')} |")
    return "\n".join(lines) + "\n"
