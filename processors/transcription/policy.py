"""Decode scheduling: which utterance a free decode lane works on next. Pure; the caller passes ``now``.

Rules:
- Finals first, oldest first (by when they became decodable). A speculative final (silence seen, hangover
  still running) is a final: decoding it early is what makes the final cheap to publish at confirmation.
- Interims only when no final is waiting, greedy, token-capped, at most one per stream per interval;
  the interval stretches with the decoder's recent load and interims stop altogether near saturation.
  No interim starts for a stream once silence began in its utterance (its speculative final is
  0.1 s away), so an interim delays a final only if it started before that: by at most one interim
  decode (~0.25 s with tiny.en).
- Finals that waited too long are decoded greedily (beam 1, ~1.4x cheaper) until the backlog clears,
  so a burst of utterance ends across many streams cannot snowball behind real time.
- Recorded audio (streams that are not ``live``: Async API, reprocessing) arrives far faster than real time.
  It gets no interims, and its finals are decoded only when no live stream has a final or an interim due,
  so a batch job delays a live final by at most the batch decodes already in flight (one per lane).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from processors.transcription.stream_state import StreamState, Utterance
from processors.transcription.vad import SAMPLE_RATE_HZ

__all__ = ["DecodeJob", "DecodePolicy", "PolicyConfig", "mark_interim_finished", "mark_started"]


@dataclass(frozen=True)
class PolicyConfig:
    final_beam_size: int = 5
    backlog_beam_size: int = 1
    backlog_wait_s: float = 1.0
    """A final that became decodable this long ago is decoded with ``backlog_beam_size``."""
    recorded_beam_size: int = 5
    """Finals of recorded audio always wait, so their beam does not depend on the wait: the same recording
    gives the same transcript however busy the worker was."""
    interims: bool = True
    interim_first_after_s: float = 0.6
    """Audio an utterance needs before its first interim."""
    interim_interval_s: float = 1.0
    """New audio between two interims of one utterance, at low load."""
    interim_min_tokens: int = 8
    interim_tokens_per_s: float = 5.0
    interim_max_tokens: int = 96
    load_window_s: float = 5.0
    coarsen_load: float = 0.5
    """Above this decoder busy fraction the interim interval doubles ..."""
    stop_interims_load: float = 0.8
    """... and above this one interims stop."""


@dataclass
class DecodeJob:
    kind: str  # "final" | "interim"
    stream_id: str
    utterance: Utterance
    revision: int
    start_sample: int
    end_sample: int
    beam_size: int = 1
    max_new_tokens: int = 0
    live: bool = True


class DecodePolicy:
    def __init__(self, config: PolicyConfig | None = None) -> None:
        self.config = config or PolicyConfig()
        self._busy: deque[tuple[float, float]] = deque()  # (finished_at, seconds) of recent decodes

    def record(self, finished_at: float, seconds: float) -> None:
        self._busy.append((finished_at, seconds))
        self._expire(finished_at)

    def load(self, now: float) -> float:
        """Fraction of the last ``load_window_s`` the decoder was busy."""
        self._expire(now)
        return min(1.0, sum(seconds for _, seconds in self._busy) / self.config.load_window_s)

    def _expire(self, now: float) -> None:
        while self._busy and self._busy[0][0] < now - self.config.load_window_s:
            self._busy.popleft()

    def next_job(self, streams: Iterable[StreamState], now: float) -> DecodeJob | None:
        streams = list(streams)
        live = [stream for stream in streams if stream.live]
        job = self._final_job(live, now) or self._interim_job(live, now)
        if job is None and len(live) < len(streams):
            job = self._final_job([stream for stream in streams if not stream.live], now)
        return job

    def _final_job(self, streams: list[StreamState], now: float) -> DecodeJob | None:
        best: tuple[float, StreamState, Utterance] | None = None
        for stream in streams:
            for utterance in stream.final_candidates():
                since = utterance.decodable_since if utterance.decodable_since is not None else now
                if best is None or since < best[0]:
                    best = (since, stream, utterance)
        if best is not None:
            since, stream, utterance = best
            assert utterance.end_sample is not None
            late = now - since >= self.config.backlog_wait_s
            beam = self.config.backlog_beam_size if late else self.config.final_beam_size
            return DecodeJob(
                kind="final",
                stream_id=stream.stream_id,
                utterance=utterance,
                revision=utterance.revision,
                start_sample=utterance.start_sample,
                end_sample=utterance.end_sample,
                beam_size=beam if stream.live else self.config.recorded_beam_size,
                live=stream.live,
            )
        return None

    def _interim_job(self, streams: list[StreamState], now: float) -> DecodeJob | None:
        c = self.config
        if not c.interims:
            return None
        load = self.load(now)
        if load >= c.stop_interims_load:
            return None
        interval = c.interim_interval_s * (2.0 if load >= c.coarsen_load else 1.0)
        best: tuple[int, StreamState, Utterance] | None = None
        for stream in streams:
            utterance = stream.open
            if utterance is None or utterance.interim_decoding or stream.in_trailing_silence:
                continue  # idle, or silence began: its final decode is ~0.1 s away, keep the thread free
            audio_s = (stream.received_until - utterance.start_sample) / SAMPLE_RATE_HZ
            new_s = (stream.received_until - utterance.last_interim_end) / SAMPLE_RATE_HZ
            first = utterance.last_interim_end == utterance.start_sample
            if audio_s < c.interim_first_after_s or (not first and new_s < interval):
                continue
            # The stream that has waited longest for fresh text goes first.
            if best is None or utterance.last_interim_end - stream.received_until < best[0]:
                best = (utterance.last_interim_end - stream.received_until, stream, utterance)
        if best is None:
            return None
        _, stream, utterance = best
        audio_s = (stream.received_until - utterance.start_sample) / SAMPLE_RATE_HZ
        tokens = min(c.interim_max_tokens, c.interim_min_tokens + int(c.interim_tokens_per_s * audio_s))
        return DecodeJob(
            kind="interim",
            stream_id=stream.stream_id,
            utterance=utterance,
            revision=utterance.revision,
            start_sample=utterance.start_sample,
            end_sample=stream.received_until,
            max_new_tokens=tokens,
        )


def mark_started(job: DecodeJob) -> None:
    """Claim the job's utterance so the policy does not hand the same work out twice."""
    if job.kind == "final":
        job.utterance.decoding = True
    else:
        job.utterance.interim_decoding = True
        job.utterance.last_interim_end = job.end_sample


def mark_interim_finished(job: DecodeJob) -> None:
    job.utterance.interim_decoding = False
