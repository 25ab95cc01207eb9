"""Rows to Symbl's JSON shapes (symbl-api.md §4)."""

from __future__ import annotations

from typing import Any

from convoscope.db.models import Conversation, Member, Message
from convoscope.timestamps import iso_ms

__all__ = ["conversation_json", "member_json", "message_json", "optional_iso_ms", "speaker_json"]


def optional_iso_ms(epoch_ms: int | None) -> str | None:
    """``iso_ms``, or None for a time not known yet (a live conversation's end)."""
    return None if epoch_ms is None else iso_ms(epoch_ms)


def _seconds(value: float) -> float:
    return round(value, 3)


def member_json(member: Member) -> dict[str, Any]:
    body: dict[str, Any] = {"id": member.id, "name": member.name}
    if member.user_id:
        body["email"] = member.user_id
    return body


def speaker_json(member: Member | None) -> dict[str, Any]:
    """A message's ``from``: ``{}`` for an unknown member, else ``{id, name, userId[, email]}``."""
    if member is None:
        return {}
    body: dict[str, Any] = {"id": member.id, "name": member.name}
    if member.user_id:
        body["userId"] = member.user_id
        if "@" in member.user_id:
            body["email"] = member.user_id
    return body


def conversation_json(conversation: Conversation, members: list[Member]) -> dict[str, Any]:
    return {
        "id": conversation.id,
        "type": conversation.type,
        "name": conversation.name or conversation.id,
        "startTime": iso_ms(conversation.start_ms),
        "endTime": optional_iso_ms(conversation.end_ms),
        "members": [member_json(member) for member in members],
        "metadata": conversation.metadata_ or {},
    }


def _word_json(word: dict[str, Any]) -> dict[str, Any]:
    return {
        "word": word["word"],
        "startTime": iso_ms(int(word["start_ms"])),
        "endTime": iso_ms(int(word["end_ms"])),
        "score": word.get("score"),
        "timeOffset": _seconds(float(word["time_offset_s"])),
        "duration": _seconds((int(word["end_ms"]) - int(word["start_ms"])) / 1000),
    }


def message_json(message: Message, member: Member | None, *, verbose: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": message.id,
        "text": message.text,
        "from": speaker_json(member),
        "startTime": iso_ms(message.start_ms),
        "endTime": iso_ms(message.end_ms),
        "timeOffset": _seconds(message.time_offset_s),
        "duration": _seconds(message.duration_s),
        "conversationId": message.conversation_id,
    }
    if verbose:
        body["words"] = [_word_json(word) for word in message.words or []]
    return body
