"""The Symbl streaming protocol's client messages, parsed and validated. Pure: no I/O.

Tolerates what the official SDKs really send: the Python SDK's ``str({'type': 'stop_request'})``
(a Python repr, not JSON), ``meetingTitle`` at the top level, and ``sampleRateHertz``/``encoding``
flattened into ``config``.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from typing import Any

from producers.actions import ActionError, parse_actions, summary_email_recipients
from producers.audio import AudioFormat, AudioFormatError
from producers.redaction import RedactionError, parse_redaction

__all__ = [
    "PING",
    "PONG",
    "ModifyRequest",
    "ProtocolError",
    "StartRequest",
    "StopRequest",
    "parse_client_message",
]

PING = "__PING__"
PONG = "__PONG__"
MAX_CONTROL_MESSAGE_CHARS = 256 * 1024
MAX_TIMEOUT_S = 1800
DEFAULT_SAMPLE_RATE_HZ = 16_000
INSIGHT_TYPES = ("question", "action_item", "follow_up", "topic")


class ProtocolError(ValueError):
    """A client message we cannot act on. ``message`` is the short category, ``details`` the why."""

    def __init__(self, message: str, details: str) -> None:
        super().__init__(f"{message}: {details}")
        self.message = message
        self.details = details


@dataclass(frozen=True)
class Speaker:
    user_id: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class Tracker:
    name: str
    vocabulary: tuple[str, ...]


@dataclass(frozen=True)
class StartRequest:
    audio_format: AudioFormat
    speaker: Speaker = Speaker()
    insight_types: tuple[str, ...] = ()
    trackers: tuple[Tracker, ...] = ()
    language_code: str = "en-US"
    meeting_title: str | None = None
    confidence_threshold: float = 0.5
    timezone_offset_min: int | None = None
    sentiment: bool = False
    detect_entities: bool = False
    analytics: bool = False
    """convoscope's own ``config.analytics``: live ``analytics_response`` messages as talk time changes."""
    tracker_interim_results: bool = False
    enable_all_trackers: bool = True
    no_connection_timeout_s: int = 0
    disconnect_on_stop: bool = True
    disconnect_on_stop_timeout_s: int = MAX_TIMEOUT_S
    summary_emails: tuple[str, ...] = ()
    """Recipients of the summary email (``actions: [{"name": "sendSummaryEmail", ...}]``), sent on completion."""
    redaction: tuple[str, ...] = ()
    """convoscope's own ``config.redaction``: the PII types masked in this stream's transcripts."""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class StopRequest:
    pass


@dataclass(frozen=True)
class ModifyRequest:
    audio_format: AudioFormat


ClientMessage = StartRequest | StopRequest | ModifyRequest


def parse_client_message(text: str) -> ClientMessage:
    if len(text) > MAX_CONTROL_MESSAGE_CHARS:
        raise ProtocolError("Bad request", f"control message longer than {MAX_CONTROL_MESSAGE_CHARS} characters")
    body = _decode(text)
    kind = body.get("type")
    if kind == "start_request":
        return _parse_start(body)
    if kind == "stop_request":
        return StopRequest()
    if kind == "modify_request":
        return ModifyRequest(_parse_audio_format(body.get("speechRecognition") or {}, body))
    raise ProtocolError(
        "Bad request",
        f"unknown message type {kind!r}; expected start_request, stop_request or modify_request",
    )


def _decode(text: str) -> dict[str, Any]:
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        # The official Python SDK sends str(dict) for stop_request: accept Python literals too.
        try:
            body = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise ProtocolError("Bad request", f"message is not valid JSON: {exc.msg} at position {exc.pos}") from exc
    if not isinstance(body, dict):
        raise ProtocolError("Bad request", "message must be a JSON object with a 'type' field")
    return body


def _optional_str(value: Any, name: str, max_len: int = 512) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProtocolError("Bad request", f"{name} must be a string")
    if len(value) > max_len:
        raise ProtocolError("Bad request", f"{name} is longer than {max_len} characters")
    return value


