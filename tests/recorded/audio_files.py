"""Recordings in the formats users upload, written with PyAV (and the wave module) from int16 samples."""

from __future__ import annotations

import wave
from pathlib import Path

import av
import numpy as np

__all__ = ["CODECS", "write_recording"]

SAMPLE_RATE_HZ = 16_000
# extension → encoder
CODECS = {".mp3": "libmp3lame", ".flac": "flac", ".ogg": "libopus", ".m4a": "aac"}


def write_recording(path: Path, channels: list[np.ndarray], rate_hz: int = SAMPLE_RATE_HZ) -> Path:
    """One int16 array per channel (equal lengths) → ``path``, in the format its extension names."""
    planes = np.stack([c.astype(np.int16) for c in channels])
    layout = "mono" if len(channels) == 1 else "stereo"
    if path.suffix == ".wav":
        with wave.open(str(path), "wb") as out:
            out.setnchannels(len(channels))
            out.setsampwidth(2)
            out.setframerate(rate_hz)
            out.writeframes(np.ascontiguousarray(planes.T).astype("<i2").tobytes())
        return path
    with av.open(str(path), "w") as container:
        stream = container.add_stream(CODECS[path.suffix], rate=rate_hz, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planes.T).reshape(1, -1), format="s16",
                                           layout=layout)
        frame.sample_rate = rate_hz
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path
