"""Deterministic identifiers: a replay after a crash produces the same ids, so consumers deduplicate."""

from __future__ import annotations

import uuid

__all__ = ["NAMESPACE", "message_id", "stream_transcribed_event_id"]

# uuid5(NAMESPACE_URL, "urn:convoscope:message"), written out so it can never drift.
NAMESPACE = uuid.UUID("a197c85e-bea9-5184-a2e2-35b1e47a555d")


def message_id(stream_id: str, start_sample: int) -> str:
    """Id of the final transcript (and of its interims) of the utterance starting at ``start_sample``."""
    return str(uuid.uuid5(NAMESPACE, f"{stream_id}/{start_sample}"))


def stream_transcribed_event_id(stream_id: str) -> str:
    """``event_id`` of the one STREAM_TRANSCRIBED event of a stream."""
    return str(uuid.uuid5(NAMESPACE, f"{stream_id}/transcribed"))
