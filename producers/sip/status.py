"""A call's progress as CALL_STATUS conversation events, and how subscribers see it. Pure.

Every status is one event with attributes ``call_status``, ``sip_code``, ``sip_reason``, ``ended_by`` and
``direction``; the last one of a call is final (busy, no_answer, failed, canceled or ended). The store sink keeps the
latest in the conversation's ``metadata.telephony``; live subscribers get ``{"type": "call_status", ...}``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from convoscope.ids import event_id

__all__ = [
    "FINAL_STATUSES",
    "CallStatus",
    "EndedBy",
    "call_status_event",
    "call_status_message",
    "status_for_rejection",
]


class CallStatus(StrEnum):
    DIALING = "dialing"  # INVITE sent
    RINGING = "ringing"  # 180/183 received
    ANSWERED = "answered"  # 200 OK: audio flows into the conversation
    BUSY = "busy"  # 486/600
    NO_ANSWER = "no_answer"  # nobody answered in time (we sent CANCEL), or 408/480/487
    FAILED = "failed"  # any other refusal or error; sip_code says which
    CANCELED = "canceled"  # the caller gave up before we answered (inbound), or stopped before dialing
    ENDED = "ended"  # an answered call hung up; ended_by says who


class EndedBy(StrEnum):
    REMOTE = "remote"  # BYE from the other party
    API = "api"  # endpoint:connect stop
    RTP_TIMEOUT = "rtp_timeout"  # no audio for sip_rtp_timeout_s, no BYE
    ERROR = "error"  # unusable answer, pipeline failure
    SHUTDOWN = "shutdown"  # the gateway stopped


FINAL_STATUSES = frozenset({CallStatus.BUSY, CallStatus.NO_ANSWER, CallStatus.FAILED, CallStatus.CANCELED,
                            CallStatus.ENDED})

_BUSY_CODES = frozenset({486, 600})
_NO_ANSWER_CODES = frozenset({408, 480, 487})


def status_for_rejection(code: int) -> CallStatus:
    """What a final non-2xx answer to our INVITE means for the caller of the API."""
    if code in _BUSY_CODES:
        return CallStatus.BUSY
    if code in _NO_ANSWER_CODES:
        return CallStatus.NO_ANSWER
    return CallStatus.FAILED


def call_status_event(
    conversation_id: str,
    app_id: str,
    connection_id: str,
    status: CallStatus,
    at_ms: int,
    *,
    direction: str,
    sip_code: int | None = None,
    sip_reason: str = "",
    ended_by: EndedBy | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    attributes = {
        "source": "sip",
        "connection_id": connection_id,
        "call_status": str(status),
        "direction": direction,
        **({"sip_code": str(sip_code)} if sip_code else {}),
        **({"sip_reason": sip_reason} if sip_reason else {}),
        **({"ended_by": str(ended_by)} if ended_by else {}),
        **(extra or {}),
    }
    return {
        "event_id": event_id(conversation_id, "CALL_STATUS", f"{connection_id}/{status}"),
        "conversation_id": conversation_id,
        "app_id": app_id,
        "type": "CALL_STATUS",
        "at_ms": at_ms,
        "stream_id": None,
        "member": None,
        "name": None,
        "final_count": None,
        "attributes": attributes,
    }


def call_status_message(event: dict[str, Any]) -> dict[str, Any]:
    """A CALL_STATUS event as a Telephony subscriber receives it (a convoscope extension: Symbl documents none)."""
    attributes = event.get("attributes") or {}
    body: dict[str, Any] = {
        "type": "call_status",
        "status": attributes.get("call_status"),
        "connectionId": attributes.get("connection_id"),
        "conversationId": event["conversation_id"],
        "direction": attributes.get("direction"),
        "final": attributes.get("call_status") in FINAL_STATUSES,
    }
    if attributes.get("sip_code"):
        body["sipCode"] = int(attributes["sip_code"])
    if attributes.get("sip_reason"):
        body["reason"] = attributes["sip_reason"]
    if attributes.get("ended_by"):
        body["endedBy"] = attributes["ended_by"]
    return body
