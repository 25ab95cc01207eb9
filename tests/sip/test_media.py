"""G.711/G.722 decoding and one call leg's RTP → 16 kHz chunks at positions taken from the RTP timestamps."""

from __future__ import annotations

import itertools
import random
import subprocess

import numpy as np
import pytest
import soxr

from producers.sip.codecs import DTMF_PAYLOAD_TYPE, G722, PCMA, PCMU, alaw_decode, g722_available, new_decoder
from producers.sip.media import LegMedia, PcmChunk, Upsampler2x
from tests.sip.packets import packetize, rtp, sine

PACKET_SAMPLES = 160  # 20 ms at 8 kHz


def _g711(samples: np.ndarray, law: str) -> bytes:
    return subprocess.run(
        ["sox", "-t", "raw", "-r", "8000", "-e", "signed", "-b", "16", "-c", "1", "-", "-t", "raw", "-e", law,
         "-b", "8", "-"], input=samples.astype("<i2").tobytes(), capture_output=True, check=True,
    ).stdout


def _snr_db(reference: np.ndarray, decoded: np.ndarray) -> float:
    noise = reference.astype(np.float64) - decoded.astype(np.float64)
    return float(10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / max(np.sum(noise**2), 1.0)))


@pytest.mark.parametrize(("law", "codec"), [("u-law", PCMU), ("a-law", PCMA)])
def test_g711_decodes_what_sox_encoded(law: str, codec: object) -> None:
    tone = sine(0.5, 8000)
    decoded = new_decoder(codec).decode(_g711(tone, law))  # type: ignore[arg-type]
    assert len(decoded) == len(tone)
    assert _snr_db(tone, decoded) > 30  # G.711 gives ~38 dB on a loud tone; a wrong table gives < 0


def test_alaw_silence_codes_decode_to_near_zero() -> None:
    assert np.abs(alaw_decode(bytes([0xD5, 0x55]))).max() <= 8


def test_upsampler_matches_soxr_with_constant_latency() -> None:
    tone = sine(1.0, 8000, frequency_hz=1000)
    upsampler = Upsampler2x()
    pieces = [upsampler.push(tone[i : i + 160]) for i in range(0, len(tone), 160)]
    assert [len(p) for p in pieces[1:]] == [320] * 49  # every packet out at once (soxr: 6 empty, then a burst)
    out = np.concatenate([*pieces, upsampler.flush()])
    assert len(out) == 16_000
    assert (out[0:4000:2] == tone[:2000]).all()  # original samples pass through
    reference = soxr.resample(tone, 8000, 16000).astype(np.int16)
    assert _snr_db(reference[100:-100], out[100:-100]) > 40


def _leg(**kwargs: object) -> LegMedia:
    return LegMedia({0: PCMU, 8: PCMA, 9: G722}, event_payload_types=frozenset({DTMF_PAYLOAD_TYPE}),
                    **kwargs)  # type: ignore[arg-type]


def _run(leg: LegMedia, packets: list[bytes], spacing_s: float = 0.02) -> list[PcmChunk]:
    chunks: list[PcmChunk] = []
    for i, packet in enumerate(packets):
        chunks.extend(leg.receive(packet, i * spacing_s))
    return chunks + leg.finish()


def _joined(chunks: list[PcmChunk]) -> np.ndarray:
    return np.frombuffer(b"".join(c.pcm for c in chunks), dtype="<i2")


def _assert_contiguous(chunks: list[PcmChunk]) -> None:
    for before, after in itertools.pairwise(chunks):
        assert after.start_sample == before.end_sample


def test_a_steady_call_becomes_contiguous_16k_frames() -> None:
    tone = sine(1.0, 8000)
    chunks = _run(_leg(), packetize(_g711(tone, "u-law"), PACKET_SAMPLES))
    _assert_contiguous(chunks)
    assert chunks[0].start_sample == 0
    assert sum(c.samples for c in chunks) == 2 * len(tone)  # exactly one second at 16 kHz
    assert all(c.samples == 1600 for c in chunks[:-1])
    expected = soxr.resample(tone, 8000, 16000).astype(np.int16)
    assert _snr_db(expected[200:-200], _joined(chunks)[200:-200]) > 25


def test_reordered_arrival_gives_the_same_audio() -> None:
    packets = packetize(_g711(sine(1.0, 8000), "u-law"), PACKET_SAMPLES)
    shuffled = packets[:]
    for i in range(2, len(shuffled) - 1, 7):  # swap neighbours: each within the jitter buffer's depth
        shuffled[i], shuffled[i + 1] = shuffled[i + 1], shuffled[i]
    in_order, leg = _run(_leg(), packets), _leg()
    reordered = _run(leg, shuffled)
    assert [c.start_sample for c in reordered] == [c.start_sample for c in in_order]
    assert _joined(reordered).tobytes() == _joined(in_order).tobytes()
    assert leg.stats.lost == 0 and leg.stats.concealed_samples == 0


def test_a_lost_packet_is_concealed_and_positions_stay_true() -> None:
    packets = packetize(_g711(sine(1.0, 8000), "u-law"), PACKET_SAMPLES)
    leg = _leg()
    chunks = _run(leg, packets[:20] + packets[21:])
    _assert_contiguous(chunks)
    assert sum(c.samples for c in chunks) == 16_000
    assert leg.stats.lost == 1 and leg.stats.concealed_samples == 320
    concealed = _joined(chunks)[20 * 320 : 21 * 320]
    assert np.abs(concealed[:100]).max() > 1000  # the previous packet repeated, fading...
    assert np.abs(concealed[-20:]).max() < np.abs(concealed[:20]).max()  # ... out


