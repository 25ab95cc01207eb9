"""The ``redaction`` option of every ingest path (streaming ``start_request``, Async API, Telephony API), checked
once for all. Pure.

convoscope's own addition (Symbl has no redaction option): ``true`` masks every type, ``false`` or leaving it out
none, ``{"types": ["email", "phone_number", "credit_card", "number", "person"]}`` the types named. The types travel
on each audio frame (``redaction_types``) to the transcription worker, which masks them before anything is
published (``processors/transcription/redaction.py``), and on STREAM_STARTED and Telephony START as the attribute
``redaction`` (comma-separated).
"""

from __future__ import annotations

import json
from typing import Any

from processors.pii import REDACTION_TYPES

__all__ = ["REDACTION_ATTRIBUTE", "RedactionError", "parse_redaction", "redaction_attribute", "types_of_attribute"]

REDACTION_ATTRIBUTE = "redaction"
_SHAPE = '{"types": [...]} (types: ' + ", ".join(REDACTION_TYPES) + ")"


class RedactionError(ValueError):
    """A redaction option the caller must fix; the message says what."""


def parse_redaction(value: Any, where: str = "redaction") -> tuple[str, ...]:
    """The types ``value`` asks to mask, in ``REDACTION_TYPES`` order; raises RedactionError. Accepts the JSON text
    of the value too (query strings carry it so)."""
    if isinstance(value, str) and value.strip()[:1] in ("{", "t", "f"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass  # reported below as a wrong shape
    if value is None or value is False:
        return ()
    if value is True:
        return REDACTION_TYPES
    if not isinstance(value, dict) or set(value) != {"types"}:
        raise RedactionError(f"{where} must be true, false or {_SHAPE}")
    types = value["types"]
    if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
        raise RedactionError(f"{where}.types must be a non-empty list of {', '.join(REDACTION_TYPES)}")
    unknown = sorted(set(types) - set(REDACTION_TYPES))
    if unknown:
        raise RedactionError(f"{where}.types: unknown {unknown}; known: {list(REDACTION_TYPES)}")
    return tuple(t for t in REDACTION_TYPES if t in types)


def redaction_attribute(types: tuple[str, ...]) -> dict[str, str]:
    """The event or command attributes that record ``types`` (none when nothing is redacted)."""
    return {REDACTION_ATTRIBUTE: ",".join(types)} if types else {}


def types_of_attribute(attributes: dict[str, str] | None) -> tuple[str, ...]:
    """The types ``redaction_attribute`` recorded; unknown names (from a newer producer) are dropped."""
    named = ((attributes or {}).get(REDACTION_ATTRIBUTE) or "").split(",")
    return tuple(t for t in REDACTION_TYPES if t in named)
