"""Per-stream transcription state: audio buffer, endpointing, utterances in flight, commit hold point.

Pure: no Kafka, no threads, no clock (callers pass ``now``). The worker feeds frames in order,
asks the policy for decode jobs, applies results, publishes what ``next_publishable`` returns and
reports acknowledgements back. Positions are sample counts from the start of the stream.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from processors.transcription.asr import Transcription
from processors.transcription.audio_buffer import AudioBuffer
from processors.transcription.endpointing import (
    Endpointer,
    EndpointerConfig,
    EndTentative,
    SpeechResumed,
    SpeechStarted,
    UtteranceDiscarded,
    UtteranceEnded,
)
from processors.transcription.vad import SAMPLE_RATE_HZ, WINDOW_SAMPLES, ProbabilitySource, int16_to_float32

__all__ = ["MAX_GAP_FILL_S", "VAD_CONTEXT_S", "FrameRef", "StreamState", "Utterance"]

log = logging.getLogger(__name__)

VAD_CONTEXT_S = 0.5
"""Audio kept (and re-read after a takeover) before an utterance, so a fresh VAD warms up on it."""
MAX_GAP_FILL_S = 5.0
"""A gap in a stream's samples up to this long is filled with silence; a longer one restarts the VAD."""


@dataclass
class Utterance:
    start_sample: int
    end_sample: int | None = None
    """None while speech goes on; set by a tentative end (speculation) or the confirmed end."""
    confirmed: bool = False
    confirmed_at: float | None = None
    forced: bool = False
    revision: int = 0
    """Bumped whenever the audio to decode changes (speech resumed), so stale decodes are dropped."""
    decodable_since: float | None = None
    decoding: bool = False
    result: Transcription | None = None
    sent: bool = False
    acked: bool = False
    index: int | None = None
    last_interim_end: int = 0
    interim_decoding: bool = False

    @property
    def needs_final_decode(self) -> bool:
        return self.end_sample is not None and self.result is None and not self.decoding


@dataclass(frozen=True)
class FrameRef:
    offset: int
    start_sample: int
    end_sample: int
    is_end: bool = False


