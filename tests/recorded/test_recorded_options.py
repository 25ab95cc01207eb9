"""Async API options as Symbl's SDKs send them, job status from what the store holds, and --since parsing."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from convoscope.replay_command import parse_since
from producers.recorded.exceptions import InvalidOptions
from producers.recorded.jobs import JobStatus, StreamProgress, derive_status
from producers.recorded.options import ChannelSpeaker, options_from_json, options_from_query


def test_query_strings_carry_json_text_as_the_python_sdk_sends_it() -> None:
    options = options_from_query({
        "name": "Sales call",
        "webhookUrl": "https://example.com/hook",
        "customVocabulary": json.dumps(["Convoscope", "Kafka"]),
        "confidenceThreshold": "0.7",
        "detectPhrases": "true",
        "enableSeparateRecognitionPerChannel": "false",
        "channelMetadata": json.dumps([{"channel": 2, "speaker": {"name": "Arya", "email": "arya@example.com"}}]),
        "trackers": json.dumps([{"name": "Pricing", "vocabulary": ["price", "discount"]}]),
        "languageCode": "en-GB",
        "mode": "phone",
    })
    assert options.name == "Sales call" and options.webhook_url == "https://example.com/hook"
    assert options.custom_vocabulary == ("Convoscope", "Kafka")
    assert options.confidence_threshold == 0.7 and options.detect_phrases is True
    assert options.separate_channels is False
    assert options.speaker_of_channel(2) == ChannelSpeaker("Arya", "arya@example.com")
    assert options.speaker_of_channel(1) == ChannelSpeaker("Speaker 1")
    assert options.trackers[0].name == "Pricing" and options.trackers[0].vocabulary == ("price", "discount")
    assert options.language_code == "en-GB"
    assert options.given["mode"] == "phone", "options we do not act on are kept with the job"
    assert "access_token" not in options_from_query({"access_token": "secret", "name": "x"}).given


def test_json_bodies_need_a_url() -> None:
    url, options = options_from_json({"url": "https://example.com/a.mp3", "enableSeparateRecognitionPerChannel": True})
    assert url == "https://example.com/a.mp3" and options.separate_channels is True
    assert options_from_json({"url": "file:///srv/a.wav"})[1].separate_channels is None
    with pytest.raises(InvalidOptions, match="url is required"):
        options_from_json({"name": "no url"})


@pytest.mark.parametrize(("params", "complaint"), [
    ({"confidenceThreshold": "high"}, "confidenceThreshold"),
    ({"confidenceThreshold": "1.5"}, "confidenceThreshold"),
    ({"webhookUrl": "ftp://example.com/x"}, "webhookUrl"),
    ({"detectPhrases": "maybe"}, "detectPhrases"),
    ({"channelMetadata": '[{"channel": 0, "speaker": {}}]'}, "channel"),
    ({"languageCode": "english please"}, "languageCode"),
    ({"customVocabulary": '[1, 2]'}, "customVocabulary"),
])
def test_bad_options_are_refused_by_name(params: dict[str, str], complaint: str) -> None:
    with pytest.raises(InvalidOptions, match=complaint):
        options_from_query(params)


def test_job_status_follows_the_stored_transcripts() -> None:
    streams = ["left", "right"]
    assert derive_status(streams, {}) is JobStatus.SCHEDULED
    assert derive_status(streams, {"left": StreamProgress(stored_messages=2, last_index=1)}) is JobStatus.IN_PROGRESS
    # Transcribed, but the store has not written the last final yet.
    almost = {"left": StreamProgress(3, 2, 48_000, final_count=3), "right": StreamProgress(1, 0, 16_000, final_count=2)}
    assert derive_status(streams, almost) is JobStatus.IN_PROGRESS
    done = {**almost, "right": StreamProgress(2, 1, 32_000, final_count=2)}
    assert derive_status(streams, done) is JobStatus.COMPLETED
    # A silent channel has no finals at all: done once the transcriber says so.
    silent = {**done, "right": StreamProgress(final_count=0)}
    assert derive_status(streams, silent) is JobStatus.COMPLETED


def test_since_accepts_relative_and_absolute_times() -> None:
    now = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
    assert parse_since("2h", now) == "2026-01-02T10:00:00+00:00"
    assert parse_since("1d", now) == "2026-01-01T12:00:00+00:00"
    assert parse_since("2026-01-02T08:30:00Z", now) == "2026-01-02T08:30:00+00:00"
    assert parse_since("2026-01-02T08:30:00", now) == "2026-01-02T08:30:00+00:00"
