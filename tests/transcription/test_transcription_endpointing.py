"""Endpointing on synthetic probability sequences: exact event positions, no audio or model."""

from __future__ import annotations

from processors.transcription.endpointing import (
    Endpointer,
    EndpointerConfig,
    EndTentative,
    SpeechResumed,
    SpeechStarted,
    UtteranceDiscarded,
    UtteranceEnded,
)
from processors.transcription.vad import WINDOW_SAMPLES

W = WINDOW_SAMPLES
CONFIG = EndpointerConfig()
PRE_ROLL = CONFIG.samples(CONFIG.pre_roll_s)
PAD = CONFIG.samples(CONFIG.end_pad_s)


def windows(seconds: float) -> int:
    return round(seconds * 16_000 / W)


def run(probabilities: list[float], endpointer: Endpointer | None = None, first_window: int = 0):
    endpointer = endpointer or Endpointer(CONFIG)
    events = []
    for i, probability in enumerate(probabilities):
        for event in endpointer.push((first_window + i) * W, probability):
            events.append((first_window + i, event))
    return endpointer, events


def test_one_utterance_tentative_then_confirmed_at_the_same_end():
    probs = [0.05] * windows(1.0) + [0.9] * windows(2.0) + [0.05] * windows(1.0)
    speech_first = windows(1.0)
    onset_window = speech_first + windows(2.0)
    _, events = run(probs)
    kinds = [type(e) for _, e in events]
    assert kinds == [SpeechStarted, EndTentative, UtteranceEnded]
    (_, started), (tentative_at, tentative), (ended_at, ended) = events
    assert started.start_sample == speech_first * W - PRE_ROLL
    assert tentative.end_sample == ended.end_sample == onset_window * W + PAD
    # Speculation starts once the end pad is observed; confirmation after the hangover.
    assert (tentative_at + 1) * W >= onset_window * W + PAD > tentative_at * W
    hangover = CONFIG.samples(CONFIG.end_hangover_s)
    assert (ended_at + 1) * W >= onset_window * W + hangover > ended_at * W
    assert not ended.forced


def test_pause_shorter_than_hangover_does_not_split_and_voids_speculation():
    pause = [0.1] * windows(0.25)  # a sentence pause: longer than the end pad, shorter than the hangover
    probs = [0.9] * windows(1.0) + pause + [0.9] * windows(1.0) + [0.0] * windows(1.0)
    _, events = run(probs)
    kinds = [type(e) for _, e in events]
    assert kinds == [SpeechStarted, EndTentative, SpeechResumed, EndTentative, UtteranceEnded]
    assert events[-1][1].end_sample == (windows(1.0) * 2 + windows(0.25)) * W + PAD


def test_comma_pause_shorter_than_end_pad_emits_nothing():
    probs = [0.9] * windows(1.0) + [0.1] * 2 + [0.9] * windows(1.0)
    _, events = run(probs)
    assert [type(e) for _, e in events] == [SpeechStarted]


def test_hysteresis_keeps_speech_between_off_and_on_thresholds():
    probs = [0.9] * 5 + [0.4] * windows(1.0) + [0.0] * windows(1.0)
    _, events = run(probs)
    assert [type(e) for _, e in events] == [SpeechStarted, EndTentative, UtteranceEnded]
    assert events[-1][1].end_sample == (5 + windows(1.0)) * W + PAD


def test_blip_is_discarded_not_transcribed():
    probs = [0.0] * 10 + [0.9] * 2 + [0.0] * windows(1.0)  # 64 ms of "voice": a click
    _, events = run(probs)
    assert [type(e) for _, e in events] == [SpeechStarted, UtteranceDiscarded]


def test_pre_roll_never_reaches_into_the_previous_utterance():
    probs = [0.9] * windows(1.0) + [0.0] * windows(0.45) + [0.9] * windows(1.0) + [0.0] * windows(1.0)
    _, events = run(probs)
    ended = [e for _, e in events if isinstance(e, UtteranceEnded)]
    starts = [e for _, e in events if isinstance(e, SpeechStarted)]
    assert len(ended) == 2
    assert starts[1].start_sample >= ended[0].end_sample
    assert starts[0].start_sample == 0  # clamped at the stream start


def test_long_speech_is_split_at_the_least_voiced_window():
    config = EndpointerConfig(max_utterance_s=5.0, split_search_s=2.0)
    probs = [0.9] * windows(10.0)
    dip = windows(4.0)
    probs[dip] = 0.4  # not silence, but the best place to cut
    endpointer = Endpointer(config)
    _, events = run(probs, endpointer)
    ends = [e for _, e in events if isinstance(e, UtteranceEnded)]
    assert ends[0].forced and ends[0].start_sample == 0 and ends[0].end_sample == dip * W
    starts = [e for _, e in events if isinstance(e, SpeechStarted)]
    assert starts[1].start_sample == dip * W
    assert all(e.end_sample - e.start_sample <= config.samples(config.max_utterance_s) for e in ends)


def test_flush_closes_speech_at_the_end_of_the_stream():
    endpointer, _ = run([0.9] * windows(1.0))
    events = endpointer.flush(windows(1.0) * W)
    assert events == [UtteranceEnded(0, windows(1.0) * W)]
    assert endpointer.flush() == []


def test_flush_in_trailing_silence_uses_the_tentative_end():
    endpointer, events = run([0.9] * windows(1.0) + [0.0] * windows(0.2))
    tentative = next(e for _, e in events if isinstance(e, EndTentative))
    assert endpointer.flush(endpointer.position) == [UtteranceEnded(0, tentative.end_sample)]


def test_resumed_stream_starts_at_its_floor():
    endpointer = Endpointer(CONFIG, floor_sample=100 * W)
    _, events = run([0.9] * 5 + [0.0] * windows(1.0), endpointer, first_window=100)
    assert events[0][1] == SpeechStarted(100 * W)
