"""The Telephony API's request bodies (symbl-api.md §3.1) and the Kafka commands they become. Pure.

Accepted beyond the generated models, as the SDKs and docs send them: ``actions`` as ``{}``, ``languages`` as
strings or ``{"code": ...}`` objects, ``sampleSize`` as number or string, top-level ``timezone``,
``insightTypes`` and ``trackers``. Only ``sip`` endpoints are placed (a ``pstn`` number needs a SIP trunk).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from convoscope.ids import member_id
from producers.actions import ActionError, parse_actions, summary_email_recipients
from producers.redaction import RedactionError, parse_redaction, redaction_attribute

__all__ = [
    "ConnectStart",
    "ConnectStop",
    "TelephonyRequestError",
    "TrackerSpec",
    "parse_connect_request",
    "start_command",
    "stop_command",
]

SIP_URI = re.compile(r"^sip:(?:[^@\s;]+@)?[A-Za-z0-9.\-\[\]:]+(?:;[^\s]*)?$", re.IGNORECASE)
CONNECTION_ID = re.compile(r"^[A-Za-z0-9_=+\-]{1,128}$")
INSIGHT_TYPES = frozenset({"question", "action_item", "follow_up", "topic"})


class TelephonyRequestError(ValueError):
    """A 400 for the API caller, with a message saying what to fix."""


@dataclass(frozen=True)
class TrackerSpec:
    name: str
    vocabulary: tuple[str, ...]


@dataclass(frozen=True)
class ConnectStart:
    uri: str
    connection_id: str
    name: str | None = None
    language: str = "en-US"
    timezone: str | None = None
    audio_config: dict[str, Any] = field(default_factory=dict)
    actions: tuple[dict[str, Any], ...] = ()
    users: tuple[dict[str, Any], ...] = ()
    insight_types: tuple[str, ...] = ()
    trackers: tuple[TrackerSpec, ...] = ()
    redaction: tuple[str, ...] = ()
    """convoscope's own ``redaction`` (producers/redaction.py): the PII types masked in the call's transcripts."""

    @property
    def summary_emails(self) -> tuple[str, ...]:
        """Who the ``sendSummaryEmail`` actions ask to get the summary email (validated by the parser)."""
        return summary_email_recipients(parse_actions(list(self.actions)))

    def callee(self, conversation_id: str) -> dict[str, Any]:
        """The member the called party's audio belongs to: the single session user if there is one, else the
        SIP URI's user part."""
        user = self.users[0] if len(self.users) == 1 else {}
        name = user.get("name") or self.uri.split(":", 1)[1].split("@", 1)[0].split(";", 1)[0]
        user_id = user.get("userId") or user.get("email") or self.uri
        return {"id": member_id(conversation_id, user_id, name, self.uri), "name": name, "user_id": user_id}


@dataclass(frozen=True)
class ConnectStop:
    connection_id: str


def _object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TelephonyRequestError(f"{what} must be an object.")
    return value


def _language(body: dict[str, Any]) -> str:
    languages = body.get("languages") or []
    if not isinstance(languages, list):
        raise TelephonyRequestError("languages must be a list such as [\"en-US\"].")
    if not languages:
        return "en-US"
    first = languages[0]
    code = first.get("code") if isinstance(first, dict) else first
    if not isinstance(code, str) or not code:
        raise TelephonyRequestError("languages[0] must be a language code such as \"en-US\".")
    return code


def _actions(value: Any) -> tuple[dict[str, Any], ...]:
    try:
        return tuple(action.raw for action in parse_actions(value))
    except ActionError as exc:
        raise TelephonyRequestError(str(exc)) from exc


def _trackers(value: Any) -> tuple[TrackerSpec, ...]:
    if value in (None, []):
        return ()
    if not isinstance(value, list):
        raise TelephonyRequestError("trackers must be a list of {name, vocabulary}.")
    trackers = []
    for tracker in value:
        if not isinstance(tracker, dict):
            raise TelephonyRequestError("each tracker needs a name and a vocabulary list.")
        vocabulary = tracker.get("vocabulary")
        if not isinstance(tracker.get("name"), str) or not isinstance(vocabulary, list):
            raise TelephonyRequestError("each tracker needs a name and a vocabulary list.")
        trackers.append(TrackerSpec(tracker["name"], tuple(str(v) for v in vocabulary)))
    return tuple(trackers)


