"""Utterance endpointing: a pure state machine over (window_start_sample, speech probability).

States: idle → speech → trailing (silence seen, hangover running) → idle, or back to speech.

Events, all positions in samples from stream start:
- ``SpeechStarted(start)``: first voiced window; ``start`` includes the pre-roll.
- ``EndTentative(start, end)``: silence has lasted ``end_pad_s``; ``end`` is where the utterance will end
  if the silence holds. A caller may decode [start, end) now (speculative final).
- ``SpeechResumed(start)``: speech came back after an ``EndTentative``; the speculation is void.
- ``UtteranceEnded(start, end, forced)``: the hangover confirmed the end (same ``end`` as the tentative
  one), or a too-long utterance was split (``forced``), or the stream ended.
- ``UtteranceDiscarded(start, end)``: too little voiced audio to be speech (a click, a breath).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from processors.transcription.vad import SAMPLE_RATE_HZ, WINDOW_SAMPLES

__all__ = [
    "EndTentative",
    "EndpointEvent",
    "Endpointer",
    "EndpointerConfig",
    "SpeechResumed",
    "SpeechStarted",
    "UtteranceDiscarded",
    "UtteranceEnded",
]


@dataclass(frozen=True)
class EndpointerConfig:
    speech_on_probability: float = 0.5
    speech_off_probability: float = 0.35
    pre_roll_s: float = 0.2
    end_pad_s: float = 0.1
    """Silence kept after the last voiced window; also when the speculative final may start."""
    end_hangover_s: float = 0.4
    """Silence that confirms an utterance end. espeak-ng pauses ~0.1 s at commas and ~0.25 s between
    sentences; people pause longer, so 0.4 s rarely splits a sentence."""
    min_voiced_s: float = 0.15
    max_utterance_s: float = 25.0
    """Whisper sees at most 30 s; longer speech is split at the least voiced window of the last
    ``split_search_s``."""
    split_search_s: float = 3.0

    def samples(self, seconds: float) -> int:
        return round(seconds * SAMPLE_RATE_HZ)


@dataclass(frozen=True)
class SpeechStarted:
    start_sample: int


@dataclass(frozen=True)
class EndTentative:
    start_sample: int
    end_sample: int


@dataclass(frozen=True)
class SpeechResumed:
    start_sample: int


@dataclass(frozen=True)
class UtteranceEnded:
    start_sample: int
    end_sample: int
    forced: bool = False


@dataclass(frozen=True)
class UtteranceDiscarded:
    start_sample: int
    end_sample: int


EndpointEvent = SpeechStarted | EndTentative | SpeechResumed | UtteranceEnded | UtteranceDiscarded

_IDLE, _SPEECH, _TRAILING = "idle", "speech", "trailing"


class Endpointer:
    """Feed every window of one stream in order with ``push``; call ``flush`` at the end of the stream."""

    def __init__(self, config: EndpointerConfig | None = None, floor_sample: int = 0) -> None:
        self.config = config or EndpointerConfig()
        c = self.config
        self._pre_roll = c.samples(c.pre_roll_s)
        self._end_pad = c.samples(c.end_pad_s)
        self._hangover = c.samples(c.end_hangover_s)
        self._min_voiced = c.samples(c.min_voiced_s)
        self._max_utterance = c.samples(c.max_utterance_s)
        self._split_search = c.samples(c.split_search_s)
        self._floor = floor_sample  # no utterance may start before this (end of the previous one)
        self._state = _IDLE
        self._start = 0
        self._onset = 0  # first silent window of the trailing state
        self._voiced = 0  # voiced samples in the current utterance
        self._tentative = False
        self._history: deque[tuple[int, float]] = deque()  # windows of the open utterance, for splits
        self.position = floor_sample  # end of the last window pushed

    @property
    def in_utterance(self) -> bool:
        return self._state != _IDLE

    @property
    def utterance_start(self) -> int | None:
        return self._start if self._state != _IDLE else None

    @property
    def trailing(self) -> bool:
        """Silence seen inside an utterance: an end (and its final decode) may be imminent."""
        return self._state == _TRAILING

    @property
    def tentative(self) -> bool:
        return self._tentative

    def push(self, window_start: int, probability: float) -> list[EndpointEvent]:
        c = self.config
        window_end = window_start + WINDOW_SAMPLES
        self.position = window_end
        events: list[EndpointEvent] = []
        if self._state == _IDLE:
            if probability >= c.speech_on_probability:
                self._start = max(self._floor, window_start - self._pre_roll)
                self._state = _SPEECH
                self._voiced = WINDOW_SAMPLES
                self._history.clear()
                self._history.append((window_start, probability))
                events.append(SpeechStarted(self._start))
            return events

        self._history.append((window_start, probability))
        if self._state == _SPEECH:
            if probability >= c.speech_off_probability:
                if probability >= c.speech_on_probability:
                    self._voiced += WINDOW_SAMPLES
                if window_end - self._start >= self._max_utterance:
                    events.extend(self._force_split(window_end))
                return events
            self._state = _TRAILING
            self._onset = window_start
            self._tentative = False
        elif probability >= c.speech_on_probability:  # trailing, and speech is back
            self._state = _SPEECH
            self._voiced += WINDOW_SAMPLES
            if self._tentative:
                self._tentative = False
                events.append(SpeechResumed(self._start))
            return events

        # trailing silence
        end = self._onset + self._end_pad
        if not self._tentative and window_end >= end and self._voiced >= self._min_voiced:
            self._tentative = True
            events.append(EndTentative(self._start, end))
        if window_end >= self._onset + self._hangover:
            events.append(self._close(end))
        return events

    def flush(self, end_of_stream_sample: int | None = None) -> list[EndpointEvent]:
        """The stream ended (or went idle): close the open utterance at the last audio."""
        if self._state == _IDLE:
            return []
        last = end_of_stream_sample if end_of_stream_sample is not None else self.position
        end = min(self._onset + self._end_pad, last) if self._state == _TRAILING else last
        return [self._close(max(end, self._start))]

    def _close(self, end: int) -> UtteranceEnded | UtteranceDiscarded:
        start, voiced = self._start, self._voiced
        self._state = _IDLE
        self._tentative = False
        self._floor = end
        self._history.clear()
        if voiced < self._min_voiced:
            return UtteranceDiscarded(start, end)
        return UtteranceEnded(start, end)

    def _force_split(self, window_end: int) -> list[EndpointEvent]:
        search_from = window_end - self._split_search
        candidates = [(p, s) for s, p in self._history if s >= search_from and s > self._start]
        _, split = min(candidates) if candidates else (0.0, window_end)
        first = UtteranceEnded(self._start, split, forced=True)
        self._start = split
        self._floor = split
        kept = [(s, p) for s, p in self._history if s >= split]
        self._history = deque(kept)
        self._voiced = sum(WINDOW_SAMPLES for _, p in kept if p >= self.config.speech_on_probability)
        return [first, SpeechStarted(split)]
