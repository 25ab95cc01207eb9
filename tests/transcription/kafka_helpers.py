"""Producing synthesized audio streams and collecting the worker's output on a real broker."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiokafka import TopicPartition

from convoscope.kafka import create_consumer, create_producer
from convoscope.settings import Settings
from processors.transcription.asr import Recognizer
from processors.transcription.worker import run_transcription_worker
from schemas.topics import AUDIO_FRAMES, CONVERSATION_EVENTS, TRANSCRIPTS_FINAL, TRANSCRIPTS_INTERIM

__all__ = ["FRAME_SAMPLES", "Collected", "collect", "collect_while_transcribing", "produce_stream"]

FRAME_SAMPLES = 1600  # 100 ms


async def produce_stream(
    settings: Settings,
    conversation_id: str,
    stream_id: str,
    audio: np.ndarray,
    realtime_factor: float | None = None,
    started_at_ms: int | None = None,
    end: bool = True,
    frame_samples: int = FRAME_SAMPLES,
) -> None:
    """Publish ``audio`` as AUDIO frames (of 100 ms unless ``frame_samples`` says) and an END frame (unless not
    ``end``: a source that vanished); paced if ``realtime_factor``."""
    producer = create_producer(settings)
    await producer.start()
    started_at_ms = started_at_ms or int(time.time() * 1000)
    begin = time.monotonic()
    base: dict[str, Any] = {
        "conversation_id": conversation_id,
        "app_id": "a" * 64,
        "stream_id": stream_id,
        "sample_rate_hz": 16000,
        "speaker": {"id": f"member-{stream_id[:6]}", "name": "Test Speaker", "user_id": None},
        "stream_started_at_ms": started_at_ms,
        "stream_offset_ms": 0,
        "language": "en-US",
    }
    try:
        seq = 0
        for start in range(0, len(audio), frame_samples):
            if realtime_factor:
                due = begin + (start + frame_samples) / 16000 / realtime_factor
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            pcm = audio[start : start + frame_samples].astype("<i2").tobytes()
            value = {
                **base,
                "kind": "AUDIO",
                "seq": seq,
                "start_sample": start,
                "pcm": pcm,
                "sent_at_ms": int(time.time() * 1000),
            }
            await producer.send(AUDIO_FRAMES.name, AUDIO_FRAMES.serde.serialize(value), key=conversation_id.encode())
            seq += 1
        await producer.flush()
        if not end:
            return
        end_frame = {
            **base,
            "kind": "END",
            "seq": seq,
            "start_sample": len(audio),
            "pcm": b"",
            "sent_at_ms": int(time.time() * 1000),
        }
        await producer.send_and_wait(
            AUDIO_FRAMES.name, AUDIO_FRAMES.serde.serialize(end_frame), key=conversation_id.encode()
        )
    finally:
        await producer.stop()


@dataclass
class Collected:
    finals: list[dict[str, Any]] = field(default_factory=list)
    interims: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    final_seen_at: list[float] = field(default_factory=list)

    def transcribed(self, stream_id: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == "STREAM_TRANSCRIBED" and e["stream_id"] == stream_id]

    def finals_of(self, stream_id: str) -> list[dict[str, Any]]:
        return [f for f in self.finals if f["stream_id"] == stream_id]


async def collect(settings: Settings, into: Collected, done: Any, timeout_s: float) -> None:
    """Read finals, interims and events from the beginning until ``done(into)`` is true."""
    consumer = create_consumer(settings)
    await consumer.start()
    try:
        tps = []
        for topic in (TRANSCRIPTS_FINAL, TRANSCRIPTS_INTERIM, CONVERSATION_EVENTS):
            partitions = consumer.partitions_for_topic(topic.name)
            while not partitions:
                await consumer.topics()  # refreshes metadata
                partitions = consumer.partitions_for_topic(topic.name)
            tps += [TopicPartition(topic.name, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        while not done(into):
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker output incomplete: {len(into.finals)} finals, events {into.events}")
            batches = await consumer.getmany(timeout_ms=100)
            for tp, records in batches.items():
                for record in records:
                    if tp.topic == TRANSCRIPTS_FINAL.name:
                        into.finals.append(TRANSCRIPTS_FINAL.serde.deserialize(record.value))
                        into.final_seen_at.append(time.time())
                    elif tp.topic == TRANSCRIPTS_INTERIM.name:
                        into.interims.append(TRANSCRIPTS_INTERIM.serde.deserialize(record.value))
                    else:
                        into.events.append(CONVERSATION_EVENTS.serde.deserialize(record.value))
    finally:
        await consumer.stop()


async def collect_while_transcribing(settings: Settings, done: Any, timeout_s: float,
                                     recognizer: Recognizer | None = None, settle_s: float = 0.0) -> Collected:
    """Run a transcription worker in this process until ``done(collected)`` is true (then ``settle_s`` longer,
    e.g. for a periodic offset commit), stop it, and return what was collected."""
    stop = asyncio.Event()
    worker = asyncio.create_task(run_transcription_worker(settings, stop, recognizer))
    out = Collected()
    try:
        await collect(settings, out, done, timeout_s=timeout_s)
        await asyncio.sleep(settle_s)
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)
    return out
