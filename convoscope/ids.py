"""Identifiers shared by producers and sinks (see docs/architecture.md, "Identifiers")."""

from __future__ import annotations

import uuid

__all__ = ["CONVOSCOPE_NAMESPACE", "member_id", "new_stream_id"]

# Fixed forever: ids derived from it must come out the same in every process and release.
CONVOSCOPE_NAMESPACE = uuid.UUID("6c0f3a52-93a1-4f0e-9d55-0d1b6a3c7e21")


def member_id(conversation_id: str, user_id: str | None, name: str | None, stream_id: str) -> str:
    """One member per person in a conversation: keyed by userId, else name, else the stream."""
    who = user_id or name or stream_id
    return str(uuid.uuid5(CONVOSCOPE_NAMESPACE, f"{conversation_id}/{who}"))


def new_stream_id() -> str:
    return uuid.uuid4().hex
