"""Identifiers shared by producers, processors and sinks (see docs/architecture.md, "Identifiers").

Derived ids are uuid5 of one fixed namespace, so a replay after a crash produces the same ids and
consumers deduplicate on them.
"""

from __future__ import annotations

import uuid

__all__ = ["CONVOSCOPE_NAMESPACE", "event_id", "member_id", "message_id", "new_stream_id", "result_id", "tracker_id"]

# Fixed forever: ids derived from it must come out the same in every process and release.
CONVOSCOPE_NAMESPACE = uuid.UUID("6c0f3a52-93a1-4f0e-9d55-0d1b6a3c7e21")


def member_id(conversation_id: str, user_id: str | None, name: str | None, stream_id: str) -> str:
    """One member per person in a conversation: keyed by userId, else name, else the stream."""
    who = user_id or name or stream_id
    return str(uuid.uuid5(CONVOSCOPE_NAMESPACE, f"{conversation_id}/{who}"))


def message_id(stream_id: str, start_sample: int) -> str:
    """Id of the final transcript (and of its interims) of the utterance starting at ``start_sample``."""
    return str(uuid.uuid5(CONVOSCOPE_NAMESPACE, f"{stream_id}/{start_sample}"))


def event_id(conversation_id: str, event_type: str, subject: str) -> str:
    """Stable per (conversation, event type, subject): a retried or replayed event carries the same id."""
    return str(uuid.uuid5(CONVOSCOPE_NAMESPACE, f"{conversation_id}/{event_type}/{subject}"))


def result_id(kind: str, message_id: str, *parts: object) -> str:
    """Id of something found in a message (an insight, a tracker match, an entity): the same on every replay."""
    return str(uuid.uuid5(CONVOSCOPE_NAMESPACE, "/".join([kind, message_id, *map(str, parts)])))


def tracker_id(app_id: str, name: str) -> str:
    """Inline trackers (start_request) get the same id as an app tracker of the same name would."""
    return str(uuid.uuid5(CONVOSCOPE_NAMESPACE, f"tracker/{app_id}/{name.strip().lower()}"))


def new_stream_id() -> str:
    return uuid.uuid4().hex