def test_a_long_pause_in_timestamps_moves_the_position_without_inventing_audio() -> None:
    first = packetize(_g711(sine(0.4, 8000), "u-law"), PACKET_SAMPLES)
    # Silence suppression: the sender stops for 3 s, then goes on with timestamps 3 s later.
    second = packetize(_g711(sine(0.4, 8000), "u-law"), PACKET_SAMPLES, first_sequence=1020,
                       first_timestamp=5000 + 3200 + 24_000)
    leg = _leg()
    chunks = _run(leg, first + second)
    starts = [c.start_sample for c in chunks]
    assert starts[0] == 0 and 54_400 in starts  # (0.4 s + 3 s) at 16 kHz
    assert sum(c.samples for c in chunks) == 2 * 6_400  # only what was sent: twice 0.4 s
    assert leg.stats.gaps == 1 and leg.stats.lost == 0


def test_positions_follow_timestamps_not_arrival_bursts() -> None:
    packets = packetize(_g711(sine(0.6, 8000), "u-law"), PACKET_SAMPLES)
    leg = _leg()
    # All 30 packets arrive within 30 ms (a burst after a network stall): positions still span 0.6 s.
    chunks = _run(leg, packets, spacing_s=0.001)
    assert chunks[-1].end_sample == 9_600


def test_timestamps_wrapping_at_32_bits() -> None:
    packets = packetize(_g711(sine(0.4, 8000), "u-law"), PACKET_SAMPLES, first_timestamp=2**32 - 800)
    chunks = _run(_leg(), packets)
    _assert_contiguous(chunks)
    assert chunks[-1].end_sample == 6_400


def test_a_new_ssrc_is_placed_by_arrival_time() -> None:
    first = packetize(_g711(sine(0.2, 8000), "u-law"), PACKET_SAMPLES, ssrc=1)
    second = packetize(_g711(sine(0.2, 8000), "u-law"), PACKET_SAMPLES, ssrc=2, first_timestamp=77, first_sequence=9)
    leg = _leg()
    chunks = [c for i, p in enumerate(first) for c in leg.receive(p, i * 0.02)]
    chunks += [c for i, p in enumerate(second) for c in leg.receive(p, 1.0 + i * 0.02)]
    chunks += leg.finish()
    starts = [c.start_sample for c in chunks]
    assert 16_000 in starts  # second source 1.0 s after the first packet
    assert leg.stats.sources == 2


def test_events_and_unknown_payloads_are_not_audio() -> None:
    leg = _leg()
    packets = packetize(_g711(sine(0.2, 8000), "u-law"), PACKET_SAMPLES)
    dtmf = rtp(2000, 9999, b"\x01\x0a\x00\xa0", payload_type=DTMF_PAYLOAD_TYPE)
    unknown = rtp(2001, 9999, b"\x00" * 20, payload_type=18)
    chunks = _run(leg, [*packets[:5], dtmf, unknown, *packets[5:]])
    assert sum(c.samples for c in chunks) == 3200
    assert leg.stats.events == 1 and leg.stats.unknown_payload == 1


def test_held_audio_comes_out_when_the_source_pauses() -> None:
    leg = _leg(jitter_depth=3, max_hold_s=0.1)
    packets = packetize(_g711(sine(0.1, 8000), "u-law"), PACKET_SAMPLES)
    assert [c for i, p in enumerate(packets) for c in leg.receive(p, i * 0.02)] == []
    released = leg.tick(0.2)
    assert sum(c.samples for c in released) > 0 and released[0].start_sample == 0


@pytest.mark.skipif(not g722_available(), reason="the G722 package is not installed")
def test_g722_wideband_keeps_16k_positions() -> None:
    from G722 import G722 as Engine

    tone = sine(0.6, 16_000)
    payload = bytes(Engine(16_000, 64_000).encode(tone))  # 8 bits per 2 samples: 160 bytes per 20 ms
    packets = packetize(payload, 160, timestamp_step=160, payload_type=G722.payload_type)
    chunks = _run(_leg(), packets)
    _assert_contiguous(chunks)
    assert chunks[-1].end_sample == len(tone)  # RTP clock 8 kHz, audio 16 kHz: no resampling, true length


def test_random_loss_and_reordering_keep_positions_and_count_every_loss() -> None:
    rng = random.Random(7)
    packets = packetize(_g711(sine(3.0, 8000), "u-law"), PACKET_SAMPLES)
    kept_indexes = [i for i in range(len(packets)) if i == 0 or rng.random() > 0.05]
    arrival = [packets[i] for i in kept_indexes]
    for i in range(len(arrival) - 1):
        if rng.random() < 0.1:  # neighbours swapped: within the jitter buffer's depth
            arrival[i], arrival[i + 1] = arrival[i + 1], arrival[i]
    leg = _leg()
    chunks = _run(leg, arrival)
    _assert_contiguous(chunks)
    last = kept_indexes[-1]
    assert chunks[-1].end_sample == (last + 1) * 320
    assert leg.stats.lost == (last + 1) - len(kept_indexes) > 0
    assert leg.stats.late == 0
