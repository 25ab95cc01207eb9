"""RTP packets (RFC 3550 §5.1) and the 16/32-bit counters in them. Pure: no sockets.

Sequence numbers wrap at 2^16 and timestamps at 2^32; ``Unwrapper`` turns them into ever-growing integers so the
jitter buffer and the media clock can compare and subtract them directly.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["RTP_VERSION", "RtpError", "RtpPacket", "Unwrapper", "is_rtcp", "parse_rtp"]

RTP_VERSION = 2
HEADER_BYTES = 12
_HEADER = struct.Struct("!BBHII")
# RTCP packet types 192-223 share the port in rtcp-mux and look like RTP payload types 64-95 with the marker set.
RTCP_TYPES = range(192, 224)


class RtpError(ValueError):
    """Bytes that are not a well-formed RTP packet."""


@dataclass(frozen=True, slots=True)
class RtpPacket:
    payload_type: int
    marker: bool
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes


def is_rtcp(data: bytes) -> bool:
    return len(data) >= 2 and data[1] in RTCP_TYPES


def parse_rtp(data: bytes) -> RtpPacket:
    if len(data) < HEADER_BYTES:
        raise RtpError(f"{len(data)} bytes is shorter than an RTP header")
    first, second, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
    if first >> 6 != RTP_VERSION:
        raise RtpError(f"RTP version {first >> 6}, expected {RTP_VERSION}")
    offset = HEADER_BYTES + 4 * (first & 0x0F)  # CSRC list
    if first & 0x10:  # header extension: 16-bit profile, 16-bit length in 32-bit words
        if len(data) < offset + 4:
            raise RtpError("truncated header extension")
        (words,) = struct.unpack_from("!H", data, offset + 2)
        offset += 4 + 4 * words
    end = len(data)
    if first & 0x20:  # padding: the last byte says how many bytes to drop
        end -= data[-1]
    if offset > end:
        raise RtpError("header, extension and padding exceed the packet")
    return RtpPacket(second & 0x7F, bool(second & 0x80), sequence, timestamp, ssrc, bytes(data[offset:end]))


class Unwrapper:
    """Extends a wrapping counter (16-bit sequence numbers, 32-bit timestamps) to a monotonic integer: each value
    is placed in the cycle that puts it nearest to the last value seen, so reordering across a wrap works."""

    def __init__(self, bits: int) -> None:
        self._modulus = 1 << bits
        self._half = self._modulus >> 1
        self._last: int | None = None

    def extend(self, value: int) -> int:
        if self._last is None:
            self._last = value
            return value
        delta = (value - self._last) % self._modulus
        if delta >= self._half:
            delta -= self._modulus
        extended = self._last + delta
        self._last = max(self._last, extended)
        return extended
