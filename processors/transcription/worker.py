"""The transcription worker: the Kafka adapter around the pure stream state, decode policy and recognizer.

Consumer group ``convoscope-transcribe`` on the audio topic, manual commits. Per record: VAD + endpointing
on the event loop (~0.3 ms per 32 ms window). ``lanes`` decode threads (default 2) run Whisper, each taking
its next job from ``DecodePolicy`` when it is free. Finals are published in stream order and awaited; after
each acknowledgement the conversation's progress record is written. The committed offset of a partition never
passes audio whose final is not acknowledged (``StreamState.hold_offset``), so a crash loses nothing: the next
owner loads the progress topic for its partitions, re-reads from the commit and skips what is final.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge, Histogram

from convoscope.allocator import release_free_memory
from convoscope.health import Health
from convoscope.ids import event_id, message_id
from convoscope.kafka import (
    RebalanceCallbacks,
    create_consumer,
    create_producer,
    ensure_topics,
    read_to_highwater,
    trace_headers,
    trace_id_from,
)
from convoscope.settings import Settings
from convoscope.timestamps import now_ms
from processors.transcription.asr import (
    PLACEHOLDER_TEXT,
    PlaceholderRecognizer,
    Recognizer,
    Transcription,
    WhisperRecognizer,
)
from processors.transcription.endpointing import EndpointerConfig
from processors.transcription.exceptions import RedactionUnavailableError
from processors.transcription.people import LazyPeopleFinder
from processors.transcription.policy import (
    DecodeJob,
    DecodePolicy,
    PolicyConfig,
    mark_interim_finished,
    mark_started,
)
from processors.transcription.redaction import redact_text, redact_transcription, redaction_types
from processors.transcription.stream_state import StreamState, Utterance
from processors.transcription.vad import SAMPLE_RATE_HZ, ProbabilitySource, SileroStreamingVad
from schemas.serde import SchemaError
from schemas.topics import (
    AUDIO_FRAMES,
    CONVERSATION_EVENTS,
    TRANSCRIPTION_PROGRESS,
    TRANSCRIPTS_FINAL,
    TRANSCRIPTS_INTERIM,
)

__all__ = [
    "COMMIT_INTERVAL_S",
    "GROUP_ID",
    "STREAM_IDLE_TIMEOUT_S",
    "TranscriptionWorker",
    "WorkerStats",
    "run_transcription_worker",
]

log = logging.getLogger(__name__)

GROUP_ID = "convoscope-transcribe"
COMMIT_INTERVAL_S = 1.0
STREAM_IDLE_TIMEOUT_S = 120.0
"""A stream with no frame for this long (its source vanished without END) is finalised and evicted."""
POLL_TIMEOUT_MS = 20
MAX_POLL_RECORDS = 500
MAX_WAITING_FINALS = 64
"""Consumption pauses while more finals than this wait for the decoder (bounded memory)."""
AUDIO_PARTITION_FETCH_BYTES = 256 * 1024
AUDIO_FETCH_BYTES = 4 * AUDIO_PARTITION_FETCH_BYTES
"""How far the consumer reads ahead: about 8 s of one stream per audio partition, and at most 1 MiB per fetch.
Read-ahead waits in memory while consumption is paused (the decoder is behind), one fetch per partition. With the
2 MiB per partition and 16 MiB per fetch that other consumers use, an overloaded worker held 37-49 MiB of it on 12
partitions, still growing minutes into the load (tracemalloc). Both limits are set because the embedded broker
sometimes honours only the per-fetch one. A larger record still arrives whole (the broker always returns a
partition's first batch)."""
PROGRESS_LOAD_TIMEOUT_S = 60.0
YIELD_EVERY_RECORDS = 50


STATS_WINDOW = 10_000  # recent samples kept for benchmarks; Prometheus has the long-run view

DECODE_SECONDS = Histogram(
    "convoscope_transcribe_decode_seconds", "Whisper decode time per call", ["kind"],
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0),
)
FINAL_DELAY_SECONDS = Histogram(
    "convoscope_transcribe_final_delay_seconds",
    "From the end of an utterance (wall clock of its last sample) to its final being acknowledged by the broker",
    buckets=(0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0),
)
FINALS = Counter("convoscope_transcribe_finals_total", "Final transcripts published")
INTERIMS = Counter("convoscope_transcribe_interims_total", "Interim transcripts published")
EMPTY_FINALS = Counter(
    "convoscope_transcribe_empty_finals_total",
    "Utterances of at least a second that decoded to no text (judged noise, or a failed decode): nothing published",
)
SPECULATIVE_DISCARDED = Counter(
    "convoscope_transcribe_speculative_discarded_total", "Speculative finals thrown away because speech resumed"
)
AUDIO_SECONDS = Counter("convoscope_transcribe_audio_seconds_total", "Audio consumed, in seconds")
ACTIVE_STREAMS = Gauge("convoscope_transcribe_active_streams", "Streams this worker holds state for")
BUFFERED_AUDIO_SECONDS = Gauge(
    "convoscope_transcribe_buffered_audio_seconds",
    "Audio held in memory across streams: utterances not yet acknowledged and the context before them",
)


