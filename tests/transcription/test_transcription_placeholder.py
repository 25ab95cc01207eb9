"""The benchmark-only recognizer (``CONVOSCOPE_ASR_MODEL=none``): no ASR, but real utterances and finals."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from convoscope.kafka import ensure_topics
from convoscope.settings import Settings
from processors.transcription.asr import PLACEHOLDER_TEXT, PlaceholderRecognizer
from schemas.topics import ALL_TOPICS

from .kafka_helpers import collect_while_transcribing, produce_stream
from .speech import build_meeting

END_TOLERANCE_S = 0.35


def test_placeholder_final_is_one_word_spanning_the_audio() -> None:
    recognizer = PlaceholderRecognizer(lanes=2)
    result = recognizer.transcribe_final(np.zeros(24_000, dtype=np.float32), beam_size=5)
    assert recognizer.model_name == "none" and recognizer.lanes == 2
    assert result.text == PLACEHOLDER_TEXT and result.confidence == 1.0
    assert [(w.word, w.start_s, w.end_s) for w in result.words] == [(PLACEHOLDER_TEXT, 0.0, 1.5)]
    assert recognizer.transcribe_interim(np.zeros(8_000, dtype=np.float32), max_new_tokens=8) == PLACEHOLDER_TEXT


def test_settings_accept_none_as_the_asr_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVOSCOPE_ASR_MODEL", "none")
    assert Settings().asr_model == "none"


@pytest.mark.e2e
async def test_worker_without_asr_still_endpoints_every_utterance(broker) -> None:
    """Settings alone pick the placeholder (as `convoscope worker transcribe` does): one final per utterance."""
    settings = Settings(kafka_bootstrap=broker.bootstrap, asr_model="none")
    await ensure_topics(settings, ALL_TOPICS)
    audio, truth = build_meeting()
    conversation, stream = "1700000000000000091", uuid.uuid4().hex
    await produce_stream(settings, conversation, stream, audio)

    out = await collect_while_transcribing(settings, lambda c: c.transcribed(stream), timeout_s=60)

    finals = out.finals_of(stream)
    assert [f["text"] for f in finals] == [PLACEHOLDER_TEXT] * len(truth)
    assert {f["model"] for f in finals} == {"none"}
    for final, expected in zip(finals, truth, strict=True):
        assert abs(final["end_sample"] - expected.end_sample) / 16000 <= END_TOLERANCE_S
