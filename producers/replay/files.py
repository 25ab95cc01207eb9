"""Recorded audio files → 16 kHz mono s16le samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["AudioFileError", "load_audio_file"]


class AudioFileError(ValueError):
    """The file is missing or not audio we can decode."""


def load_audio_file(path: str | Path, sample_rate_hz: int = 16_000) -> np.ndarray:
    """Any format FFmpeg (via PyAV, a faster-whisper dependency) reads, downmixed and resampled."""
    from faster_whisper.audio import decode_audio

    file = Path(path)
    if not file.is_file():
        raise AudioFileError(f"{file}: no such file")
    try:
        samples = decode_audio(str(file), sampling_rate=sample_rate_hz)
    except Exception as exc:  # PyAV raises many unrelated types for undecodable input
        raise AudioFileError(f"{file}: not a readable audio file ({exc})") from exc
    if samples.size == 0:
        raise AudioFileError(f"{file}: contains no audio")
    return np.clip(samples * 32768.0, -32768, 32767).astype(np.int16)
