"""Client audio → the pipeline's audio format (16 kHz, mono, s16le). Pure: no I/O, no Kafka.

Each source keeps one ``AudioNormalizer``; soxr's streaming resampler keeps filter state between
chunks, so chunk boundaries leave no clicks and sample counts add up exactly over a stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr

__all__ = [
    "PIPELINE_SAMPLE_RATE_HZ",
    "SUPPORTED_ENCODINGS",
    "AudioFormat",
    "AudioFormatError",
    "AudioNormalizer",
    "mulaw_decode",
]

PIPELINE_SAMPLE_RATE_HZ = 16_000
LINEAR16_RATES_HZ = (8_000, 48_000)
SUPPORTED_ENCODINGS = ("LINEAR16", "MULAW")


class AudioFormatError(ValueError):
    """The client asked for, or sent, audio we cannot take."""


@dataclass(frozen=True)
class AudioFormat:
    encoding: str
    sample_rate_hz: int

    @classmethod
    def parse(cls, encoding: object, sample_rate_hz: object) -> AudioFormat:
        """Validate a ``speechRecognition`` block; encodings are case-insensitive as in Symbl's docs."""
        name = str(encoding or "LINEAR16").upper()
        if name not in SUPPORTED_ENCODINGS:
            raise AudioFormatError(
                f"Unsupported encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}"
            )
        if isinstance(sample_rate_hz, bool) or not isinstance(sample_rate_hz, int | float):
            raise AudioFormatError(f"sampleRateHertz must be a number, got {sample_rate_hz!r}")
        rate = int(sample_rate_hz)
        if rate != sample_rate_hz:
            raise AudioFormatError(f"sampleRateHertz must be a whole number, got {sample_rate_hz!r}")
        if name == "MULAW" and rate != 8_000:
            raise AudioFormatError(f"Invalid sampleRateHertz {rate} for encoding MULAW; it must be 8000")
        low, high = LINEAR16_RATES_HZ
        if name == "LINEAR16" and not low <= rate <= high:
            raise AudioFormatError(
                f"Invalid sampleRateHertz {rate} for encoding LINEAR16; it must be between {low} and {high}"
            )
        return cls(name, rate)

    @property
    def bytes_per_sample(self) -> int:
        return 1 if self.encoding == "MULAW" else 2


def _mulaw_table() -> np.ndarray:
    # ITU-T G.711 µ-law expansion of all 256 codes to 16-bit linear.
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


_MULAW_TO_LINEAR = _mulaw_table()


def mulaw_decode(data: bytes) -> np.ndarray:
    return _MULAW_TO_LINEAR[np.frombuffer(data, dtype=np.uint8)]


class AudioNormalizer:
    """Converts successive client chunks of one stream to 16 kHz s16le bytes."""

    def __init__(self, audio_format: AudioFormat) -> None:
        self.format = audio_format
        self._carry = b""  # an odd trailing byte of LINEAR16 waits for its pair
        self._resampler = (
            None
            if audio_format.sample_rate_hz == PIPELINE_SAMPLE_RATE_HZ
            else soxr.ResampleStream(
                audio_format.sample_rate_hz, PIPELINE_SAMPLE_RATE_HZ, 1, dtype="int16", quality="HQ"
            )
        )

    def push(self, chunk: bytes) -> bytes:
        samples = self._decode(chunk)
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples, last=False)
        return np.ascontiguousarray(samples, dtype="<i2").tobytes()

    def flush(self) -> bytes:
        """The resampler's tail at the end of the stream."""
        if self._resampler is None:
            return b""
        tail = self._resampler.resample_chunk(np.zeros(0, dtype=np.int16), last=True)
        return np.ascontiguousarray(tail, dtype="<i2").tobytes()

    def _decode(self, chunk: bytes) -> np.ndarray:
        if self.format.encoding == "MULAW":
            return mulaw_decode(chunk)
        data = self._carry + chunk
        usable = len(data) - (len(data) % 2)
        self._carry = data[usable:]
        return np.frombuffer(data[:usable], dtype="<i2")
