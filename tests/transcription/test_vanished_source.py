"""A stream whose source vanished without END: its open utterance is finalised once the worker has read all the
audio there is, not while that audio still waits in the log."""

from __future__ import annotations

import uuid

import pytest

from convoscope.kafka import ensure_topics
from convoscope.settings import Settings
from processors.transcription import worker as worker_module
from schemas.topics import ALL_TOPICS

from .kafka_helpers import collect_while_transcribing, produce_stream
from .speech import build_meeting

pytestmark = pytest.mark.e2e

IDLE_TIMEOUT_S = 1.5


async def test_the_cut_utterance_is_finalised_after_the_idle_timeout(broker, monkeypatch) -> None:
    monkeypatch.setattr(worker_module, "STREAM_IDLE_TIMEOUT_S", IDLE_TIMEOUT_S)
    settings = Settings(kafka_bootstrap=broker.bootstrap, asr_model="none")
    await ensure_topics(settings, ALL_TOPICS)
    audio, truth = build_meeting()
    second = truth[1]
    cut = (second.start_sample + second.end_sample) // 2 // 1600 * 1600  # mid-word, on a frame boundary
    conversation, stream = "1700000000000000093", uuid.uuid4().hex
    await produce_stream(settings, conversation, stream, audio[:cut], end=False)

    out = await collect_while_transcribing(settings, lambda c: len(c.finals_of(stream)) >= 2, timeout_s=60)

    first, cut_final = out.finals_of(stream)[:2]
    assert abs(first["end_sample"] - truth[0].end_sample) / 16000 <= 0.35
    assert cut_final["start_sample"] < second.start_sample + 16000 and cut_final["end_sample"] == cut
