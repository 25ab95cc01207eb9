"""Audio codecs a SIP call may negotiate, decoded to int16 samples. Pure: no I/O.

G.711 (PCMU, PCMA) is what every phone system speaks; G.722 carries 16 kHz wideband audio, which Whisper
hears better, and is offered first when the ``G722`` package is installed. RFC 3551 gives G.722 an RTP clock
of 8000 Hz although its audio is sampled at 16 kHz, so the RTP clock and the audio rate are kept apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from producers.audio import mulaw_decode

__all__ = [
    "DTMF_PAYLOAD_TYPE",
    "G722",
    "PCMA",
    "PCMU",
    "Codec",
    "Decoder",
    "alaw_decode",
    "g722_available",
    "new_decoder",
    "supported_codecs",
]

DTMF_PAYLOAD_TYPE = 101  # telephone-event (RFC 4733), dynamic; we offer it so DTMF is not sent in-band


@dataclass(frozen=True)
class Codec:
    name: str
    payload_type: int
    rtp_clock_hz: int
    audio_rate_hz: int

    @property
    def rtpmap(self) -> str:
        return f"{self.payload_type} {self.name}/{self.rtp_clock_hz}"


PCMU = Codec("PCMU", 0, 8_000, 8_000)
PCMA = Codec("PCMA", 8, 8_000, 8_000)
G722 = Codec("G722", 9, 8_000, 16_000)


def _alaw_table() -> np.ndarray:
    # ITU-T G.711 A-law expansion of all 256 codes (even bits inverted on the wire) to 16-bit linear.
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0)
    )
    return np.where(sign != 0, magnitude, -magnitude).astype(np.int16)


_ALAW_TO_LINEAR = _alaw_table()


def alaw_decode(data: bytes) -> np.ndarray:
    return _ALAW_TO_LINEAR[np.frombuffer(data, dtype=np.uint8)]


def g722_available() -> bool:
    try:
        import G722  # noqa: F401
    except ImportError:
        return False
    return True


def supported_codecs() -> tuple[Codec, ...]:
    """In order of preference: wideband first, then the two G.711 laws."""
    return (G722, PCMU, PCMA) if g722_available() else (PCMU, PCMA)


class Decoder(Protocol):
    codec: Codec

    def decode(self, payload: bytes) -> np.ndarray: ...


@dataclass
class _G711Decoder:
    codec: Codec

    def decode(self, payload: bytes) -> np.ndarray:
        return mulaw_decode(payload) if self.codec.name == "PCMU" else alaw_decode(payload)


class _G722Decoder:
    """G.722 keeps adaptive state between packets, so one decoder per RTP source."""

    def __init__(self) -> None:
        from G722 import G722 as Engine

        self.codec = G722
        self._engine = Engine(G722.audio_rate_hz, 64_000)

    def decode(self, payload: bytes) -> np.ndarray:
        return np.asarray(self._engine.decode(payload), dtype=np.int16)


def new_decoder(codec: Codec) -> Decoder:
    if codec.name == "G722":
        return _G722Decoder()
    if codec.name in ("PCMU", "PCMA"):
        return _G711Decoder(codec)
    raise ValueError(f"no decoder for {codec.name}")
