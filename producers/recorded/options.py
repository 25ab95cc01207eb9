"""Async API request options (symbl-api.md §5), from a query string or a JSON body, checked. Pure: no I/O.

Symbl's Python SDK sends list and dict values as JSON text inside query strings and booleans as "true"/"false";
both forms are accepted wherever a value can appear.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from producers.recorded.exceptions import InvalidOptions
from producers.redaction import RedactionError, parse_redaction

__all__ = ["ChannelSpeaker", "ProcessOptions", "TrackerOption", "options_from_json", "options_from_query"]

MAX_NAME_CHARS = 1_000
MAX_VOCABULARY = 1_000
LANGUAGE_CODE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
DEFAULT_LANGUAGE = "en-US"
ALL_INSIGHT_TYPES = ("question", "action_item", "follow_up", "topic")
CREDENTIAL_PARAMS = frozenset({"access_token", "accessToken"})
"""Query parameters that carry the token: never kept with the job."""


@dataclass(frozen=True)
class ChannelSpeaker:
    name: str | None = None
    email: str | None = None


@dataclass(frozen=True)
class TrackerOption:
    name: str
    vocabulary: tuple[str, ...]


@dataclass(frozen=True)
class ProcessOptions:
    name: str | None = None
    webhook_url: str | None = None
    language_code: str = DEFAULT_LANGUAGE
    custom_vocabulary: tuple[str, ...] = ()
    confidence_threshold: float = 0.5
    detect_phrases: bool = False
    detect_entities: bool = False
    sentiment: bool = False
    enable_all_trackers: bool = True
    separate_channels: bool | None = None
    """enableSeparateRecognitionPerChannel; None when not given (split unless the channels are copies)."""
    channel_speakers: Mapping[int, ChannelSpeaker] = field(default_factory=dict)
    """channelMetadata by channel number, from 1."""
    trackers: tuple[TrackerOption, ...] = ()
    redaction: tuple[str, ...] = ()
    """convoscope's own ``redaction`` (producers/redaction.py): the PII types masked in the transcripts."""
    given: Mapping[str, Any] = field(default_factory=dict)
    """Every option as the client sent it (decoded from JSON text), kept with the job."""

    def speaker_of_channel(self, channel: int) -> ChannelSpeaker:
        """Who speaks on ``channel`` (from 1): channelMetadata, else "Speaker N"."""
        given = self.channel_speakers.get(channel)
        if given is not None and (given.name or given.email):
            return given
        return ChannelSpeaker(name=f"Speaker {channel}")


def _decoded(value: Any) -> Any:
    """A query-string value that holds JSON text (a list, an object, a boolean, a number) as that value."""
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in ("[", "{") or text in ("true", "false"):
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                return value
    return value


