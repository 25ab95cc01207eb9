"""One call leg's RTP packets → the pipeline's audio (16 kHz s16le mono) at honest positions. Pure: no I/O.

``LegMedia`` chains the pieces: RTP parsing, the jitter buffer (order by sequence number), the codec, the
media clock (RTP timestamp → sample position), loss concealment and resampling, and cuts the result into
frame-sized chunks. A chunk's ``start_sample`` comes from the RTP media timestamp, not from arrival time, so
word timings and talk-time reflect the call even when packets arrive bunched up.

Gaps in the timestamps are handled by size:
- up to ``max_fill_s`` (lost packets, short silence suppression): filled, so the audio stays continuous. The first
  ``plc_max_s`` repeat the last packet, fading out (packet loss concealment); the rest is silence.
- longer (a long pause in sending, a hold): the segment ends and a new one starts where the timestamps say, so
  positions jump and nothing is invented; the transcriber treats such a jump as missing audio.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import soxr

from producers.audio import PIPELINE_SAMPLE_RATE_HZ
from producers.sip.codecs import Codec, Decoder, new_decoder
from producers.sip.jitter import JitterBuffer, JitterStats, Released
from producers.sip.rtp import RtpError, RtpPacket, Unwrapper, is_rtcp, parse_rtp

__all__ = ["LegMedia", "MediaClock", "MediaStats", "PcmChunk", "Upsampler2x"]

DEFAULT_FRAME_SAMPLES = PIPELINE_SAMPLE_RATE_HZ // 10  # 100 ms per published frame
DEFAULT_MAX_FILL_S = 1.0
DEFAULT_PLC_MAX_S = 0.06
COMFORT_NOISE_PAYLOAD_TYPE = 13


@dataclass(frozen=True, slots=True)
class PcmChunk:
    start_sample: int  # at 16 kHz, from the first sample of the leg
    pcm: bytes  # s16le mono

    @property
    def samples(self) -> int:
        return len(self.pcm) // 2

    @property
    def end_sample(self) -> int:
        return self.start_sample + self.samples


@dataclass
class MediaStats:
    packets: int = 0
    malformed: int = 0
    rtcp: int = 0
    unknown_payload: int = 0
    events: int = 0  # telephone-event (DTMF) and comfort-noise packets
    concealed_samples: int = 0  # at 16 kHz
    gaps: int = 0  # jumps too long to fill
    sources: int = 0  # SSRCs seen
    jitter: list[JitterStats] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return sum(s.lost for s in self.jitter)

    @property
    def late(self) -> int:
        return sum(s.late for s in self.jitter)

    def summary(self) -> dict[str, str]:
        return {
            "rtp_packets": str(self.packets),
            "rtp_lost": str(self.lost),
            "rtp_late": str(self.late),
            "rtp_malformed": str(self.malformed),
            "concealed_ms": str(self.concealed_samples * 1000 // PIPELINE_SAMPLE_RATE_HZ),
            "timestamp_gaps": str(self.gaps),
        }


class MediaClock:
    """The RTP timestamps of one source as sample positions at 16 kHz in the leg."""

    def __init__(self, rtp_clock_hz: int, first_timestamp: int, origin_sample: int) -> None:
        self.rtp_clock_hz = rtp_clock_hz
        self.origin_sample = origin_sample
        self._timestamps = Unwrapper(32)
        self._first = self._timestamps.extend(first_timestamp)

    def position(self, timestamp: int) -> int:
        elapsed = self._timestamps.extend(timestamp) - self._first
        return self.origin_sample + elapsed * PIPELINE_SAMPLE_RATE_HZ // self.rtp_clock_hz


class Upsampler2x:
    """8 kHz → 16 kHz for narrowband codecs, packet by packet with constant latency.

    soxr's streaming resampler returns output in ~100 ms bursts (6 packets of nothing, then 1,660 samples), which
    would hold back the end of every utterance; this windowed-sinc interpolator returns 2 samples per input sample
    every packet. Its 1 ms delay is compensated: the first ``DELAY`` outputs are dropped and ``flush`` pushes them
    out at the end, so output sample k is input time k/16000 exactly and the lengths add up.
    """

    DELAY = 16  # output samples either side of the filter's centre
    KAISER_BETA = 7.0

    def __init__(self) -> None:
        n = np.arange(-self.DELAY, self.DELAY + 1)
        # sinc(n/2): 1 at the centre and 0 at every other even tap, so original samples pass through unchanged.
        self._taps = (np.sinc(n / 2) * np.kaiser(len(n), self.KAISER_BETA)).astype(np.float32)
        self._history = np.zeros(2 * self.DELAY, dtype=np.float32)
        self._to_drop = self.DELAY

    def _filter(self, upsampled: np.ndarray) -> np.ndarray:
        signal = np.concatenate([self._history, upsampled])
        self._history = signal[-2 * self.DELAY :]
        out = np.convolve(signal, self._taps, mode="valid")
        if self._to_drop:
            dropped = min(self._to_drop, len(out))
            out = out[dropped:]
            self._to_drop -= dropped
        return np.clip(np.rint(out), -32768, 32767).astype(np.int16)

    def push(self, samples: np.ndarray) -> np.ndarray:
        upsampled = np.zeros(2 * len(samples), dtype=np.float32)
        upsampled[0::2] = samples
        return self._filter(upsampled)

    def flush(self) -> np.ndarray:
        return self._filter(np.zeros(self.DELAY, dtype=np.float32))


class _Segment:
    """Continuous audio at one codec rate from ``start_sample``; resampled to 16 kHz with filter state kept."""

    def __init__(self, audio_rate_hz: int, start_sample: int) -> None:
        self.audio_rate_hz = audio_rate_hz
        self.start_sample = start_sample
        self.input_samples = 0
        self.emitted = 0
        self.pending = bytearray()
        self.last_input: np.ndarray = np.zeros(0, dtype=np.int16)
        self._upsampler = Upsampler2x() if 2 * audio_rate_hz == PIPELINE_SAMPLE_RATE_HZ else None
        self._resampler = (
            None
            if audio_rate_hz == PIPELINE_SAMPLE_RATE_HZ or self._upsampler is not None
            else soxr.ResampleStream(audio_rate_hz, PIPELINE_SAMPLE_RATE_HZ, 1, dtype="int16", quality="HQ")
        )

    def expected_position(self) -> int:
        """Where the next input sample belongs, at 16 kHz."""
        return self.start_sample + self.input_samples * PIPELINE_SAMPLE_RATE_HZ // self.audio_rate_hz

    def feed(self, samples: np.ndarray) -> None:
        self.input_samples += len(samples)
        if self._upsampler is not None:
            out = self._upsampler.push(samples)
        elif self._resampler is not None:
            out = self._resampler.resample_chunk(samples, last=False)
        else:
            out = samples
        self.pending += np.ascontiguousarray(out, dtype="<i2").tobytes()

    def chunks(self, frame_samples: int, *, partial: bool = False, last: bool = False) -> list[PcmChunk]:
        if last and self._upsampler is not None:
            self.pending += np.ascontiguousarray(self._upsampler.flush(), dtype="<i2").tobytes()
            self._upsampler = None
        if last and self._resampler is not None:
            tail = self._resampler.resample_chunk(np.zeros(0, dtype=np.int16), last=True)
            self.pending += np.ascontiguousarray(tail, dtype="<i2").tobytes()
            self._resampler = None
        frame_bytes = 2 * frame_samples
        out: list[PcmChunk] = []
        while len(self.pending) >= frame_bytes or ((partial or last) and self.pending):
            take = min(frame_bytes, len(self.pending))
            out.append(PcmChunk(self.start_sample + self.emitted, bytes(self.pending[:take])))
            del self.pending[:take]
            self.emitted += take // 2
        return out


@dataclass
class _Source:
    """One SSRC: its own sequence space, timestamp space and codec state."""

    ssrc: int
    origin_sample: int
    jitter: JitterBuffer
    clock: MediaClock | None = None
    decoders: dict[int, Decoder] = field(default_factory=dict)
    last_arrival_s: float = 0.0


class LegMedia:
    def __init__(
        self,
        codecs: Mapping[int, Codec],
        *,
        event_payload_types: frozenset[int] = frozenset(),
        jitter_depth: int = 3,
        max_hold_s: float = 0.2,
        frame_samples: int = DEFAULT_FRAME_SAMPLES,
        max_fill_s: float = DEFAULT_MAX_FILL_S,
        plc_max_s: float = DEFAULT_PLC_MAX_S,
    ) -> None:
        self.codecs = dict(codecs)
        self.event_payload_types = event_payload_types | {COMFORT_NOISE_PAYLOAD_TYPE}
        self.jitter_depth = jitter_depth
        self.max_hold_s = max_hold_s
        self.frame_samples = frame_samples
        self.max_fill_samples = round(max_fill_s * PIPELINE_SAMPLE_RATE_HZ)
        self.plc_max_samples = round(plc_max_s * PIPELINE_SAMPLE_RATE_HZ)
        self.stats = MediaStats()
        self.first_arrival_s: float | None = None
        self.last_arrival_s: float | None = None
        self._source: _Source | None = None
        self._segment: _Segment | None = None
        self._emitted_until = 0

    def set_codecs(self, codecs: Mapping[int, Codec]) -> None:
        """A re-INVITE renegotiated the payload types."""
        self.codecs = dict(codecs)

    # -- input ---------------------------------------------------------------------------------

    def receive(self, data: bytes, arrival_s: float) -> list[PcmChunk]:
        """One datagram from the leg's RTP port; returns the audio that became ready."""
        if is_rtcp(data):
            self.stats.rtcp += 1
            return []
        try:
            packet = parse_rtp(data)
        except RtpError:
            self.stats.malformed += 1
            return []
        if packet.payload_type not in self.codecs and packet.payload_type not in self.event_payload_types:
            self.stats.unknown_payload += 1
            return []
        self.stats.packets += 1
        if self.first_arrival_s is None:
            self.first_arrival_s = arrival_s
        self.last_arrival_s = arrival_s
        out: list[PcmChunk] = []
        source = self._source
        if source is None or source.ssrc != packet.ssrc:
            if source is not None:
                out.extend(self._play_all(source, source.jitter.drain()))
            source = self._new_source(packet.ssrc, arrival_s)
        source.last_arrival_s = arrival_s
        out.extend(self._play_all(source, source.jitter.push(packet, arrival_s)))
        return out

    def tick(self, now_s: float) -> list[PcmChunk]:
        """Release audio held too long (the source paused or stopped); call every few tens of milliseconds."""
        source = self._source
        if source is None:
            return []
        out = self._play_all(source, source.jitter.due(now_s))
        if not len(source.jitter) and self._segment is not None and now_s - source.last_arrival_s >= self.max_hold_s:
            out.extend(self._segment.chunks(self.frame_samples, partial=True))
        return self._advance(out)

    def finish(self) -> list[PcmChunk]:
        """The leg ended: everything still held, and the resampler's tail."""
        out: list[PcmChunk] = []
        if self._source is not None:
            out.extend(self._play_all(self._source, self._source.jitter.drain()))
        out.extend(self._close_segment())
        return self._advance(out)

    @property
    def position(self) -> int:
        """End of the audio returned so far, at 16 kHz."""
        return self._emitted_until

    # -- internals ---------------------------------------------------------------------------------

    def _new_source(self, ssrc: int, arrival_s: float) -> _Source:
        origin = 0
        if self.first_arrival_s is not None and self._source is not None:
            # A new SSRC has its own timestamp space: place it by arrival time, never before what came out.
            by_clock = round((arrival_s - self.first_arrival_s) * PIPELINE_SAMPLE_RATE_HZ)
            expected = self._segment.expected_position() if self._segment is not None else 0
            origin = max(by_clock, expected, self._emitted_until)
        jitter = JitterBuffer(self.jitter_depth, self.max_hold_s)
        self.stats.jitter.append(jitter.stats)
        self.stats.sources += 1
        self._source = _Source(ssrc, origin, jitter)
        return self._source

    def _play_all(self, source: _Source, released: list[Released]) -> list[PcmChunk]:
        out: list[PcmChunk] = []
        for item in released:
            out.extend(self._play(source, item.packet))
        return self._advance(out)

    def _advance(self, chunks: list[PcmChunk]) -> list[PcmChunk]:
        if chunks:
            self._emitted_until = max(self._emitted_until, chunks[-1].end_sample)
        return chunks

    def _close_segment(self) -> list[PcmChunk]:
        segment, self._segment = self._segment, None
        if segment is None:
            return []
        return segment.chunks(self.frame_samples, last=True)

    def _play(self, source: _Source, packet: RtpPacket) -> list[PcmChunk]:
        if packet.payload_type in self.event_payload_types:
            self.stats.events += 1
            return []
        codec = self.codecs.get(packet.payload_type)
        if codec is None:  # renegotiated away while held
            self.stats.unknown_payload += 1
            return []
        if source.clock is None or source.clock.rtp_clock_hz != codec.rtp_clock_hz:
            position = source.origin_sample if source.clock is None else source.clock.position(packet.timestamp)
            source.clock = MediaClock(codec.rtp_clock_hz, packet.timestamp, position)
        position = source.clock.position(packet.timestamp)
        decoder = source.decoders.get(packet.payload_type)
        if decoder is None:
            decoder = source.decoders[packet.payload_type] = new_decoder(codec)
        samples = decoder.decode(packet.payload)
        out: list[PcmChunk] = []
        segment = self._segment
        if segment is not None and segment.audio_rate_hz != codec.audio_rate_hz:
            out.extend(self._close_segment())
            segment = None
        if segment is not None:
            gap = position - segment.expected_position()
            if gap > self.max_fill_samples:
                self.stats.gaps += 1
                out.extend(self._close_segment())
                segment = None
            elif gap > 0:
                segment.feed(self._concealment(segment, gap))
                self.stats.concealed_samples += gap
            elif gap < 0:
                overlap = -gap * codec.audio_rate_hz // PIPELINE_SAMPLE_RATE_HZ
                samples = samples[overlap:]
        if segment is None:
            start = max(position, self._emitted_until, out[-1].end_sample if out else 0)
            segment = self._segment = _Segment(codec.audio_rate_hz, start)
        if len(samples):
            segment.feed(samples)
            segment.last_input = samples
        out.extend(segment.chunks(self.frame_samples))
        return out

    def _concealment(self, segment: _Segment, gap_samples: int) -> np.ndarray:
        """``gap_samples`` (at 16 kHz) of stand-in audio at the segment's rate: the last packet repeated with a
        linear fade for up to ``plc_max_s``, silence after that."""
        rate = segment.audio_rate_hz
        length = gap_samples * rate // PIPELINE_SAMPLE_RATE_HZ
        filler = np.zeros(length, dtype=np.int16)
        last = segment.last_input
        repeat = min(length, self.plc_max_samples * rate // PIPELINE_SAMPLE_RATE_HZ)
        if len(last) and repeat:
            pattern = np.resize(last, repeat).astype(np.float32)
            fade = np.linspace(1.0, 0.0, repeat, endpoint=False, dtype=np.float32)
            filler[:repeat] = (pattern * fade).astype(np.int16)
        return filler
