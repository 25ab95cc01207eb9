"""Reading a stored conversation's audio back from the audio topic, for reprocessing with the current model.

The audio topic is the source of truth and keeps audio for its retention (1 day by default). A conversation's
records are on the partition its key hashes to (the producers' default partitioner), so only those partitions
are read, from the beginning to the end seen at the start. A stream can be reprocessed only if all of it is
still there (frame 0 onwards, no gap) and it has ended.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from convoscope.kafka import create_consumer, read_to_highwater
from convoscope.settings import Settings
from schemas.serde import SchemaError
from schemas.topics import AUDIO_FRAMES

__all__ = ["StoredStream", "read_stored_audio", "retention_problem"]

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 300.0
FETCH_RECORDS = 2_000


@dataclass
class StoredStream:
    """One stream of a stored conversation, its audio spooled to ``pcm_path``."""

    stream_id: str
    speaker: dict[str, Any]
    language: str
    stream_started_at_ms: int
    stream_offset_ms: int
    pcm_path: Path
    redaction: tuple[str, ...] = ()
    """What the original stream had masked: its reprocessed transcripts are masked the same way."""
    samples: int = 0
    next_seq: int = 0
    ended: bool = False
    gap: bool = False
    _file: BinaryIO | None = field(default=None, repr=False)

    def add(self, frame: dict[str, Any]) -> None:
        if self.ended or frame["seq"] < self.next_seq:
            return  # a duplicate (at-least-once delivery)
        if frame["seq"] > self.next_seq or frame["start_sample"] != self.samples:
            self.gap = True  # the start is past retention, or frames are missing
        self.next_seq = frame["seq"] + 1
        if frame["kind"] == "END":
            self.ended = True
            self.close()
            return
        if self._file is None:
            self._file = self.pcm_path.open("ab")
        self._file.write(frame["pcm"])
        self.samples += len(frame["pcm"]) // 2

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    @property
    def conversation_started_at_ms(self) -> int:
        return self.stream_started_at_ms - self.stream_offset_ms


def retention_problem(streams: Collection[StoredStream]) -> tuple[int, str] | None:
    """Why these streams cannot be reprocessed, as (HTTP status, reason); None if they can."""
    if not streams:
        return 410, "no audio of the conversation is left on the audio topic (past retention, or never streamed)"
    if any(stream.gap for stream in streams):
        return 410, "part of the conversation's audio is past the audio topic's retention"
    if not all(stream.ended for stream in streams):
        return 409, "a stream of the conversation is still live"
    return None


def partition_of(conversation_id: str, partitions: list[int]) -> int:
    return int(DefaultPartitioner()(conversation_id.encode(), partitions, partitions))


async def read_stored_audio(
    settings: Settings, conversation_ids: Collection[str], workdir: Path, *, timeout_s: float = READ_TIMEOUT_S
) -> dict[str, list[StoredStream]]:
    """Every stream of the conversations still on the audio topic, by conversation id."""
    wanted = {conversation_id.encode(): conversation_id for conversation_id in conversation_ids}
    streams: dict[str, StoredStream] = {}
    by_conversation: dict[str, list[StoredStream]] = {conversation_id: [] for conversation_id in conversation_ids}
    if not wanted:
        return by_conversation
    consumer = create_consumer(settings, group_id=None)
    await consumer.start()
    try:
        partitions = sorted(consumer.partitions_for_topic(AUDIO_FRAMES.name) or await _partitions(consumer))
        tps = sorted({TopicPartition(AUDIO_FRAMES.name, partition_of(c, partitions)) for c in wanted.values()})
        async for _, records in read_to_highwater(consumer, tps, what="audio", timeout_s=timeout_s, poll_ms=200,
                                                  max_records=FETCH_RECORDS):
            for record in records:
                conversation_id = wanted.get(record.key or b"")
                if conversation_id is None:
                    continue
                try:
                    frame = AUDIO_FRAMES.serde.deserialize(record.value)
                except SchemaError as exc:
                    log.warning("skipping bad record %s[%d]@%d: %s", record.topic, record.partition, record.offset,
                                exc)
                    continue
                stream = streams.get(frame["stream_id"])
                if stream is None:
                    stream = streams[frame["stream_id"]] = StoredStream(
                        stream_id=frame["stream_id"],
                        speaker=frame["speaker"],
                        language=frame["language"],
                        stream_started_at_ms=frame["stream_started_at_ms"],
                        stream_offset_ms=frame["stream_offset_ms"],
                        pcm_path=workdir / f"{frame['stream_id']}.s16",
                        redaction=tuple(frame["redaction_types"]),
                    )
                    by_conversation[conversation_id].append(stream)
                stream.add(frame)
    finally:
        for stream in streams.values():
            stream.close()
        await consumer.stop()
    return by_conversation


async def _partitions(consumer: Any) -> set[int]:
    await consumer.topics()
    return set(consumer.partitions_for_topic(AUDIO_FRAMES.name) or ())
