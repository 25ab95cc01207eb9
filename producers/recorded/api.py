"""Async API endpoints (symbl-api.md §5) and ``POST /v1/process/reprocess`` (convoscope's own).

| method | path | body | answer |
|---|---|---|---|
| POST | /v1/process/audio | the file's bytes; options in the query string | ``{conversationId, jobId}`` |
| PUT | /v1/process/audio/{conversationId} | same; appends to the conversation | same |
| POST | /v1/process/audio/url | JSON ``{url, <options>}``: http(s), or file:// in CONVOSCOPE_MEDIA_DIRS | same |
| PUT | /v1/process/audio/url/{conversationId} | same; appends | same |
| GET | /v1/job/{jobId} | | ``{id, status, conversationId, ...}`` |
| POST | /v1/process/reprocess | ``{conversationId}``, ``{conversationIds}`` or ``{since}`` | ``{jobs, skipped}`` |

The answer comes once the recording is decoded and its audio acknowledged by the broker: a bad file is refused
with a 400 and nothing of it kept. Errors are ``{"message": ...}`` (429 adds ``statusCode``, as Symbl's did).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from convoscope.api.routes import ApiError, authenticate, error_response
from convoscope.db.models import Job
from convoscope.egress import BlockedDestination, check_url, parse_networks
from convoscope.settings import Settings
from convoscope.timestamps import iso_ms
from producers.audio import PIPELINE_SAMPLE_RATE_HZ
from producers.recorded.exceptions import InvalidOptions, RecordedAudioError, RecordingTooLarge, UndecodableAudio
from producers.recorded.fetch import media_source
from producers.recorded.jobs import JobStatus, stream_progress
from producers.recorded.options import ProcessOptions, options_from_json, options_from_query
from producers.recorded.service import RecordedAudio, TooManyJobs

__all__ = ["JOB_NOT_FOUND", "recorded_routes"]

JOB_NOT_FOUND = "The jobId is either invalid or does not exist."
MAX_JSON_BYTES = 1024 * 1024

Handler = Callable[[Request], Awaitable[Response]]


def _errors(handler: Handler) -> Handler:
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return error_response(exc.status_code, exc.message)
        except TooManyJobs as exc:
            return JSONResponse({"statusCode": exc.status_code, "message": exc.message}, status_code=exc.status_code)
        except RecordedAudioError as exc:
            return error_response(exc.status_code, exc.message)

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


def _service(request: Request) -> RecordedAudio:
    return request.app.state.recorded  # type: ignore[no-any-return]


async def _spool_body(request: Request, destination: Path, max_bytes: int) -> Path:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise RecordingTooLarge(f"the upload is larger than the {max_bytes}-byte limit")
    received = 0
    with destination.open("wb") as out:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes:
                raise RecordingTooLarge(f"the upload is larger than the {max_bytes}-byte limit")
            out.write(chunk)
    if received == 0:
        raise UndecodableAudio("the request body is empty: send the audio file's bytes")
    return destination


async def _json_body(request: Request) -> Any:
    body = await request.body()
    if len(body) > MAX_JSON_BYTES:
        raise InvalidOptions("the JSON body is too large")
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidOptions("the request body must be a JSON object") from None


def _check_webhook_url(options: ProcessOptions, settings: Settings) -> None:
    """A webhookUrl naming a blocked address is refused now; a host name is checked when it is called."""
    if options.webhook_url:
        try:
            check_url(options.webhook_url, parse_networks(settings.outbound_blocked_networks))
        except BlockedDestination as exc:
            raise InvalidOptions(f"webhookUrl is not allowed: {exc}") from None


@_errors
async def process_audio(request: Request) -> Response:
    """POST /v1/process/audio, PUT /v1/process/audio/{conversation_id}: the recording is the request body."""
    app_id = authenticate(request)
    options = options_from_query(request.query_params)
    recorded = _service(request)
    _check_webhook_url(options, recorded.settings)
    conversation_id = request.path_params.get("conversation_id")
    if conversation_id is not None:
        await recorded.check_conversation(app_id, conversation_id)
    await recorded.check_capacity(app_id)
    with recorded.workspace() as workdir:
        media = await _spool_body(request, workdir / "upload", recorded.settings.max_upload_bytes)
        accepted = await recorded.accept(app_id, options, media, workdir, kind="audio", source=None,
                                         conversation_id=conversation_id)
    return JSONResponse(accepted.json(), status_code=201)


@_errors
async def process_audio_url(request: Request) -> Response:
    """POST /v1/process/audio/url, PUT /v1/process/audio/url/{conversation_id}: ``{"url": ..., <options>}``."""
    app_id = authenticate(request)
    body = await _json_body(request)
    if isinstance(body, dict):
        # A few options (speaker diarization) travel in the query string; the body wins.
        body = {**dict(request.query_params), **body}
    url, options = options_from_json(body)
    recorded = _service(request)
    settings = recorded.settings
    _check_webhook_url(options, settings)
    conversation_id = request.path_params.get("conversation_id")
    if conversation_id is not None:
        await recorded.check_conversation(app_id, conversation_id)
    await recorded.check_capacity(app_id)
    with recorded.workspace() as workdir:
        media = await media_source(url, workdir, media_dirs=settings.media_dirs, max_bytes=settings.max_upload_bytes,
                                   timeout_s=settings.url_fetch_timeout_s,
                                   blocked_networks=parse_networks(settings.outbound_blocked_networks))
        accepted = await recorded.accept(app_id, options, media, workdir, kind="audio_url", source=url,
                                         conversation_id=conversation_id)
    return JSONResponse(accepted.json(), status_code=201)


@_errors
async def get_job(request: Request) -> Response:
    """GET /v1/job/{job_id}: ``{id, status}`` as Symbl answered, plus where the job stands."""
    app_id = authenticate(request)
    async with _service(request).services.sessions() as session:
        job = await session.scalar(select(Job).where(Job.id == request.path_params["job_id"], Job.app_id == app_id))
        if job is None:
            raise ApiError(404, JOB_NOT_FOUND)
        progress = await stream_progress(session, job.stream_ids)
    transcribed_s = 0.0
    if job.status == JobStatus.COMPLETED.value:
        transcribed_s = job.duration_ms / 1000
    elif progress:
        # How far the slowest stream's stored transcripts reach.
        transcribed_s = min(p.stored_until_sample for p in progress.values()) / PIPELINE_SAMPLE_RATE_HZ
    body: dict[str, Any] = {
        "id": job.id,
        "status": job.status,
        "conversationId": job.conversation_id,
        "type": job.kind,
        "audioDuration": round(job.duration_ms / 1000, 3),
        "transcribedDuration": round(min(transcribed_s, job.duration_ms / 1000), 3),
        "createdAt": iso_ms(job.created_at_ms),
        "updatedAt": iso_ms(job.updated_at_ms),
    }
    if job.source_conversation_id:
        body["sourceConversationId"] = job.source_conversation_id
    if job.error:
        body["error"] = job.error
    return JSONResponse(body)


def _since_ms(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidOptions("since must be an ISO-8601 time or epoch milliseconds") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    raise InvalidOptions("since must be an ISO-8601 time or epoch milliseconds")


@_errors
async def reprocess(request: Request) -> Response:
    """POST /v1/process/reprocess: re-transcribe stored conversations with the current model."""
    app_id = authenticate(request)
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise InvalidOptions("the request body must be a JSON object")
    ids = body.get("conversationIds", [body["conversationId"]] if "conversationId" in body else None)
    since = body.get("since")
    if (ids is None) == (since is None):
        raise InvalidOptions("give either conversationId(s) or since")
    if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids)):
        raise InvalidOptions("conversationIds must be a list of conversation ids")
    result = await _service(request).reprocess(
        app_id, conversation_ids=ids or (), since_ms=_since_ms(since) if since is not None else None
    )
    return JSONResponse(result)


def recorded_routes() -> list[BaseRoute]:
    return [
        Route("/v1/process/audio", process_audio, methods=["POST"]),
        Route("/v1/process/audio/url", process_audio_url, methods=["POST"]),
        Route("/v1/process/audio/url/{conversation_id}", process_audio_url, methods=["PUT"]),
        Route("/v1/process/audio/{conversation_id}", process_audio, methods=["PUT"]),
        Route("/v1/job/{job_id}", get_job, methods=["GET"]),
        Route("/v1/process/reprocess", reprocess, methods=["POST"]),
    ]
