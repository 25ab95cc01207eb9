"""RTP parsing, counter unwrapping and the jitter buffer, alone."""

from __future__ import annotations

import pytest

from producers.sip.jitter import JitterBuffer
from producers.sip.rtp import RtpError, Unwrapper, is_rtcp, parse_rtp
from tests.sip.packets import rtp


def test_parse_skips_csrcs_extension_and_padding() -> None:
    data = rtp(7, 160, b"abc", payload_type=8, ssrc=99, marker=True, csrcs=(1, 2), extension=b"\x10\xff\x00\x00",
               padding=3)
    packet = parse_rtp(data)
    assert (packet.payload_type, packet.marker, packet.sequence, packet.timestamp, packet.ssrc) == (8, True, 7, 160, 99)
    assert packet.payload == b"abc"


@pytest.mark.parametrize("data", [b"\x80\x00", b"\x40" + bytes(11), rtp(1, 1, b"", csrcs=(1,))[:14]])
def test_parse_rejects_what_is_not_rtp(data: bytes) -> None:
    with pytest.raises(RtpError):
        parse_rtp(data)


def test_rtcp_is_told_apart() -> None:
    assert is_rtcp(bytes([0x80, 200]) + bytes(6))  # sender report
    assert not is_rtcp(rtp(1, 1, b"x", payload_type=0))


def test_unwrapper_extends_across_the_wrap_in_both_directions() -> None:
    sequences = Unwrapper(16)
    assert [sequences.extend(s) for s in (65534, 65535, 1, 0, 2)] == [65534, 65535, 65537, 65536, 65538]
    timestamps = Unwrapper(32)
    assert timestamps.extend(2**32 - 160) == 2**32 - 160
    assert timestamps.extend(0) == 2**32


def _sequences(buffer: JitterBuffer, order: list[int], start_s: float = 0.0) -> list[tuple[int, int]]:
    out = []
    for i, sequence in enumerate(order):
        for item in buffer.push(parse_rtp(rtp(sequence, sequence * 160, b"x")), start_s + i * 0.02):
            out.append((item.packet.sequence, item.lost_before))
    return out + [(item.packet.sequence, item.lost_before) for item in buffer.drain()]


def test_reordered_packets_come_out_in_order() -> None:
    buffer = JitterBuffer(depth=3)
    assert _sequences(buffer, [1, 3, 2, 5, 4, 6]) == [(s, 0) for s in range(1, 7)]
    assert buffer.stats.reordered == 2 and buffer.stats.lost == 0 and buffer.stats.late == 0


def test_missing_packets_are_counted_once_released() -> None:
    buffer = JitterBuffer(depth=2)
    assert _sequences(buffer, [1, 2, 5, 6, 7]) == [(1, 0), (2, 0), (5, 2), (6, 0), (7, 0)]
    assert buffer.stats.lost == 2


def test_late_and_duplicate_packets_are_dropped() -> None:
    buffer = JitterBuffer(depth=1)
    released = _sequences(buffer, [1, 2, 3, 3])  # the second 3 arrives while 3 is held
    assert [s for s, _ in released] == [1, 2, 3]
    assert buffer.stats.duplicates == 1
    buffer.push(parse_rtp(rtp(4, 640, b"x")), 1.0)
    buffer.push(parse_rtp(rtp(5, 800, b"x")), 1.0)
    assert buffer.push(parse_rtp(rtp(2, 320, b"x")), 1.1) == []
    assert buffer.stats.late == 1


def test_sequence_wrap_is_not_loss() -> None:
    buffer = JitterBuffer(depth=2)
    assert [s for s, lost in _sequences(buffer, [65534, 0, 65535, 1]) if lost == 0] == [65534, 65535, 0, 1]
    assert buffer.stats.lost == 0


def test_held_packets_are_released_after_max_hold() -> None:
    buffer = JitterBuffer(depth=5, max_hold_s=0.2)
    buffer.push(parse_rtp(rtp(1, 0, b"x")), 10.0)
    buffer.push(parse_rtp(rtp(2, 160, b"x")), 10.02)
    assert buffer.due(10.1) == []
    assert [r.packet.sequence for r in buffer.due(10.21)] == [1]
    assert [r.packet.sequence for r in buffer.due(10.3)] == [2]


def test_a_restarted_sequence_starts_over_without_counting_loss() -> None:
    buffer = JitterBuffer(depth=1)
    released = _sequences(buffer, [100, 101, 102, 40000, 40001])
    assert [s for s, _ in released] == [100, 101, 102, 40000, 40001]
    assert buffer.stats.restarts == 1 and buffer.stats.lost == 0
