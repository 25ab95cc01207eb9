"""Conversation events of streaming connections: one shape for the session that serves a stream and for the
replica that ends it when the serving one died."""

from __future__ import annotations

from typing import Any

from convoscope.ids import event_id

__all__ = ["websocket_event"]


def websocket_event(app_id: str, connection_id: str, event_type: str, conversation_id: str, at: int, *,
                    subject: str, stream_id: str | None = None, member: dict[str, Any] | None = None,
                    name: str | None = None, final_count: int | None = None,
                    attributes: dict[str, str] | None = None) -> dict[str, Any]:
    """A ConversationEvent record; its id depends only on (conversation, type, subject), so a repeat is one."""
    return {
        "event_id": event_id(conversation_id, event_type, subject),
        "conversation_id": conversation_id,
        "app_id": app_id,
        "type": event_type,
        "at_ms": at,
        "stream_id": stream_id,
        "member": member,
        "name": name,
        "final_count": final_count,
        "attributes": {"source": "websocket", "connection_id": connection_id, **(attributes or {})},
    }