def _bool(value: Any, key: str) -> bool:
    value = _decoded(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise InvalidOptions(f"{key} must be true or false")


def _str(value: Any, key: str, limit: int = MAX_NAME_CHARS) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidOptions(f"{key} must be a non-empty string")
    if len(value) > limit:
        raise InvalidOptions(f"{key} must be at most {limit} characters")
    return value.strip()


def _webhook(value: Any) -> str:
    url = _str(value, "webhookUrl", 2_000)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidOptions("webhookUrl must be an http or https URL")
    return url


def _strings(value: Any, key: str) -> tuple[str, ...]:
    value = _decoded(value)
    if isinstance(value, str):
        value = [part for part in value.split(",")]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidOptions(f"{key} must be a list of strings")
    if len(value) > MAX_VOCABULARY:
        raise InvalidOptions(f"{key} may have at most {MAX_VOCABULARY} entries")
    return tuple(item.strip() for item in value if item.strip())


def _threshold(value: Any) -> float:
    value = _decoded(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidOptions("confidenceThreshold must be a number between 0 and 1") from None
    if isinstance(value, bool) or not 0.0 <= number <= 1.0:
        raise InvalidOptions("confidenceThreshold must be a number between 0 and 1")
    return number


def _language(value: Any) -> str:
    code = _str(value, "languageCode", 35)
    if not LANGUAGE_CODE.match(code):
        raise InvalidOptions(f"languageCode {code!r} is not a language code like en-US")
    return code


def _channel_speakers(value: Any) -> dict[int, ChannelSpeaker]:
    value = _decoded(value)
    if not isinstance(value, list):
        raise InvalidOptions('channelMetadata must be a list like [{"channel": 1, "speaker": {"name": "..."}}]')
    speakers: dict[int, ChannelSpeaker] = {}
    for entry in value:
        channel = entry.get("channel") if isinstance(entry, dict) else None
        speaker = entry.get("speaker") if isinstance(entry, dict) else None
        if isinstance(channel, bool) or not isinstance(channel, int) or channel < 1 or not isinstance(speaker, dict):
            raise InvalidOptions("each channelMetadata entry needs a channel number (from 1) and a speaker object")
        name, email = speaker.get("name"), speaker.get("email")
        if (name is not None and not isinstance(name, str)) or (email is not None and not isinstance(email, str)):
            raise InvalidOptions("channelMetadata speaker name and email must be strings")
        speakers[channel] = ChannelSpeaker(name=name or None, email=email or None)
    return speakers


def _trackers(value: Any) -> tuple[TrackerOption, ...]:
    value = _decoded(value)
    if not isinstance(value, list):
        raise InvalidOptions('trackers must be a list like [{"name": "...", "vocabulary": ["..."]}]')
    trackers = []
    for entry in value:
        if not isinstance(entry, dict):
            raise InvalidOptions("each tracker must be an object with name and vocabulary")
        trackers.append(TrackerOption(_str(entry.get("name"), "tracker name"),
                                      _strings(entry.get("vocabulary", []), "tracker vocabulary")))
    return tuple(trackers)


def _redaction(value: Any) -> tuple[str, ...]:
    try:
        return parse_redaction(value)
    except RedactionError as exc:
        raise InvalidOptions(str(exc)) from exc


_PARSERS: dict[str, tuple[str, Any]] = {
    "name": ("name", _str),
    "webhookUrl": ("webhook_url", lambda v, _k: _webhook(v)),
    "languageCode": ("language_code", lambda v, _k: _language(v)),
    "customVocabulary": ("custom_vocabulary", _strings),
    "confidenceThreshold": ("confidence_threshold", lambda v, _k: _threshold(v)),
    "detectPhrases": ("detect_phrases", _bool),
    "detectEntities": ("detect_entities", _bool),
    "sentiment": ("sentiment", _bool),
    "enableAllTrackers": ("enable_all_trackers", _bool),
    "enableSeparateRecognitionPerChannel": ("separate_channels", _bool),
    "channelMetadata": ("channel_speakers", lambda v, _k: _channel_speakers(v)),
    "trackers": ("trackers", lambda v, _k: _trackers(v)),
    "redaction": ("redaction", lambda v, _k: _redaction(v)),
}


def _options(given: Mapping[str, Any]) -> ProcessOptions:
    values: dict[str, Any] = {}
    for key, raw in given.items():
        if raw is None or key not in _PARSERS:
            continue  # accepted and kept (entities, mode, enableSummary, features, metadata, ...)
        attribute, parse = _PARSERS[key]
        values[attribute] = parse(raw, key)
    kept = {key: _decoded(value) for key, value in given.items() if value is not None and key not in CREDENTIAL_PARAMS}
    return ProcessOptions(**values, given=kept)


def options_from_query(params: Mapping[str, str]) -> ProcessOptions:
    """``POST /v1/process/audio?name=...&webhookUrl=...``: every option is in the query string."""
    return _options(dict(params))


def options_from_json(body: Any) -> tuple[str, ProcessOptions]:
    """``POST /v1/process/audio/url``: ``{"url": ..., <options>}`` → (url, options)."""
    if not isinstance(body, dict):
        raise InvalidOptions("the request body must be a JSON object with a url")
    url = body.get("url")
    if not isinstance(url, str) or not url.strip():
        raise InvalidOptions("url is required")
    return url.strip(), _options({key: value for key, value in body.items() if key != "url"})
