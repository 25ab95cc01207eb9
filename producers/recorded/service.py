"""The Async API's work in a gateway: accept a recording (decode, create the job, publish), reprocess stored
conversations, and own the job monitor. Opened in the gateway's lifespan; handlers reach it as
``request.app.state.recorded``.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from convoscope.db.engine import dialect_insert
from convoscope.db.models import Conversation, Job
from convoscope.ids import member_id, new_stream_id
from convoscope.registry import CONVERSATION_TYPE, new_conversation_id
from convoscope.services import Services
from convoscope.timestamps import now_ms
from processors.pii import REDACTION_TYPES
from producers.audio import PIPELINE_SAMPLE_RATE_HZ
from producers.conversation_settings import InlineTracker, app_trackers, conversation_settings_record
from producers.recorded.decode import decode_recording
from producers.recorded.exceptions import RecordedAudioError
from producers.recorded.jobs import JobStatus, count_open_jobs, new_job_id, timeline_end_ms, transition
from producers.recorded.monitor import JobMonitor
from producers.recorded.options import ALL_INSIGHT_TYPES, ProcessOptions
from producers.recorded.publish import RecordedConversation, RecordedTrack, publish_recording
from producers.recorded.reprocess import StoredStream, read_stored_audio, retention_problem
from producers.redaction import redaction_attribute
from producers.websocket.publisher import AudioPublisher, PublishError

__all__ = ["CONVERSATION_NOT_FOUND", "Accepted", "RecordedAudio", "TooManyJobs", "Unavailable"]

CONVERSATION_NOT_FOUND = "The conversationId is either invalid or does not exist."
CONCURRENT_DECODES = 2
ID_ATTEMPTS = 3


class TooManyJobs(RecordedAudioError):
    status_code = 429


class Unavailable(RecordedAudioError):
    status_code = 503


class ConversationNotFound(RecordedAudioError):
    status_code = 404

    def __init__(self) -> None:
        super().__init__(CONVERSATION_NOT_FOUND)


@dataclass(frozen=True)
class Accepted:
    conversation_id: str
    job_id: str

    def json(self) -> dict[str, str]:
        return {"conversationId": self.conversation_id, "jobId": self.job_id}


@dataclass(frozen=True)
class _Track:
    """Audio of one member to publish, before ids are known."""

    pcm_path: Path
    samples: int
    channel: int
    speaker_name: str | None
    speaker_email: str | None
    stream_offset_ms: int = 0
    speaker: dict[str, Any] | None = None
    """Kept as is (reprocessing keeps the original member ids)."""


class RecordedAudio:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings
        self.monitor = JobMonitor(services.settings, services.sessions, services.producer)
        self._decode_slots = asyncio.Semaphore(CONCURRENT_DECODES)

    async def start(self) -> None:
        await self.monitor.start()

    async def stop(self) -> None:
        await self.monitor.stop()

    @contextlib.contextmanager
    def workspace(self) -> Iterator[Path]:
        """A scratch directory for one request's files, removed afterwards."""
        with tempfile.TemporaryDirectory(prefix="convoscope-recorded-") as directory:
            yield Path(directory)

    # --- checks before any work ------------------------------------------------------------------

    async def check_capacity(self, app_id: str) -> None:
        async with self.services.sessions() as session:
            open_jobs = await count_open_jobs(session, app_id)
        limit = self.settings.max_concurrent_jobs
        if open_jobs >= limit:
            raise TooManyJobs(f"This API has a limit of maximum of `{limit}` number of concurrent jobs per account. "
                              "Please wait for some of them to complete.")

    async def check_conversation(self, app_id: str, conversation_id: str) -> None:
        async with self.services.sessions() as session:
            if await _owned(session, app_id, conversation_id) is None:
                raise ConversationNotFound()

    # --- recordings ------------------------------------------------------------------------------

    async def accept(
        self, app_id: str, options: ProcessOptions, media: Path, workdir: Path, *, kind: str, source: str | None,
        conversation_id: str | None = None,
    ) -> Accepted:
        """Decode ``media`` whole (refusing it if it is not good audio), then create the job and publish."""
        async with self._decode_slots:
            decoded = await asyncio.to_thread(
                decode_recording, media, workdir, max_duration_s=self.settings.max_recording_s,
                separate_channels=options.separate_channels,
            )
        tracks = []
        for index, path in enumerate(decoded.tracks, start=1):
            speaker = options.speaker_of_channel(index)
            tracks.append(_Track(path, decoded.samples, index, speaker.name, speaker.email))
        details = {"codec": decoded.codec, "channels": decoded.source_channels, "mixedDown": decoded.mixed_down}
        return await self._start_job(
            app_id, options, tracks, kind=kind, source=source, conversation_id=conversation_id,
            duration_ms=decoded.duration_ms, details=details,
        )

    async def _start_job(
        self, app_id: str, options: ProcessOptions, tracks: Sequence[_Track], *, kind: str, source: str | None,
        duration_ms: int, details: dict[str, Any], conversation_id: str | None = None,
        reprocess_of: Conversation | None = None, started_at_ms: int | None = None,
    ) -> Accepted:
        job_id = new_job_id()
        now = now_ms()
        stream_ids = [new_stream_id() for _ in tracks]
        async with self.services.sessions.begin() as session:
            if conversation_id is None:
                metadata = {"reprocessOf": reprocess_of.id} if reprocess_of is not None else {}
                name = reprocess_of.name if reprocess_of is not None else options.name
                conversation = await _new_conversation(session, app_id, name, started_at_ms or now, metadata)
                offset_ms = 0
            else:
                conversation = await _lock_owned(session, app_id, conversation_id)
                offset_ms = await timeline_end_ms(session, conversation)
            session.add(Job(
                id=job_id, app_id=app_id, conversation_id=conversation.id, kind=kind,
                status=JobStatus.SCHEDULED.value, stream_ids=stream_ids, offset_ms=offset_ms,
                duration_ms=duration_ms, source=source,
                source_conversation_id=reprocess_of.id if reprocess_of is not None else None,
                options={**options.given, **details}, webhook_url=options.webhook_url,
                created_at_ms=now, updated_at_ms=now,
            ))
        recorded_tracks = [
            RecordedTrack(
                stream_id=stream_id,
                speaker=track.speaker or {
                    "id": member_id(conversation.id, track.speaker_email, track.speaker_name, stream_id),
                    "name": track.speaker_name,
                    "user_id": track.speaker_email,
                },
                pcm_path=track.pcm_path,
                stream_offset_ms=offset_ms + track.stream_offset_ms,
                channel=track.channel,
            )
            for stream_id, track in zip(stream_ids, tracks, strict=True)
        ]
        try:
            await self._publish(app_id, conversation, options, recorded_tracks, job_id, new=conversation_id is None)
        except PublishError as exc:
            async with self.services.sessions.begin() as session:
                await transition(session, job_id, JobStatus.SCHEDULED.value, JobStatus.FAILED, now_ms(),
                                 error=f"audio could not be stored: {exc}")
            raise Unavailable("the audio could not be stored; please retry") from exc
        self.monitor.notify(job_id, options.webhook_url, JobStatus.SCHEDULED)
        return Accepted(conversation.id, job_id)

    async def _publish(self, app_id: str, conversation: Conversation, options: ProcessOptions,
                       tracks: Sequence[RecordedTrack], job_id: str, *, new: bool) -> None:
        publisher = AudioPublisher(self.services.producer)
        stored_trackers = (
            await app_trackers(self.services.sessions, app_id) if options.enable_all_trackers else []
        )
        # Before any audio, so the text processors know the trackers by the first transcript.
        await publisher.conversation_settings(conversation_settings_record(
            conversation.id, app_id, conversation.start_ms,
            insight_types=ALL_INSIGHT_TYPES,
            confidence_threshold=options.confidence_threshold,
            inline_trackers=[InlineTracker(t.name, t.vocabulary) for t in options.trackers],
            stored_trackers=stored_trackers,
            sentiment=options.sentiment,
        ))
        await publish_recording(
            publisher,
            RecordedConversation(
                app_id=app_id, conversation_id=conversation.id, started_at_ms=conversation.start_ms, job_id=job_id,
                name=conversation.name, language=options.language_code, new=new,
                attributes={"insight_types": ",".join(ALL_INSIGHT_TYPES), **redaction_attribute(options.redaction)},
                redaction=options.redaction,
            ),
            tracks,
        )

    # --- reprocessing ----------------------------------------------------------------------------

    async def reprocess(
        self, app_id: str, *, conversation_ids: Sequence[str] = (), since_ms: int | None = None
    ) -> dict[str, list[dict[str, Any]]]:
        """Re-read each conversation's audio from the audio topic into a new conversation (a new result version,
        linked both ways through conversation metadata once it completes)."""
        skipped: list[dict[str, Any]] = []
        async with self.services.sessions() as session:
            reprocessed = select(Job.conversation_id).where(Job.kind == "reprocess")
            query = select(Conversation).where(Conversation.app_id == app_id)
            if since_ms is not None:
                query = query.where(Conversation.start_ms >= since_ms, Conversation.id.not_in(reprocessed))
            else:
                query = query.where(Conversation.id.in_(list(conversation_ids)))
            conversations = list(await session.scalars(query.order_by(Conversation.start_ms)))
        found = {c.id for c in conversations}
        skipped += [{"conversationId": c, "status": 404, "reason": CONVERSATION_NOT_FOUND}
                    for c in conversation_ids if c not in found]
        jobs: list[dict[str, Any]] = []
        with self.workspace() as workdir:
            stored = await read_stored_audio(self.settings, found, workdir)
            for conversation in conversations:
                streams = stored.get(conversation.id, [])
                problem = retention_problem(streams)
                if problem is not None:
                    skipped.append({"conversationId": conversation.id, "status": problem[0], "reason": problem[1]})
                    continue
                try:
                    await self.check_capacity(app_id)
                    accepted = await self._reprocess_one(app_id, conversation, streams)
                except RecordedAudioError as exc:
                    skipped.append({"conversationId": conversation.id, "status": exc.status_code,
                                    "reason": exc.message})
                    continue
                jobs.append({**accepted.json(), "sourceConversationId": conversation.id})
        return {"jobs": jobs, "skipped": skipped}

    async def _reprocess_one(self, app_id: str, conversation: Conversation, streams: list[StoredStream]) -> Accepted:
        started_at_ms = min(stream.conversation_started_at_ms for stream in streams)
        tracks = [
            _Track(stream.pcm_path, stream.samples, index, stream.speaker.get("name"), stream.speaker.get("user_id"),
                   stream_offset_ms=stream.stream_started_at_ms - started_at_ms, speaker=stream.speaker)
            for index, stream in enumerate(streams, start=1)
        ]
        duration_ms = max(t.stream_offset_ms + t.samples * 1000 // PIPELINE_SAMPLE_RATE_HZ for t in tracks)
        # Re-transcribing must not undo redaction: every stream is masked as much as any original stream was.
        redaction = {t for stream in streams for t in stream.redaction}
        options = ProcessOptions(language_code=streams[0].language,
                                 redaction=tuple(t for t in REDACTION_TYPES if t in redaction))
        return await self._start_job(
            app_id, options, tracks, kind="reprocess", source=f"conversation {conversation.id}",
            duration_ms=duration_ms, details={"channels": len(tracks)}, reprocess_of=conversation,
            started_at_ms=started_at_ms,
        )


async def _owned(session: AsyncSession, app_id: str, conversation_id: str) -> Conversation | None:
    return await session.scalar(
        select(Conversation).where(Conversation.id == conversation_id, Conversation.app_id == app_id)
    )


async def _lock_owned(session: AsyncSession, app_id: str, conversation_id: str) -> Conversation:
    """The conversation, with its row write-locked for the transaction, so concurrent appends queue up and each
    gets its own place on the timeline."""
    table = Conversation.__table__
    locked = await session.execute(
        update(table).where(table.c.id == conversation_id, table.c.app_id == app_id).values(id=table.c.id)
    )
    conversation = await _owned(session, app_id, conversation_id) if locked.rowcount else None  # type: ignore[attr-defined]
    if conversation is None:
        raise ConversationNotFound()
    return conversation


async def _new_conversation(
    session: AsyncSession, app_id: str, name: str | None, started_at_ms: int, metadata: dict[str, Any]
) -> Conversation:
    table = Conversation.__table__
    for _ in range(ID_ATTEMPTS):
        candidate = new_conversation_id(now_ms())
        inserted = await session.scalar(
            dialect_insert(session, table)
            .values(id=candidate, app_id=app_id, name=name, type=CONVERSATION_TYPE, start_ms=started_at_ms,
                    end_ms=None, metadata=metadata)
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(table.c.id)
        )
        if inserted is not None:
            conversation = await _owned(session, app_id, candidate)
            assert conversation is not None
            return conversation
    raise Unavailable("could not allocate a conversation id; please retry")