def _window() -> deque[float]:
    return deque(maxlen=STATS_WINDOW)


@dataclass
class WorkerStats:
    """What the worker measured recently; ``bench/transcription_worker.py`` prints it."""

    final_decode_s: deque[float] = field(default_factory=_window)
    interim_decode_s: deque[float] = field(default_factory=_window)
    final_audio_s: deque[float] = field(default_factory=_window)
    speculative_discarded: int = 0
    finals_published: int = 0
    interims_published: int = 0
    audio_received_s: float = 0.0
    confirm_to_publish_s: deque[float] = field(default_factory=_window)
    """From the hangover confirming an utterance end to its final being handed to the producer."""



class TranscriptionWorker:
    def __init__(
        self,
        settings: Settings,
        recognizer: Recognizer,
        *,
        policy_config: PolicyConfig | None = None,
        endpointer_config: EndpointerConfig | None = None,
        vad_factory: Callable[[int], ProbabilitySource] = SileroStreamingVad,
    ) -> None:
        self.settings = settings
        self.recognizer = recognizer
        self.policy = DecodePolicy(policy_config)
        self.endpointer_config = endpointer_config or EndpointerConfig()
        self.vad_factory = vad_factory
        self.stats = WorkerStats()
        self.assigned = asyncio.Event()
        """Set once partitions are assigned and their progress is loaded (for tests and benchmarks)."""
        self._streams: dict[str, StreamState] = {}
        ACTIVE_STREAMS.set_function(lambda: len(self._streams))
        BUFFERED_AUDIO_SECONDS.set_function(
            lambda: sum(state.buffered_samples for state in list(self._streams.values())) / SAMPLE_RATE_HZ
        )
        self._stream_partition: dict[str, int] = {}
        self._progress: dict[str, dict[str, dict[str, Any]]] = {}  # conversation → stream → progress
        self._conversation_partition: dict[str, int] = {}
        self._next_offset: dict[int, int] = {}
        self._committed: dict[int, int] = {}
        self._wake = asyncio.Event()
        self._publish_lock = asyncio.Lock()
        self._executor = ThreadPoolExecutor(max_workers=max(1, recognizer.lanes), thread_name_prefix="whisper-decode")
        self._people = LazyPeopleFinder()
        """Names for ``person`` redaction; spaCy is loaded only once a stream asks for that."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._fatal: asyncio.Future[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._progress_reader: AIOKafkaConsumer | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        await ensure_topics(
            self.settings,
            [AUDIO_FRAMES, CONVERSATION_EVENTS, TRANSCRIPTS_INTERIM, TRANSCRIPTS_FINAL, TRANSCRIPTION_PROGRESS],
        )
        self._fatal = asyncio.get_running_loop().create_future()
        self._producer = create_producer(self.settings)
        self._progress_reader = create_consumer(self.settings)
        self._consumer = create_consumer(self.settings, group_id=GROUP_ID, max_poll_records=MAX_POLL_RECORDS,
                                         max_partition_fetch_bytes=AUDIO_PARTITION_FETCH_BYTES,
                                         fetch_max_bytes=AUDIO_FETCH_BYTES)
        await self._producer.start()
        workers: list[asyncio.Task[None]] = []
        try:
            await self._progress_reader.start()
            await self._consumer.start()
            self._consumer.subscribe([AUDIO_FRAMES.name],
                                     listener=RebalanceCallbacks(self._on_revoked, self._on_assigned))
            workers = [
                asyncio.create_task(self._consume_loop(), name="transcribe-consume"),
                asyncio.create_task(self._decode_loop(), name="transcribe-decode"),
            ]
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([*workers, stopper, self._fatal], return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            for task in done:
                if task is not stopper and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            for task in [*workers, *self._tasks]:
                task.cancel()
            await asyncio.gather(*workers, *self._tasks, return_exceptions=True)
            with contextlib.suppress(KafkaError):
                if self._consumer.assignment():
                    await self._commit(self._consumer.assignment())
            await self._consumer.stop()
            await self._progress_reader.stop()
            await self._producer.stop()
            self._executor.shutdown(wait=True, cancel_futures=True)

    def _fail(self, exc: BaseException) -> None:
        log.error("transcription worker failing: %s", exc)
        if self._fatal is not None and not self._fatal.done():
            self._fatal.set_exception(exc)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- partitions -----------------------------------------------------------------------------

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        partitions = sorted(tp.partition for tp in assigned)
        log.info("assigned audio partitions %s", partitions)
        await self._load_progress(partitions)
        self.assigned.set()

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        if not revoked:
            return
        log.info("revoked audio partitions %s", sorted(tp.partition for tp in revoked))
        try:
            await self._commit(revoked)
        except KafkaError as exc:
            log.warning("commit on revoke failed (the next owner re-reads more): %s", exc)
        gone = {tp.partition for tp in revoked}
        for stream_id in [s for s, p in self._stream_partition.items() if p in gone]:
            self._streams.pop(stream_id, None)
            self._stream_partition.pop(stream_id, None)
        for conversation in [c for c, p in self._conversation_partition.items() if p in gone]:
            self._conversation_partition.pop(conversation, None)
            self._progress.pop(conversation, None)
        for partition in gone:
            self._next_offset.pop(partition, None)
            self._committed.pop(partition, None)

    async def _load_progress(self, partitions: list[int]) -> None:
        """Read the progress partitions from the beginning to the highwater seen by fetch.

        (tansu's ListOffsets/end_offsets is wrong; the fetch response's highwater is right.)
        """
        assert self._progress_reader is not None
        tps = [TopicPartition(TRANSCRIPTION_PROGRESS.name, p) for p in partitions]
        loaded = 0
        async for tp, records in read_to_highwater(self._progress_reader, tps, what="progress",
                                                   timeout_s=PROGRESS_LOAD_TIMEOUT_S):
            for record in records:
                loaded += 1
                if record.value is None:  # a tombstone: the conversation was deleted
                    if record.key is not None:
                        self._progress.pop(record.key.decode(), None)
                    continue
                try:
                    value = TRANSCRIPTION_PROGRESS.serde.deserialize(record.value)
                except SchemaError as exc:
                    log.warning("skipping bad record %s[%d]@%d: %s", tp.topic, tp.partition, record.offset, exc)
                    continue
                self._merge_progress(value, tp.partition)
        log.info("loaded %d progress records for partitions %s", loaded, partitions)

    def _merge_progress(self, value: dict[str, Any], partition: int) -> None:
        conversation = value["conversation_id"]
        self._conversation_partition[conversation] = partition
        known = self._progress.setdefault(conversation, {})
        for stream_id, progress in value["streams"].items():
            current = known.get(stream_id)
            if current is None:
                known[stream_id] = dict(progress)
                continue
            current["finalized_until_sample"] = max(
                current["finalized_until_sample"], progress["finalized_until_sample"]
            )
            current["final_count"] = max(current["final_count"], progress["final_count"])
            current["ended"] = current["ended"] or progress["ended"]

    # --- consuming ------------------------------------------------------------------------------

    def _waiting_finals(self) -> int:
        return sum(len(state.final_candidates()) for state in self._streams.values())

    async def _consume_loop(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        last_commit = time.monotonic()
        while True:
            if self._waiting_finals() > MAX_WAITING_FINALS:
                await asyncio.sleep(0.05)
                continue
            batches = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=MAX_POLL_RECORDS)
            now = time.monotonic()
            touched: dict[str, StreamState] = {}
            handled = 0
            for tp, records in batches.items():
                for record in records:
                    state = self._handle(record, now)
                    if state is not None:
                        touched[state.stream_id] = state
                    handled += 1
                    if handled % YIELD_EVERY_RECORDS == 0:
                        await asyncio.sleep(0)  # let the decode loop hand out work meanwhile
                if records:
                    self._next_offset[tp.partition] = records[-1].offset + 1
            if touched:
                self._wake.set()
                for state in touched.values():
                    await self._publish_ready(state)
                    await self._maybe_stream_transcribed(state)
            self._evict_idle(now)
            if now - last_commit >= COMMIT_INTERVAL_S:
                last_commit = now
                try:
                    await self._commit(consumer.assignment())
                except KafkaError as exc:
                    log.warning("offset commit failed, retrying later: %s", exc)

    def _handle(self, record: Any, now: float) -> StreamState | None:
        try:
            frame = AUDIO_FRAMES.serde.deserialize(record.value)
        except SchemaError as exc:
            log.warning("skipping bad record %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc)
            return None
        if frame["sample_rate_hz"] != SAMPLE_RATE_HZ:
            log.warning(
                "skipping bad record %s[%d]@%d: sample rate %d, expected %d",
                record.topic,
                record.partition,
                record.offset,
                frame["sample_rate_hz"],
                SAMPLE_RATE_HZ,
            )
            return None
        stream_id = frame["stream_id"]
        conversation = frame["conversation_id"]
        self._conversation_partition.setdefault(conversation, record.partition)
        state = self._streams.get(stream_id)
        if state is None:
            progress = self._progress.get(conversation, {}).get(stream_id)
            if progress is not None and progress["ended"]:
                return None  # fully transcribed before: a replayed or duplicated frame
            redaction = redaction_types(frame["redaction_types"])
            state = StreamState(
                stream_id=stream_id,
                conversation_id=conversation,
                metadata={
                    "app_id": frame["app_id"],
                    "speaker": frame["speaker"],
                    "stream_started_at_ms": frame["stream_started_at_ms"],
                    "stream_offset_ms": frame["stream_offset_ms"],
                    "language": frame["language"],
                    # The call's correlation id (set by the gateway), carried on to everything made from it.
                    "trace_id": trace_id_from(record.headers),
                    # What to mask before publishing; every frame of a stream carries the same types.
                    "redaction": redaction,
                },
                vad_factory=self.vad_factory,
                finalized_until_sample=progress["finalized_until_sample"] if progress else 0,
                final_count=progress["final_count"] if progress else 0,
                endpointer_config=self.endpointer_config,
                live=frame["live"],
            )
            self._streams[stream_id] = state
            self._stream_partition[stream_id] = record.partition
            if "person" in redaction and not self._people.loaded:
                # Load spaCy while the first utterance is still being spoken, not in its final's decode.
                self._spawn(self._load_people())
        if frame["kind"] == "END":
            state.end(record.offset, frame["start_sample"], now)
        else:
            pcm = np.frombuffer(frame["pcm"], dtype="<i2")
            if len(frame["pcm"]) % 2:
                log.warning(
                    "skipping bad record %s[%d]@%d: odd pcm length", record.topic, record.partition, record.offset
                )
                return state
            state.add_frame(record.offset, frame["start_sample"], pcm, now)
            self.stats.audio_received_s += len(pcm) / SAMPLE_RATE_HZ
            AUDIO_SECONDS.inc(len(pcm) / SAMPLE_RATE_HZ)
        return state

    async def _load_people(self) -> None:
        try:
            await asyncio.to_thread(self._people.load)
        except RedactionUnavailableError as exc:
            log.error("%s; transcripts of streams that ask for person redaction are withheld", exc)

    def _caught_up(self, partition: int) -> bool:
        """Whether this worker has read all the audio the broker had on the partition at the last fetch. Behind a
        backlog a stream gets no frame for minutes while its audio waits in the log: that is not a vanished
        source, and finalising it would cut an utterance in two."""
        assert self._consumer is not None
        highwater = self._consumer.highwater(TopicPartition(AUDIO_FRAMES.name, partition))
        return highwater is not None and self._next_offset.get(partition, 0) >= highwater

    def _evict_idle(self, now: float) -> None:
        for stream_id, state in list(self._streams.items()):
            if state.ended or now - state.last_frame_at < STREAM_IDLE_TIMEOUT_S:
                continue
            partition = self._stream_partition.get(stream_id)
            if partition is not None and not self._caught_up(partition):
                continue
            if state.open is not None:
                log.info("stream %s idle for %.0f s: finalising", stream_id, now - state.last_frame_at)
                state.flush_idle(now)
                self._wake.set()
            elif not state.utterances:
                self._remember_progress(state)
                del self._streams[stream_id]
                self._stream_partition.pop(stream_id, None)

    # --- decoding -------------------------------------------------------------------------------

    async def _decode_loop(self) -> None:
        """Keeps the recognizer's decode lanes busy. The policy picks a job whenever a lane is free, so a live final
        waits for at most the decodes already running, never for a queue of them."""
        lanes = max(1, self.recognizer.lanes)
        running: set[asyncio.Task[None]] = set()
        try:
            while True:
                while len(running) < lanes:
                    job = self.policy.next_job(self._streams.values(), time.monotonic())
                    if job is None:
                        break
                    # Taken now, not when the task starts: the next pick must already see this one as running.
                    state = self._streams[job.stream_id]
                    audio = state.audio(job.start_sample, job.end_sample)
                    mark_started(job)
                    running.add(asyncio.create_task(self._run_job(job, state, audio), name=f"decode-{job.kind}"))
                self._wake.clear()
                woken = asyncio.create_task(self._wake.wait())
                done, _ = await asyncio.wait({*running, woken}, return_when=asyncio.FIRST_COMPLETED)
                woken.cancel()
                for task in done - {woken}:
                    running.discard(task)
                    task.result()  # a bug in handling a result stops the worker, as it did inline
        finally:
            for task in running:
                task.cancel()

    async def _run_job(self, job: DecodeJob, state: StreamState, audio: np.ndarray) -> None:
        started = time.monotonic()
        redaction = state.metadata["redaction"]
        assert isinstance(redaction, frozenset)
        result = await asyncio.get_running_loop().run_in_executor(
            self._executor, partial(self._decode, job, audio, redaction))
        finished = time.monotonic()
        if job.live:
            # Interims thin out with the load of live work only; recorded audio yields to them anyway.
            self.policy.record(finished, finished - started)
        DECODE_SECONDS.labels(job.kind).observe(finished - started)
        if job.kind == "interim":
            mark_interim_finished(job)
            self.stats.interim_decode_s.append(finished - started)
        else:
            self.stats.final_decode_s.append(finished - started)
            self.stats.final_audio_s.append(len(audio) / SAMPLE_RATE_HZ)
        if self._streams.get(job.stream_id) is not state:
            return  # revoked or evicted meanwhile
        if job.kind == "final":
            assert isinstance(result, Transcription)
            if not state.apply_final(job.utterance, job.revision, job.end_sample, result):
                self.stats.speculative_discarded += 1
                SPECULATIVE_DISCARDED.inc()
            elif not result.text and job.end_sample - job.start_sample >= SAMPLE_RATE_HZ:
                # Dropped as noise; worth seeing when a user reports missing words.
                EMPTY_FINALS.inc()
                log.info("stream %s: %.1f s utterance at sample %d decoded to no text (beam %d)",
                         job.stream_id, (job.end_sample - job.start_sample) / SAMPLE_RATE_HZ,
                         job.start_sample, job.beam_size)
            await self._publish_ready(state)
            await self._maybe_stream_transcribed(state)
        elif isinstance(result, str) and result:
            await self._send_interim(state, job, result)

    def _decode(self, job: DecodeJob, audio: np.ndarray, redaction: frozenset[str]) -> Transcription | str:
        """Runs in the decode thread. A decoder error on one utterance must not wedge the stream. Redaction happens
        here, before the result reaches anything that publishes it (and off the event loop: names need spaCy)."""
        try:
            if job.kind == "final":
                final = self.recognizer.transcribe_final(audio, beam_size=job.beam_size)
                return redact_transcription(final, redaction, find_people=self._people) if redaction else final
            interim = self.recognizer.transcribe_interim(audio, max_new_tokens=job.max_new_tokens)
            return redact_text(interim, redaction, find_people=self._people, partial=True) if redaction else interim
        except RedactionUnavailableError:
            # Fail closed: an utterance that cannot be masked as asked is not published at all.
            log.exception("redacting %s [%d, %d) of stream %s failed; publishing nothing for it",
                          job.kind, job.start_sample, job.end_sample, job.stream_id)
            return Transcription("", (), 0.0) if job.kind == "final" else ""
        except (RuntimeError, ValueError):
            log.exception(
                "decoding %s [%d, %d) of stream %s failed; publishing nothing for it",
                job.kind,
                job.start_sample,
                job.end_sample,
                job.stream_id,
            )
            return Transcription("", (), 0.0) if job.kind == "final" else ""
        finally:
            # A decode frees tens of MiB of tensors that glibc would keep in this thread's heap; handing them
            # back now (about 1 ms) keeps RSS near what the decodes in flight need (convoscope/allocator.py).
            release_free_memory()

    # --- publishing -----------------------------------------------------------------------------

    async def _send_interim(self, state: StreamState, job: DecodeJob, text: str) -> None:
        utterance = job.utterance
        if state.open is not utterance or utterance.revision != job.revision:
            return  # the utterance ended meanwhile: its final supersedes this
        assert self._producer is not None
        meta = state.metadata
        value = {
            "utterance_id": message_id(state.stream_id, utterance.start_sample),
            "conversation_id": state.conversation_id,
            "app_id": meta["app_id"],
            "stream_id": state.stream_id,
            "speaker": meta["speaker"],
            "start_sample": utterance.start_sample,
            "end_sample": job.end_sample,
            "stream_started_at_ms": meta["stream_started_at_ms"],
            "stream_offset_ms": meta["stream_offset_ms"],
            "text": text,
            "produced_at_ms": now_ms(),
        }
        try:
            future = await self._producer.send(
                TRANSCRIPTS_INTERIM.name,
                TRANSCRIPTS_INTERIM.serde.serialize(value),
                key=state.conversation_id.encode(),
                headers=trace_headers(meta.get("trace_id")),
            )
        except KafkaError as exc:
            log.debug("interim dropped: %s", exc)  # best effort by contract
            return
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # interims are best effort
        self.stats.interims_published += 1
        INTERIMS.inc()

    def _final_value(self, state: StreamState, utterance: Utterance) -> dict[str, Any]:
        result = utterance.result
        assert result is not None and utterance.end_sample is not None and utterance.index is not None
        meta = state.metadata
        start_ms = utterance.start_sample * 1000 / SAMPLE_RATE_HZ
        return {
            "message_id": message_id(state.stream_id, utterance.start_sample),
            "conversation_id": state.conversation_id,
            "app_id": meta["app_id"],
            "stream_id": state.stream_id,
            "speaker": meta["speaker"],
            "utterance_index": utterance.index,
            "start_sample": utterance.start_sample,
            "end_sample": utterance.end_sample,
            "stream_started_at_ms": meta["stream_started_at_ms"],
            "stream_offset_ms": meta["stream_offset_ms"],
            "text": result.text,
            "confidence": result.confidence,
            "words": [
                {
                    "word": word.word,
                    "start_ms": round(start_ms + word.start_s * 1000),
                    "end_ms": round(start_ms + word.end_s * 1000),
                    "confidence": word.probability,
                }
                for word in result.words
            ],
            "language": meta["language"],
            "model": self.recognizer.model_name,
            "produced_at_ms": now_ms(),
        }

    async def _publish_ready(self, state: StreamState) -> None:
        """Send every final that may leave now, in stream order; acknowledgements are awaited apart."""
        assert self._producer is not None
        async with self._publish_lock:
            while (utterance := state.next_publishable()) is not None:
                value = self._final_value(state, utterance)
                try:
                    future = await self._producer.send(
                        TRANSCRIPTS_FINAL.name,
                        TRANSCRIPTS_FINAL.serde.serialize(value),
                        key=state.conversation_id.encode(),
                        headers=trace_headers(state.metadata.get("trace_id")),
                    )
                except KafkaError as exc:
                    self._fail(exc)
                    return
                if utterance.confirmed_at is not None:
                    self.stats.confirm_to_publish_s.append(time.monotonic() - utterance.confirmed_at)
                self._spawn(self._await_final_ack(state, utterance, future))

    async def _await_final_ack(self, state: StreamState, utterance: Utterance, future: Any) -> None:
        try:
            await future
        except KafkaError as exc:
            # Order within the stream can no longer be kept: stop, the next owner replays from the commit.
            self._fail(exc)
            return
        self.stats.finals_published += 1
        FINALS.inc()
        if utterance.end_sample is not None and state.live:
            ended_at_ms = state.metadata["stream_started_at_ms"] + utterance.end_sample * 1000 / SAMPLE_RATE_HZ
            FINAL_DELAY_SECONDS.observe(max(0.0, (now_ms() - ended_at_ms) / 1000))
        state.mark_acked(utterance)
        if self._streams.get(state.stream_id) is not state:
            return  # revoked meanwhile: the new owner writes progress
        await self._send_progress(state)
        await self._maybe_stream_transcribed(state)

    def _remember_progress(self, state: StreamState) -> None:
        self._progress.setdefault(state.conversation_id, {})[state.stream_id] = {
            "finalized_until_sample": state.finalized_until_sample,
            "final_count": state.final_count,
            "ended": state.transcribed_acked,
        }

    async def _send_progress(self, state: StreamState) -> None:
        assert self._producer is not None
        self._remember_progress(state)
        conversation = state.conversation_id
        value = {"conversation_id": conversation, "streams": self._progress[conversation]}
        partition = self._conversation_partition.get(conversation, self._stream_partition.get(state.stream_id))
        try:
            async with self._publish_lock:
                future = await self._producer.send(
                    TRANSCRIPTION_PROGRESS.name,
                    TRANSCRIPTION_PROGRESS.serde.serialize(value),
                    key=conversation.encode(),
                    partition=partition,
                )
            await future
        except KafkaError as exc:
            # Not fatal: without it a takeover re-transcribes a little; message ids stay the same.
            log.warning("progress for %s not written: %s", conversation, exc)

    async def _maybe_stream_transcribed(self, state: StreamState) -> None:
        if not state.fully_transcribed or state.transcribed_requested:
            return
        state.transcribed_requested = True
        assert self._producer is not None
        meta = state.metadata
        event = {
            "event_id": event_id(state.conversation_id, "STREAM_TRANSCRIBED", state.stream_id),
            "conversation_id": state.conversation_id,
            "app_id": meta["app_id"],
            "type": "STREAM_TRANSCRIBED",
            "at_ms": now_ms(),
            "stream_id": state.stream_id,
            "member": meta["speaker"],
            "final_count": state.final_count,
            "attributes": {"model": self.recognizer.model_name},
        }
        try:
            async with self._publish_lock:
                future = await self._producer.send(
                    CONVERSATION_EVENTS.name,
                    CONVERSATION_EVENTS.serde.serialize(event),
                    key=state.conversation_id.encode(),
                    headers=trace_headers(meta.get("trace_id")),
                )
            await future
        except KafkaError as exc:
            self._fail(exc)
            return
        log.info("stream %s transcribed: %d finals", state.stream_id, state.final_count)
        state.transcribed_acked = True
        if self._streams.get(state.stream_id) is state:
            await self._send_progress(state)
            del self._streams[state.stream_id]
            self._stream_partition.pop(state.stream_id, None)

    # --- commits --------------------------------------------------------------------------------

    def commit_offsets(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
        """Per partition: min over its streams of their hold offset, else the next unread offset."""
        offsets: dict[TopicPartition, int] = {}
        for tp in partitions:
            next_offset = self._next_offset.get(tp.partition)
            if next_offset is None:
                continue
            holds = [
                hold
                for stream_id, state in self._streams.items()
                if self._stream_partition.get(stream_id) == tp.partition and (hold := state.hold_offset()) is not None
            ]
            offset = min([*holds, next_offset])
            if offset > self._committed.get(tp.partition, -1):
                offsets[tp] = offset
        return offsets

    async def _commit(self, partitions: set[TopicPartition]) -> None:
        assert self._consumer is not None
        offsets = self.commit_offsets(partitions)
        if not offsets:
            return
        await self._consumer.commit(offsets)
        for tp, offset in offsets.items():
            self._committed[tp.partition] = offset
        log.debug("committed %s", {tp.partition: o for tp, o in offsets.items()})


async def run_transcription_worker(
    settings: Settings,
    stop: asyncio.Event | None = None,
    recognizer: Recognizer | None = None,
    *,
    health: Health | None = None,
) -> None:
    """Run the transcription worker until ``stop`` is set (forever if None). Loads the model first.

    ``health`` turns ready once the model is loaded and the consumer group has assigned partitions."""
    if recognizer is None and settings.asr_model == "none":
        log.warning("CONVOSCOPE_ASR_MODEL=none: no speech recognition, every utterance becomes %r (benchmarks only)",
                    PLACEHOLDER_TEXT)
        recognizer = PlaceholderRecognizer(settings.asr_decode_lanes)
    elif recognizer is None:
        whisper = await asyncio.to_thread(WhisperRecognizer.from_settings, settings)
        await asyncio.to_thread(whisper.warm_up)
        recognizer = whisper
    log.info("transcription worker: model %s", recognizer.model_name)
    worker = TranscriptionWorker(settings, recognizer)
    if health is None:
        await worker.run(stop or asyncio.Event())
        return

    async def report_ready() -> None:
        await worker.assigned.wait()
        health.set_ready(f"model {recognizer.model_name} loaded, partitions assigned")

    reporter = asyncio.create_task(report_ready())
    try:
        await worker.run(stop or asyncio.Event())
    finally:
        reporter.cancel()
