"""Recorded tracks → the audio and events topics, exactly as a live gateway would publish them, only faster.

Each track is one stream (its own member): MEMBER_JOINED and STREAM_STARTED, AUDIO frames of 4096 samples (the
size of a live client's largest frame) with ``live`` false, then END and STREAM_ENDED. Frames of the tracks are
interleaved so every speaker's transcript advances together. The call returns once the broker acknowledged
everything (acks=all): from then on the audio topic holds the recording and the job no longer needs this process.
CONVERSATION_COMPLETED is sent later, by the job monitor, once the transcripts are stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convoscope.ids import event_id
from convoscope.kafka import new_trace_id
from convoscope.logs import log_context
from convoscope.timestamps import now_ms
from producers.audio import PIPELINE_SAMPLE_RATE_HZ
from producers.recorded.decode import read_pcm_chunks
from producers.websocket.publisher import AudioPublisher

__all__ = ["FRAME_SAMPLES", "RecordedConversation", "RecordedTrack", "conversation_event", "publish_recording"]

FRAME_SAMPLES = 4096
SOURCE = "async"


@dataclass(frozen=True)
class RecordedTrack:
    stream_id: str
    speaker: dict[str, Any]
    """A Speaker record: id, name, user_id."""
    pcm_path: Path
    stream_offset_ms: int
    channel: int
    """From 1; for STREAM_STARTED's attributes."""


@dataclass(frozen=True)
class RecordedConversation:
    app_id: str
    conversation_id: str
    started_at_ms: int
    job_id: str
    name: str | None = None
    language: str = "en-US"
    new: bool = True
    """Announce CONVERSATION_STARTED (a new conversation, not an append)."""
    attributes: dict[str, str] | None = None
    redaction: tuple[str, ...] = ()
    """PII types the transcriber masks (producers/redaction.py), on every frame."""


def conversation_event(
    app_id: str, conversation_id: str, event_type: str, at_ms: int, *, subject: str,
    stream_id: str | None = None, member: dict[str, Any] | None = None, name: str | None = None,
    attributes: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "event_id": event_id(conversation_id, event_type, subject),
        "conversation_id": conversation_id,
        "app_id": app_id,
        "type": event_type,
        "at_ms": at_ms,
        "stream_id": stream_id,
        "member": member,
        "name": name,
        "final_count": None,
        "attributes": {"source": SOURCE, **(attributes or {})},
    }


def _frame(conversation: RecordedConversation, track: RecordedTrack, kind: str, seq: int, start_sample: int,
           pcm: bytes) -> dict[str, Any]:
    return {
        "conversation_id": conversation.conversation_id,
        "app_id": conversation.app_id,
        "stream_id": track.stream_id,
        "kind": kind,
        "seq": seq,
        "start_sample": start_sample,
        "sample_rate_hz": PIPELINE_SAMPLE_RATE_HZ,
        "pcm": pcm,
        "speaker": track.speaker,
        "stream_started_at_ms": conversation.started_at_ms + track.stream_offset_ms,
        "stream_offset_ms": track.stream_offset_ms,
        "language": conversation.language,
        "sent_at_ms": now_ms(),
        "live": False,
        "redaction_types": list(conversation.redaction),
    }


async def publish_recording(
    publisher: AudioPublisher, conversation: RecordedConversation, tracks: Sequence[RecordedTrack]
) -> None:
    """Publish the tracks; raises ``PublishError`` if the broker refuses a record. The records carry a new trace id
    in their headers, as a live call's do."""
    with log_context(trace_id=new_trace_id(), conversation_id=conversation.conversation_id):
        await _publish_tracks(publisher, conversation, tracks)


async def _publish_tracks(
    publisher: AudioPublisher, conversation: RecordedConversation, tracks: Sequence[RecordedTrack]
) -> None:
    c = conversation
    at = now_ms()
    extra = {"job_id": c.job_id, "language": c.language, **(c.attributes or {})}
    if c.new:
        await publisher.event(conversation_event(c.app_id, c.conversation_id, "CONVERSATION_STARTED", c.started_at_ms,
                                                 subject=c.conversation_id, name=c.name, attributes=extra))
    for track in tracks:
        await publisher.event(conversation_event(c.app_id, c.conversation_id, "MEMBER_JOINED", at,
                                                 subject=track.speaker["id"], member=track.speaker,
                                                 attributes=extra))
        await publisher.event(conversation_event(
            c.app_id, c.conversation_id, "STREAM_STARTED", at, subject=track.stream_id, stream_id=track.stream_id,
            member=track.speaker, attributes={**extra, "channel": str(track.channel),
                                              "sample_rate_hz": str(PIPELINE_SAMPLE_RATE_HZ)},
        ))
    readers = [read_pcm_chunks(track.pcm_path, FRAME_SAMPLES) for track in tracks]
    seqs = [0] * len(tracks)
    samples = [0] * len(tracks)
    open_tracks = set(range(len(tracks)))
    while open_tracks:
        for index in sorted(open_tracks):
            chunk = next(readers[index], None)
            if chunk is None:
                open_tracks.discard(index)
                continue
            await publisher.frame(_frame(c, tracks[index], "AUDIO", seqs[index], samples[index], chunk))
            seqs[index] += 1
            samples[index] += len(chunk) // 2
    for index, track in enumerate(tracks):
        await publisher.frame(_frame(c, track, "END", seqs[index], samples[index], b""))
    await publisher.drain()
    at = now_ms()
    for track in tracks:
        await publisher.event(conversation_event(c.app_id, c.conversation_id, "STREAM_ENDED", at,
                                                 subject=track.stream_id, stream_id=track.stream_id,
                                                 member=track.speaker, attributes=extra))