@dataclass
class StreamState:
    """One audio stream as the transcription worker sees it."""

    stream_id: str
    conversation_id: str
    metadata: dict[str, object]
    """Fields copied into every final: app_id, speaker, stream_started_at_ms, stream_offset_ms, language."""
    vad_factory: Callable[[int], ProbabilitySource]
    finalized_until_sample: int = 0
    final_count: int = 0
    endpointer_config: EndpointerConfig = field(default_factory=EndpointerConfig)
    live: bool = True
    """False for recorded audio sent faster than real time (the frames' ``live`` field): no interims, and its
    finals wait while a live stream needs the decoder."""

    def __post_init__(self) -> None:
        self._next_index = self.final_count
        self._buffer = AudioBuffer(self.finalized_until_sample)
        self._frames: deque[FrameRef] = deque()
        self.utterances: deque[Utterance] = deque()  # closed, not yet acknowledged, in order
        self.open: Utterance | None = None
        self.ended = False
        self.end_offset: int | None = None
        self.transcribed_requested = False
        self.transcribed_acked = False
        self.last_frame_at = 0.0
        self._started = False
        self._restart_detection(self.finalized_until_sample)

    @property
    def received_until(self) -> int:
        """The stream position after the last sample received: the audio buffer's end."""
        return self._buffer.end

    def _restart_detection(self, sample: int) -> None:
        self._vad = self.vad_factory(sample)
        self._endpointer = Endpointer(self.endpointer_config, floor_sample=sample)

    # --- input ----------------------------------------------------------------------------------

    def add_frame(self, offset: int, start_sample: int, pcm: np.ndarray, now: float) -> None:
        """Append one AUDIO frame (int16 samples). Audio already seen or already finalised is skipped."""
        if self.ended:
            return
        self.last_frame_at = now
        end_sample = start_sample + len(pcm)
        if end_sample <= self.received_until:
            return  # a duplicate, or audio finalised before a takeover
        if not self._started and start_sample > self.received_until:
            # First frame seen (a takeover re-reads from the committed offset, not from sample 0).
            self._buffer.restart(start_sample)
            self._restart_detection(start_sample)
        self._started = True
        if start_sample > self.received_until:
            gap = start_sample - self.received_until
            if gap <= MAX_GAP_FILL_S * SAMPLE_RATE_HZ:
                log.warning(
                    "stream %s: %d missing samples before %d, filled with silence", self.stream_id, gap, start_sample
                )
                self._frames.append(FrameRef(offset, self.received_until, start_sample))
                self._append_audio(np.zeros(gap, dtype=np.int16), now)
            else:
                log.warning(
                    "stream %s: %d missing samples before %d, restarting detection", self.stream_id, gap, start_sample
                )
                # Undecoded utterances before the gap lose their audio; a gateway never leaves such gaps.
                self._close_open_utterance(self.received_until, now)
                self._buffer.restart(start_sample)
                self._restart_detection(start_sample)
        skip = self.received_until - start_sample
        self._frames.append(FrameRef(offset, start_sample, end_sample))
        self._append_audio(pcm[skip:], now)

    def end(self, offset: int, end_sample: int | None, now: float) -> None:
        """The END frame: close the open utterance at the last audio."""
        if self.ended:
            return
        self.ended = True
        self.end_offset = offset
        self._frames.append(FrameRef(offset, self.received_until, self.received_until, is_end=True))
        last = self.received_until if end_sample is None else min(end_sample, self.received_until)
        self._apply_events(self._endpointer.flush(last), now)

    def flush_idle(self, now: float) -> None:
        """No audio for a long time (the source vanished without END): finalise what is open."""
        self._apply_events(self._endpointer.flush(self.received_until), now)

    def _append_audio(self, pcm: np.ndarray, now: float) -> None:
        self._buffer.append(pcm)
        windows = self._vad.push(int16_to_float32(pcm))
        for window_start, probability in windows:
            self._apply_events(self._endpointer.push(window_start, probability), now)

    def _apply_events(self, events: list, now: float) -> None:
        for event in events:
            if isinstance(event, SpeechStarted):
                self.open = Utterance(event.start_sample, last_interim_end=event.start_sample)
            elif isinstance(event, EndTentative) and self.open is not None:
                self.open.end_sample = event.end_sample
                self.open.decodable_since = now
            elif isinstance(event, SpeechResumed) and self.open is not None:
                self.open.end_sample = None
                self.open.decodable_since = None
                self.open.result = None
                self.open.revision += 1
            elif isinstance(event, UtteranceEnded):
                self._close_open_utterance(event.end_sample, now, forced=event.forced)
            elif isinstance(event, UtteranceDiscarded):
                self.open = None
        self._trim_buffer()

    def _close_open_utterance(self, end_sample: int, now: float, forced: bool = False) -> None:
        utterance = self.open
        self.open = None
        if utterance is None:
            return
        if utterance.end_sample != end_sample:
            utterance.end_sample = end_sample
            utterance.result = None
            utterance.revision += 1
            utterance.decodable_since = now
        utterance.confirmed = True
        utterance.confirmed_at = now
        utterance.forced = forced
        if utterance.decodable_since is None:
            utterance.decodable_since = now
        self.utterances.append(utterance)

    # --- decoding -------------------------------------------------------------------------------

    def audio(self, start_sample: int, end_sample: int) -> np.ndarray:
        return self._buffer.read(start_sample, end_sample)

    @property
    def buffered_samples(self) -> int:
        return len(self._buffer)

    @property
    def in_trailing_silence(self) -> bool:
        return self._endpointer.trailing

    def final_candidates(self) -> list[Utterance]:
        """Utterances whose final may be decoded now: confirmed ones, then a speculative open one."""
        found = [u for u in self.utterances if u.needs_final_decode]
        if self.open is not None and self.open.needs_final_decode:
            found.append(self.open)
        return found

    def apply_final(self, utterance: Utterance, revision: int, end_sample: int, result: Transcription) -> bool:
        """A final decode finished. False if the utterance changed meanwhile (the result is stale)."""
        utterance.decoding = False
        if utterance.revision != revision or utterance.end_sample != end_sample:
            return False
        utterance.result = result
        return True

    # --- publishing -----------------------------------------------------------------------------

    def next_publishable(self) -> Utterance | None:
        """The oldest unsent utterance, if it is confirmed and decoded: finals leave in stream order.

        Marks it sent and gives it the next utterance index. Empty transcripts (noise) are not
        published: they are done at once and use no index.
        """
        while True:
            utterance = next((u for u in self.utterances if not u.sent), None)
            if utterance is None or not utterance.confirmed or utterance.result is None:
                return None
            utterance.sent = True
            if utterance.result.text:
                utterance.index = self._next_index
                self._next_index += 1
                return utterance
            utterance.acked = True
            self._pop_acked()

    def mark_acked(self, utterance: Utterance) -> None:
        utterance.acked = True
        self._pop_acked()

    def _pop_acked(self) -> None:
        while self.utterances and self.utterances[0].acked:
            done = self.utterances.popleft()
            assert done.end_sample is not None
            self.finalized_until_sample = max(self.finalized_until_sample, done.end_sample)
            if done.index is not None:
                self.final_count = done.index + 1
        self._trim_buffer()

    @property
    def fully_transcribed(self) -> bool:
        """END seen and every final acknowledged: time for STREAM_TRANSCRIBED."""
        return self.ended and self.open is None and not self.utterances

    # --- commit bookkeeping ---------------------------------------------------------------------

    def retain_from_sample(self) -> int:
        """Earliest sample a new owner must re-read to reproduce everything not yet acknowledged."""
        candidates = [u.start_sample for u in self.utterances]
        if self.open is not None:
            candidates.append(self.open.start_sample)
        # While idle, also keep what the pre-roll of an utterance starting in the next window would
        # need, so the retain point never moves backwards.
        config = self.endpointer_config
        candidates.append(self._endpointer.position - WINDOW_SAMPLES - config.samples(config.pre_roll_s))
        earliest = min(candidates) - round(VAD_CONTEXT_S * SAMPLE_RATE_HZ)
        return max(0, earliest)

    def hold_offset(self) -> int | None:
        """Lowest audio-topic offset this stream still needs, or None if it needs nothing."""
        if self.fully_transcribed and self.transcribed_acked:
            return None
        retain = self.retain_from_sample()
        for frame in self._frames:
            if frame.is_end or frame.end_sample > retain:
                return frame.offset
        return None

    def _trim_buffer(self) -> None:
        retain = self.retain_from_sample()
        while self._frames and not self._frames[0].is_end and self._frames[0].end_sample <= retain:
            self._frames.popleft()
        self._buffer.drop_before(retain)
