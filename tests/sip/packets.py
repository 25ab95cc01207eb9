"""Builds RTP packets for tests: the header of RFC 3550 §5.1 around a payload."""

from __future__ import annotations

import struct

import numpy as np


def rtp(sequence: int, timestamp: int, payload: bytes, *, payload_type: int = 0, ssrc: int = 0x1234,
        marker: bool = False, csrcs: tuple[int, ...] = (), extension: bytes | None = None, padding: int = 0) -> bytes:
    first = 0x80 | len(csrcs) | (0x10 if extension is not None else 0) | (0x20 if padding else 0)
    header = struct.pack("!BBHII", first, payload_type | (0x80 if marker else 0), sequence & 0xFFFF,
                         timestamp & 0xFFFFFFFF, ssrc)
    header += b"".join(struct.pack("!I", c) for c in csrcs)
    if extension is not None:
        header += struct.pack("!HH", 0xBEDE, len(extension) // 4) + extension
    tail = b"\x00" * (padding - 1) + bytes([padding]) if padding else b""
    return header + payload + tail


def sine(seconds: float, rate_hz: int, frequency_hz: float = 440.0, amplitude: int = 8000) -> np.ndarray:
    t = np.arange(round(seconds * rate_hz)) / rate_hz
    return (np.sin(2 * np.pi * frequency_hz * t) * amplitude).astype(np.int16)


def packetize(payload: bytes, bytes_per_packet: int, *, first_sequence: int = 1000, first_timestamp: int = 5000,
              timestamp_step: int | None = None, payload_type: int = 0, ssrc: int = 0x1234) -> list[bytes]:
    """Consecutive packets of ``bytes_per_packet`` payload bytes (one byte per sample for G.711)."""
    step = timestamp_step if timestamp_step is not None else bytes_per_packet
    return [
        rtp(first_sequence + i, first_timestamp + i * step, payload[offset : offset + bytes_per_packet],
            payload_type=payload_type, ssrc=ssrc)
        for i, offset in enumerate(range(0, len(payload), bytes_per_packet))
    ]