def _int_in_range(value: Any, name: str, low: int, high: int, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ProtocolError("Bad request", f"{name} must be a whole number from {low} to {high}")
    return value


def _flag(value: Any, name: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ProtocolError("Bad request", f"{name} must be true or false")
    return value


def _parse_audio_format(speech: Any, config: dict[str, Any]) -> AudioFormat:
    if not isinstance(speech, dict):
        raise ProtocolError("Bad request", "config.speechRecognition must be an object")
    encoding = speech.get("encoding", config.get("encoding", "LINEAR16"))
    rate = speech.get("sampleRateHertz", config.get("sampleRateHertz", DEFAULT_SAMPLE_RATE_HZ))
    try:
        return AudioFormat.parse(encoding, rate)
    except AudioFormatError as exc:
        raise ProtocolError("Bad request", str(exc)) from exc


def _parse_start(body: dict[str, Any]) -> StartRequest:
    config = body.get("config") or {}
    if not isinstance(config, dict):
        raise ProtocolError("Bad request", "config must be an object")
    audio_format = _parse_audio_format(config.get("speechRecognition") or {}, config)

    speaker_body = body.get("speaker") or {}
    if not isinstance(speaker_body, dict):
        raise ProtocolError("Bad request", "speaker must be an object with userId and name")
    speaker = Speaker(
        user_id=_optional_str(speaker_body.get("userId"), "speaker.userId"),
        name=_optional_str(speaker_body.get("name"), "speaker.name"),
    )

    insight_types = body.get("insightTypes") or []
    if not isinstance(insight_types, list) or not all(isinstance(t, str) for t in insight_types):
        raise ProtocolError("Bad request", "insightTypes must be a list of strings")
    unknown = sorted(set(insight_types) - set(INSIGHT_TYPES))
    if unknown:
        raise ProtocolError("Bad request", f"unknown insightTypes {unknown}; known: {list(INSIGHT_TYPES)}")

    trackers_body = body.get("trackers") or []
    if not isinstance(trackers_body, list):
        raise ProtocolError("Bad request", "trackers must be a list of {name, vocabulary}")
    trackers = []
    for index, tracker in enumerate(trackers_body):
        if not isinstance(tracker, dict) or not isinstance(tracker.get("name"), str):
            raise ProtocolError("Bad request", f"trackers[{index}] needs a string name")
        vocabulary = tracker.get("vocabulary") or []
        if not isinstance(vocabulary, list) or not all(isinstance(v, str) for v in vocabulary):
            raise ProtocolError("Bad request", f"trackers[{index}].vocabulary must be a list of strings")
        trackers.append(Tracker(tracker["name"], tuple(vocabulary)))

    language = _optional_str(config.get("languageCode"), "config.languageCode", 35) or "en-US"
    if not language.lower().startswith("en"):
        raise ProtocolError("Bad request", f"languageCode {language!r} is not supported; streaming is English (en-*)")

    threshold = config.get("confidenceThreshold", 0.5)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0.0 <= threshold <= 1.0:
        raise ProtocolError("Bad request", "config.confidenceThreshold must be a number from 0.0 to 1.0")

    timezone_offset = config.get("timezoneOffset")
    if timezone_offset is not None:
        timezone_offset = _int_in_range(timezone_offset, "config.timezoneOffset", -840, 840, 0)

    disconnect = body.get("disconnectOnStopRequest", True)
    if not isinstance(disconnect, bool):
        raise ProtocolError("Bad request", "disconnectOnStopRequest must be true or false")

    tracker_config = config.get("trackers") or {}
    if not isinstance(tracker_config, dict):
        raise ProtocolError("Bad request", "config.trackers must be an object {interimResults, enableAllTrackers}")
    # enableAllTrackers appears both in config.trackers (docs) and at the top level (Go SDK).
    enable_all = tracker_config.get("enableAllTrackers", body.get("enableAllTrackers", True))

    try:
        summary_emails = summary_email_recipients(parse_actions(body.get("actions")))
    except ActionError as exc:
        raise ProtocolError("Bad request", str(exc)) from exc

    try:
        # In config like detectEntities, also accepted at the top level (where the Telephony API body has it).
        redaction = parse_redaction(config.get("redaction", body.get("redaction")), "config.redaction")
    except RedactionError as exc:
        raise ProtocolError("Bad request", str(exc)) from exc

    title = config.get("meetingTitle", body.get("meetingTitle"))
    return StartRequest(
        audio_format=audio_format,
        speaker=speaker,
        insight_types=tuple(insight_types),
        trackers=tuple(trackers),
        language_code=language,
        meeting_title=_optional_str(title, "meetingTitle"),
        confidence_threshold=float(threshold),
        timezone_offset_min=timezone_offset,
        sentiment=_flag(config.get("sentiment"), "config.sentiment"),
        detect_entities=_flag(config.get("detectEntities", body.get("detectEntities")), "config.detectEntities"),
        analytics=_flag(config.get("analytics"), "config.analytics"),
        tracker_interim_results=_flag(tracker_config.get("interimResults"), "config.trackers.interimResults"),
        enable_all_trackers=_flag(enable_all, "enableAllTrackers"),
        no_connection_timeout_s=_int_in_range(
            body.get("noConnectionTimeout"), "noConnectionTimeout", 0, MAX_TIMEOUT_S, 0
        ),
        disconnect_on_stop=disconnect,
        disconnect_on_stop_timeout_s=_int_in_range(
            body.get("disconnectOnStopRequestTimeout"), "disconnectOnStopRequestTimeout", 0, MAX_TIMEOUT_S,
            MAX_TIMEOUT_S,
        ),
        summary_emails=summary_emails,
        redaction=redaction,
        raw=body,
    )
