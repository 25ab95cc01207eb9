"""Stream state and decode policy, pure: an energy 'VAD' on synthetic tones, no model, no broker."""

from __future__ import annotations

import numpy as np
import pytest

from processors.transcription.asr import Transcription
from processors.transcription.policy import DecodePolicy, PolicyConfig, mark_interim_finished, mark_started
from processors.transcription.stream_state import VAD_CONTEXT_S, StreamState
from processors.transcription.vad import SAMPLE_RATE_HZ, WINDOW_SAMPLES

FRAME = 1600  # 100 ms


class EnergyVad:
    """Probability 0.9 for a window with sound, 0.0 otherwise; windows aligned like the real one."""

    def __init__(self, start_sample: int = 0) -> None:
        aligned = -(-start_sample // WINDOW_SAMPLES) * WINDOW_SAMPLES
        self._skip = aligned - start_sample
        self._next = aligned
        self._pending = np.zeros(0, dtype=np.float32)

    def push(self, samples: np.ndarray) -> list[tuple[int, float]]:
        drop = min(self._skip, len(samples))
        self._skip -= drop
        data = np.concatenate([self._pending, samples[drop:]])
        out = []
        while len(data) >= WINDOW_SAMPLES:
            window, data = data[:WINDOW_SAMPLES], data[WINDOW_SAMPLES:]
            out.append((self._next, 0.9 if np.abs(window).max() > 0.05 else 0.0))
            self._next += WINDOW_SAMPLES
        self._pending = data
        return out


def s(seconds: float) -> int:
    return round(seconds * SAMPLE_RATE_HZ)


def signal(*parts: tuple[str, float]) -> np.ndarray:
    pieces = []
    for kind, seconds in parts:
        n = s(seconds)
        if kind == "tone":
            pieces.append((np.sin(np.arange(n) * 0.1) * 8000).astype(np.int16))
        else:
            pieces.append(np.zeros(n, dtype=np.int16))
    return np.concatenate(pieces)


def new_stream(**kwargs) -> StreamState:
    return StreamState("stream", "conv", {}, EnergyVad, **kwargs)


def feed(state: StreamState, audio: np.ndarray, first_offset: int = 0, start_sample: int = 0) -> int:
    offset = first_offset
    for i in range(0, len(audio), FRAME):
        state.add_frame(offset, start_sample + i, audio[i : i + FRAME], now=float(offset))
        offset += 1
    return offset


def text(value: str) -> Transcription:
    return Transcription(value, (), 0.9)


def test_utterances_hold_the_commit_until_their_finals_are_acknowledged():
    audio = signal(("sil", 1.0), ("tone", 1.0), ("sil", 1.0), ("tone", 1.0), ("sil", 1.0))
    state = new_stream()
    next_offset = feed(state, audio)
    assert len(state.utterances) == 2
    first, second = state.utterances
    pre_roll = s(0.2)
    assert first.start_sample == s(1.0) // WINDOW_SAMPLES * WINDOW_SAMPLES - pre_roll
    assert second.start_sample == s(3.0) // WINDOW_SAMPLES * WINDOW_SAMPLES - pre_roll
    assert s(2.0) < first.end_sample <= s(2.0) + s(0.2)
    # Nothing final yet: the hold is the frame with the first utterance start minus the VAD context.
    assert state.hold_offset() == (first.start_sample - s(VAD_CONTEXT_S)) // FRAME

    state.apply_final(first, first.revision, first.end_sample, text("one"))
    state.apply_final(second, second.revision, second.end_sample, text("two"))
    published = state.next_publishable()
    assert published is first and published.index == 0
    assert state.next_publishable() is second and second.index == 1
    assert state.next_publishable() is None
    state.mark_acked(second)  # acks may be processed out of order; finalisation stays in order
    assert state.finalized_until_sample == 0
    state.mark_acked(first)
    assert state.finalized_until_sample == second.end_sample and state.final_count == 2
    # All finals acked, stream idle: only the VAD context before the current position is held.
    idle_retain = s(5.0) - WINDOW_SAMPLES - s(0.2) - s(VAD_CONTEXT_S)
    assert state.hold_offset() == idle_retain // FRAME

    state.end(next_offset, len(audio), now=99.0)
    assert state.fully_transcribed
    assert state.hold_offset() is not None  # the END frame stays uncommitted until STREAM_TRANSCRIBED is acked
    state.transcribed_acked = True
    assert state.hold_offset() is None


def test_speculative_final_is_used_when_the_hangover_confirms_the_end():
    state = new_stream()
    feed(state, signal(("tone", 1.0), ("sil", 0.2)))
    assert state.open is not None and state.open.end_sample is not None  # tentative end
    job = DecodePolicy().next_job([state], now=0.0)
    assert job is not None and job.kind == "final" and job.utterance is state.open
    mark_started(job)
    assert state.apply_final(job.utterance, job.revision, job.end_sample, text("hello"))
    assert state.next_publishable() is None  # not confirmed yet
    feed(state, signal(("sil", 0.5)), first_offset=20, start_sample=s(1.2))
    published = state.next_publishable()
    assert published is job.utterance and published.result.text == "hello"


def test_speculation_is_discarded_when_speech_resumes():
    state = new_stream()
    feed(state, signal(("tone", 1.0), ("sil", 0.2)))
    job = DecodePolicy().next_job([state], now=0.0)
    mark_started(job)
    feed(state, signal(("tone", 1.0), ("sil", 1.0)), first_offset=20, start_sample=s(1.2))
    assert not state.apply_final(job.utterance, job.revision, job.end_sample, text("hel"))
    assert state.next_publishable() is None
    (utterance,) = state.utterances
    assert utterance.end_sample > s(2.2) and utterance.needs_final_decode


def test_empty_transcripts_use_no_index():
    state = new_stream(final_count=4)
    feed(state, signal(("tone", 1.0), ("sil", 1.0), ("tone", 1.0), ("sil", 1.0)))
    first, second = state.utterances
    state.apply_final(first, first.revision, first.end_sample, Transcription("", (), 0.0))
    state.apply_final(second, second.revision, second.end_sample, text("real"))
    published = state.next_publishable()
    assert published is second and published.index == 4
    state.mark_acked(second)
    assert state.final_count == 5 and state.finalized_until_sample == second.end_sample


def test_resumed_stream_skips_finalised_audio_and_keeps_counting():
    audio = signal(("tone", 1.0), ("sil", 1.0), ("tone", 1.0), ("sil", 1.0))
    first_pass = new_stream()
    feed(first_pass, audio)
    finalized = first_pass.utterances[0].end_sample
    resumed = new_stream(finalized_until_sample=finalized, final_count=1)
    feed(resumed, audio[s(0.5) :], first_offset=5, start_sample=s(0.5))  # re-read from an older commit
    (utterance,) = resumed.utterances
    assert utterance.start_sample >= finalized
    assert utterance.start_sample == first_pass.utterances[1].start_sample
    resumed.apply_final(utterance, utterance.revision, utterance.end_sample, text("again"))
    assert resumed.next_publishable().index == 1


def test_duplicate_frames_are_ignored():
    state = new_stream()
    audio = signal(("tone", 1.0), ("sil", 1.0))
    feed(state, audio)
    received = state.received_until
    feed(state, audio[: FRAME * 3], first_offset=50)
    assert state.received_until == received and len(state.utterances) == 1


def test_policy_prefers_finals_oldest_first_and_interims_only_when_idle():
    policy = DecodePolicy()
    talking, finished = new_stream(), StreamState("other", "conv", {}, EnergyVad)
    feed(talking, signal(("tone", 2.0)))
    feed(finished, signal(("tone", 1.0), ("sil", 1.0)))
    now = finished.utterances[0].decodable_since
    job = policy.next_job([talking, finished], now=now)
    assert job.kind == "final" and job.stream_id == "other" and job.beam_size == 5
    mark_started(job)
    job = policy.next_job([talking, finished], now=now)
    assert job.kind == "interim" and job.stream_id == "stream"
    assert job.end_sample == talking.received_until and 8 <= job.max_new_tokens <= 96
    mark_started(job)
    assert policy.next_job([talking, finished], now=now) is None  # one interim at a time per stream
    mark_interim_finished(job)
    assert policy.next_job([talking, finished], now=now) is None  # no new second of audio yet
    feed(talking, signal(("tone", 1.0)), first_offset=100, start_sample=s(2.0))
    assert policy.next_job([talking, finished], now=now).kind == "interim"


def test_policy_coarsens_then_stops_interims_under_load_and_degrades_late_finals():
    config = PolicyConfig()
    policy = DecodePolicy(config)
    talking = new_stream()
    feed(talking, signal(("tone", 1.5)))
    first = policy.next_job([talking], now=10.0)
    mark_started(first)
    mark_interim_finished(first)
    feed(talking, signal(("tone", 1.2)), first_offset=100, start_sample=s(1.5))
    policy.record(10.0, config.load_window_s * 0.6)  # busy 60 %: interval doubles
    assert policy.next_job([talking], now=10.0) is None
    feed(talking, signal(("tone", 1.0)), first_offset=200, start_sample=s(2.7))
    assert policy.next_job([talking], now=10.0).kind == "interim"
    policy.record(10.0, config.load_window_s * 0.3)  # busy 90 %: no interims at all
    assert policy.next_job([talking], now=10.0) is None
    assert policy.load(10.0 + config.load_window_s + 1) == 0.0

    late = new_stream()
    feed(late, signal(("tone", 1.0), ("sil", 1.0)))
    (utterance,) = late.utterances
    job = policy.next_job([late], now=utterance.decodable_since + config.backlog_wait_s)
    assert job.kind == "final" and job.beam_size == config.backlog_beam_size


@pytest.mark.parametrize("gap_s", [0.3, 10.0])
def test_gaps_are_filled_or_restart_detection(gap_s):
    state = new_stream()
    feed(state, signal(("tone", 1.0)))
    feed(state, signal(("tone", 0.5), ("sil", 1.0)), first_offset=50, start_sample=s(1.0 + gap_s))
    assert state.received_until == s(1.0 + gap_s + 1.5)
    assert len(state.utterances) == (1 if gap_s < 1 else 2)


def test_no_interim_once_silence_begins_in_the_utterance():
    policy = DecodePolicy()
    state = new_stream()
    feed(state, signal(("tone", 1.5)))
    state.add_frame(100, s(1.5), signal(("sil", 0.1))[:FRAME], now=0.0)  # silence onset, before the end pad
    assert state.in_trailing_silence and state.open.end_sample is None
    assert policy.next_job([state], now=0.0) is None


def test_hold_offset_never_moves_backwards():
    state = new_stream()
    audio = signal(("sil", 1.3), ("tone", 0.7), ("sil", 0.45), ("tone", 2.0), ("sil", 1.0), ("tone", 0.3), ("sil", 1))
    holds = []
    for offset, begin in enumerate(range(0, len(audio), FRAME)):
        state.add_frame(offset, begin, audio[begin : begin + FRAME], now=float(offset))
        holds.append(state.hold_offset())
        for utterance in list(state.utterances):  # finals decode and get acknowledged as they come
            if utterance.result is None:
                state.apply_final(utterance, utterance.revision, utterance.end_sample, text("x"))
        while (published := state.next_publishable()) is not None:
            state.mark_acked(published)
    assert holds == sorted(holds), holds
    assert holds[-1] > holds[0]
