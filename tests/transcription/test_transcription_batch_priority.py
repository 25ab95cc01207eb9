"""Recorded audio (frames with live=false) next to live streams: no interims for it, and live work goes first."""

from __future__ import annotations

from processors.transcription.policy import DecodePolicy, mark_started
from processors.transcription.stream_state import StreamState
from tests.transcription.test_transcription_stream_state import FRAME, EnergyVad, signal


def stream(stream_id: str, live: bool) -> StreamState:
    return StreamState(stream_id, "conv", {}, EnergyVad, live=live)


def feed(state: StreamState, audio, now: float) -> None:
    for i in range(0, len(audio), FRAME):
        state.add_frame(i // FRAME, i, audio[i : i + FRAME], now=now)


def test_recorded_audio_gets_no_interims() -> None:
    speaking = signal(("sil", 0.5), ("tone", 2.0))
    live, recorded = stream("live", True), stream("recorded", False)
    feed(live, speaking, now=0.0)
    feed(recorded, speaking, now=0.0)
    policy = DecodePolicy()
    job = policy.next_job([recorded, live], now=1.0)
    assert job is not None and job.kind == "interim" and job.stream_id == "live"
    mark_started(job)
    assert policy.next_job([recorded, live], now=1.0) is None, "the recorded utterance is still open: nothing to do"


def test_live_finals_and_interims_go_before_older_recorded_finals() -> None:
    said = signal(("sil", 0.5), ("tone", 1.0), ("sil", 1.0))
    recorded = stream("recorded", False)
    feed(recorded, signal(("sil", 0.5), ("tone", 1.0), ("sil", 1.0), ("tone", 1.0), ("sil", 1.0)), now=0.0)
    live = stream("live", True)
    feed(live, said, now=5.0)  # decodable later than the recorded utterances
    talking = stream("talking", True)
    feed(talking, signal(("sil", 0.5), ("tone", 1.5)), now=5.0)
    policy = DecodePolicy()
    order = []
    while (job := policy.next_job([recorded, live, talking], now=6.0)) is not None:
        order.append((job.stream_id, job.kind))
        mark_started(job)
    assert order == [("live", "final"), ("talking", "interim"), ("recorded", "final"), ("recorded", "final")]
    assert all(u.decoding for u in recorded.utterances)
