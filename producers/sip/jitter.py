"""Reorders one RTP source's packets by sequence number and says how many are missing. Pure: no clock, no I/O.

A packet is held until ``depth`` newer ones have arrived (or it has waited ``max_hold_s``), so a packet overtaken
on the network still comes out in order; one that arrives after its successors were released is late and dropped.
RFC 3550 (appendix A.1) bounds what counts as reordering: a jump of more than ``max_dropout`` ahead or
``max_misorder`` behind means the sender restarted its sequence, and the buffer starts over from there.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from producers.sip.rtp import RtpPacket, Unwrapper

__all__ = ["JitterBuffer", "JitterStats", "Released"]

DEFAULT_DEPTH_PACKETS = 3
DEFAULT_MAX_HOLD_S = 0.2
MAX_DROPOUT = 3000
MAX_MISORDER = 100


@dataclass(frozen=True, slots=True)
class Released:
    packet: RtpPacket
    sequence: int  # extended (no wrap)
    lost_before: int  # packets never released between the previous one and this one


@dataclass
class JitterStats:
    received: int = 0
    released: int = 0
    lost: int = 0
    late: int = 0
    duplicates: int = 0
    reordered: int = 0
    restarts: int = 0


@dataclass(order=True)
class _Held:
    sequence: int
    arrival_s: float = field(compare=False)
    packet: RtpPacket = field(compare=False)


class JitterBuffer:
    def __init__(self, depth: int = DEFAULT_DEPTH_PACKETS, max_hold_s: float = DEFAULT_MAX_HOLD_S) -> None:
        if depth < 0:
            raise ValueError("depth must be >= 0")
        self.depth = depth
        self.max_hold_s = max_hold_s
        self.stats = JitterStats()
        self._sequences = Unwrapper(16)
        self._held: list[_Held] = []
        self._held_sequences: set[int] = set()
        self._last_released: int | None = None
        self._highest: int | None = None

    def __len__(self) -> int:
        return len(self._held)

    def push(self, packet: RtpPacket, arrival_s: float) -> list[Released]:
        """Add a packet; returns the packets now due, in sequence order."""
        self.stats.received += 1
        sequence = self._sequences.extend(packet.sequence)
        released: list[Released] = []
        reference = self._highest if self._highest is not None else self._last_released
        if reference is not None and (sequence - reference > MAX_DROPOUT or reference - sequence > MAX_MISORDER):
            # The sender restarted its numbering: what we hold is older audio, release it, then start over.
            released.extend(self.drain())
            self.stats.restarts += 1
            self._sequences = Unwrapper(16)
            sequence = self._sequences.extend(packet.sequence)
            self._last_released = sequence - 1
            self._highest = None
        if self._last_released is not None and sequence <= self._last_released:
            self.stats.late += 1
            return released
        if sequence in self._held_sequences:
            self.stats.duplicates += 1
            return released
        if self._highest is not None and sequence < self._highest:
            self.stats.reordered += 1
        self._highest = sequence if self._highest is None else max(self._highest, sequence)
        heapq.heappush(self._held, _Held(sequence, arrival_s, packet))
        self._held_sequences.add(sequence)
        while len(self._held) > self.depth:
            released.append(self._release())
        return released

    def due(self, now_s: float) -> list[Released]:
        """Packets that waited ``max_hold_s`` or longer (the source paused or stopped), in order."""
        released: list[Released] = []
        while self._held and now_s - self._held[0].arrival_s >= self.max_hold_s:
            released.append(self._release())
        return released

    def drain(self) -> list[Released]:
        """Everything held, in order (end of the stream or of this source)."""
        return [self._release() for _ in range(len(self._held))]

    def _release(self) -> Released:
        held = heapq.heappop(self._held)
        self._held_sequences.discard(held.sequence)
        lost = 0 if self._last_released is None else max(0, held.sequence - self._last_released - 1)
        self.stats.lost += lost
        self.stats.released += 1
        self._last_released = held.sequence
        return Released(held.packet, held.sequence, lost)