def parse_connect_request(body: Any) -> ConnectStart | ConnectStop:
    if not isinstance(body, dict):
        raise TelephonyRequestError("Request body must be a JSON object.")
    operation = body.get("operation")
    if operation == "stop":
        connection_id = body.get("connectionId")
        if not isinstance(connection_id, str) or not CONNECTION_ID.match(connection_id):
            raise TelephonyRequestError("stop needs the connectionId that start returned.")
        return ConnectStop(connection_id)
    if operation != "start":
        raise TelephonyRequestError("operation must be \"start\" or \"stop\".")
    endpoint = _object(body.get("endpoint"), "endpoint")
    kind = str(endpoint.get("type") or "").lower()
    if kind == "pstn":
        raise TelephonyRequestError(
            "endpoint.type \"pstn\" is not available: convoscope places SIP calls; reach a phone number through "
            "your SIP trunk with {\"type\": \"sip\", \"uri\": \"sip:<number>@<trunk>\"}."
        )
    if kind != "sip":
        raise TelephonyRequestError("endpoint.type must be \"sip\".")
    uri = endpoint.get("uri")
    if not isinstance(uri, str) or not uri.strip():
        raise TelephonyRequestError("endpoint.uri is required when type = 'sip'.")
    uri = uri.strip()
    if uri.lower().startswith("sips:"):
        raise TelephonyRequestError("sips: URIs (SIP over TLS) are not supported; use a sip: URI (UDP).")
    if not SIP_URI.match(uri):
        raise TelephonyRequestError(f"endpoint.uri {uri!r} is not a SIP URI such as sip:8021@pbx.example.com.")
    connection_id = body.get("connectionId") or str(uuid.uuid4())
    if not isinstance(connection_id, str) or not CONNECTION_ID.match(connection_id):
        raise TelephonyRequestError("connectionId must be 1-128 letters, digits, '-', '_', '=' or '+'.")
    session = _object(_object(body.get("data"), "data").get("session"), "data.session")
    users = session.get("users") or []
    if not isinstance(users, list):
        raise TelephonyRequestError("data.session.users must be a list.")
    insight_types = body.get("insightTypes") or []
    if not isinstance(insight_types, list) or any(t not in INSIGHT_TYPES for t in insight_types):
        raise TelephonyRequestError(f"insightTypes must be a list of {', '.join(sorted(INSIGHT_TYPES))}.")
    timezone = body.get("timezone")
    if timezone is not None and not isinstance(timezone, str):
        raise TelephonyRequestError("timezone must be a string such as \"US/Pacific\".")
    name = session.get("name")
    try:
        redaction = parse_redaction(body.get("redaction"))
    except RedactionError as exc:
        raise TelephonyRequestError(f"{exc}.") from exc
    return ConnectStart(
        uri=uri,
        connection_id=connection_id,
        name=name if isinstance(name, str) else None,
        language=_language(body),
        timezone=timezone,
        audio_config=_object(endpoint.get("audioConfig"), "endpoint.audioConfig"),
        actions=_actions(body.get("actions")),
        users=tuple((u.get("user") or u) for u in users if isinstance(u, dict)),
        insight_types=tuple(insight_types),
        trackers=_trackers(body.get("trackers")),
        redaction=redaction,
    )


def start_command(request: ConnectStart, conversation_id: str, app_id: str, conversation_started_at_ms: int,
                  at_ms: int) -> dict[str, Any]:
    return {
        "command_id": str(uuid.uuid4()),
        "operation": "START",
        "conversation_id": conversation_id,
        "app_id": app_id,
        "connection_id": request.connection_id,
        "at_ms": at_ms,
        "uri": request.uri,
        "conversation_started_at_ms": conversation_started_at_ms,
        "callee": request.callee(conversation_id),
        "language": request.language,
        "attributes": {
            "audio_config": json.dumps(request.audio_config, separators=(",", ":")),
            **({"actions": json.dumps(list(request.actions), separators=(",", ":"))} if request.actions else {}),
            **({"name": request.name} if request.name else {}),
            **redaction_attribute(request.redaction),  # the SIP gateway puts it on the call's audio frames
        },
    }


def stop_command(conversation_id: str, app_id: str, connection_id: str, at_ms: int) -> dict[str, Any]:
    return {
        "command_id": str(uuid.uuid4()),
        "operation": "STOP",
        "conversation_id": conversation_id,
        "app_id": app_id,
        "connection_id": connection_id,
        "at_ms": at_ms,
        "uri": None,
        "conversation_started_at_ms": 0,
        "callee": None,
        "language": "en-US",
        "attributes": {},
    }
