"""``AsyncClient``: one server and one app, with a shared HTTP connection pool and access token."""

from __future__ import annotations

import asyncio
import mimetypes
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from convoscope_sdk.auth import TokenProvider
from convoscope_sdk.backoff import Backoff
from convoscope_sdk.config import CredentialsLike, Timeouts, resolve_base_url, resolve_credentials, websocket_url
from convoscope_sdk.conversation import AsyncConversation, AsyncJob, query_params
from convoscope_sdk.exceptions import (
    ApiError,
    AuthenticationError,
    ConvoscopeError,
    NetworkError,
    NotFoundError,
    TimeoutError,
)
from convoscope_sdk.records import Record, wrap
from convoscope_sdk.streaming import (
    DEFAULT_NO_CONNECTION_TIMEOUT_S,
    MAX_BUFFERED_BYTES,
    AsyncStreamingConnection,
    Callback,
    build_start_request,
)
from convoscope_sdk.telephony import (
    DEFAULT_SIP_AUDIO_CONFIG,
    ENDPOINT_PATH,
    STREAMING_SUBSCRIBE_PATH,
    AsyncSubscription,
    AsyncTelephonyConnection,
    build_endpoint_request,
)

__all__ = ["AsyncClient", "content_type_for"]

VERSION = "0.1.0"
IDEMPOTENT_RETRIES = 2  # GET/PUT/DELETE are retried this often on network errors, 429 and 5xx
AUDIO_CONTENT_TYPES = {".wav": "audio/wav", ".mp3": "audio/mpeg", ".flac": "audio/flac", ".ogg": "audio/ogg",
                       ".opus": "audio/ogg", ".m4a": "audio/mp4", ".webm": "audio/webm"}


def content_type_for(path: Path) -> str:
    """The Content-Type to upload an audio file with, from its extension."""
    known = AUDIO_CONTENT_TYPES.get(path.suffix.lower())
    return known or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


class AsyncClient:
    """The native asyncio client. ``async with AsyncClient() as client:`` closes its connections on exit.

    ``base_url`` and ``credentials`` are resolved as ``convoscope_sdk.config`` describes (argument, environment,
    config file). Every call is bounded by ``timeouts``; reconnects follow ``backoff``. ``transport`` and ``clock``
    (epoch seconds, for token expiry) are for tests and special networks."""

    version = VERSION

    def __init__(
        self,
        base_url: str | None = None,
        credentials: CredentialsLike | None = None,
        *,
        timeouts: Timeouts | None = None,
        backoff: Backoff | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.base_url = resolve_base_url(base_url)
        self.credentials = resolve_credentials(credentials)
        self.timeouts = timeouts or Timeouts()
        self.backoff = backoff or Backoff()
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(self.timeouts.request_s, connect=self.timeouts.connect_s),
            headers={"user-agent": f"convoscope-sdk/{VERSION}"},
            transport=transport,
        )
        self.tokens = TokenProvider(self._http, self.credentials, self.timeouts, clock)

    def __repr__(self) -> str:
        return f"AsyncClient({self.base_url!r}, app_id={self.credentials.app_id[:8]}…)"

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- REST ------------------------------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        """One authenticated REST call; the JSON answer as ``Record``s. A refused token is replaced once; idempotent
        calls are retried with backoff on network errors, 429 and 5xx. Raises ``ApiError``/``NotFoundError``,
        ``AuthenticationError``, ``NetworkError`` or ``TimeoutError``."""
        retries = IDEMPOTENT_RETRIES if method in ("GET", "PUT", "DELETE", "HEAD") else 0
        attempt, token_refreshed = 0, False
        while True:
            token = await self.tokens.get()
            error: ConvoscopeError
            try:
                response = await self._http.request(
                    method, path, params=params, json=json_body, content=content,
                    headers={"x-api-key": token, **(headers or {})},
                    timeout=timeout_s if timeout_s is not None else httpx.USE_CLIENT_DEFAULT,
                )
            except httpx.TimeoutException as exc:
                error = TimeoutError(f"{method} {path} timed out")
                error.__cause__ = exc
            except httpx.TransportError as exc:
                error = NetworkError(f"{method} {path} failed: {exc!r}")
                error.__cause__ = exc
            else:
                if response.status_code == 401 and not token_refreshed:
                    self.tokens.invalidate(token)
                    token_refreshed = True
                    continue
                if response.status_code in (401, 403):
                    raise AuthenticationError(_message(response), response.status_code)
                if response.status_code < 400:
                    return wrap(response.json()) if response.content else None
                error = _api_error(response)
            if not error.retriable or attempt >= retries:
                raise error
            await asyncio.sleep(self.backoff.delay_s(attempt))
            attempt += 1

    def conversation(self, conversation_id: str) -> AsyncConversation:
        """The Conversation API of ``conversation_id``."""
        return AsyncConversation(self, conversation_id)

    async def list_conversations(self, parameters: Mapping[str, Any] | None = None) -> Record:
        """``GET /v1/conversations`` (``limit``, ``offset``, ``order``, ...)."""
        return await self.request("GET", "/v1/conversations", params=query_params(parameters))  # type: ignore[no-any-return]

    # -- Streaming -------------------------------------------------------------------------------------------------

    async def start_connection(
        self,
        speaker: Mapping[str, Any] | None = None,
        insight_types: Sequence[str] | None = None,
        config: Mapping[str, Any] | None = None,
        trackers: Sequence[Mapping[str, Any]] | None = None,
        actions: Sequence[Mapping[str, Any]] | None = None,
        *,
        connection_id: str | None = None,
        no_connection_timeout_s: int | None = DEFAULT_NO_CONNECTION_TIMEOUT_S,
        reconnect: bool = True,
        callbacks: Mapping[str, Callback] | None = None,
        max_buffered_bytes: int = MAX_BUFFERED_BYTES,
        extra: Mapping[str, Any] | None = None,
    ) -> AsyncStreamingConnection:
        """Open a streaming connection and return once the conversation exists (``conversation_created``).

        The arguments are the official SDK's (``config`` is merged over its defaults: LINEAR16 at 44100 Hz);
        ``connection_id`` joins an existing connection (another speaker of the same conversation);
        ``no_connection_timeout_s`` is how long the server keeps the conversation for a reconnect; ``callbacks``
        are subscribed before the first message arrives; ``extra`` adds top-level start_request fields."""
        start_request = build_start_request(
            speaker, insight_types, config, trackers, actions, no_connection_timeout_s if reconnect else None, extra
        )
        connection = AsyncStreamingConnection(
            self, start_request, connection_id=connection_id, reconnect=reconnect,
            max_buffered_bytes=max_buffered_bytes,
        )
        if callbacks:
            connection.subscribe(callbacks)
        await connection.open()
        return connection

    def subscribe(self, connection_id: str, callbacks: Mapping[str, Callback]) -> AsyncSubscription:
        """Listen to a live streaming connection (Subscribe API, ``/v1/subscribe/{connectionId}``)."""
        subscription = AsyncSubscription(
            self, websocket_url(self.base_url, STREAMING_SUBSCRIBE_PATH + connection_id), callbacks
        )
        subscription.start()
        return subscription

    # -- Telephony -------------------------------------------------------------------------------------------------

    async def connect_endpoint(self, body: Mapping[str, Any]) -> AsyncTelephonyConnection:
        answer = await self.request("POST", ENDPOINT_PATH, json_body=dict(body))
        if not isinstance(answer, Mapping) or not answer.get("connectionId"):
            raise ApiError(200, f"no connectionId in the endpoint:connect answer: {answer!r}", answer)
        return AsyncTelephonyConnection(self, wrap(answer))

    async def start_sip(
        self,
        uri: str,
        audio_config: Mapping[str, Any] | None = None,
        actions: Sequence[Mapping[str, Any]] | None = None,
        data: Mapping[str, Any] | None = None,
        languages: Sequence[str] | None = None,
        timezone: str | None = None,
        *,
        insight_types: Sequence[str] | None = None,
        trackers: Sequence[Mapping[str, Any]] | None = None,
    ) -> AsyncTelephonyConnection:
        """Dial a SIP URI (``POST /v1/endpoint:connect``, ``operation: start``)."""
        endpoint = {"type": "sip", "uri": uri, "audioConfig": dict(audio_config or DEFAULT_SIP_AUDIO_CONFIG)}
        body = build_endpoint_request(endpoint, actions=actions, data=data, languages=languages, timezone=timezone,
                                      insight_types=insight_types, trackers=trackers)
        return await self.connect_endpoint(body)

    async def start_pstn(
        self,
        phone_number: str,
        dtmf: str | None = None,
        actions: Sequence[Mapping[str, Any]] | None = None,
        data: Mapping[str, Any] | None = None,
        languages: Sequence[str] | None = None,
        timezone: str | None = None,
        *,
        insight_types: Sequence[str] | None = None,
        trackers: Sequence[Mapping[str, Any]] | None = None,
    ) -> AsyncTelephonyConnection:
        """Dial a phone number (``POST /v1/endpoint:connect``); the server needs a PSTN gateway for this."""
        endpoint = {"type": "pstn", "phoneNumber": phone_number, "dtmf": dtmf}
        body = build_endpoint_request(endpoint, actions=actions, data=data, languages=languages, timezone=timezone,
                                      insight_types=insight_types, trackers=trackers, push_speaker_events=True)
        return await self.connect_endpoint(body)

    async def stop_endpoint(self, connection_id: str) -> Record:
        """Hang up a call (``operation: stop``)."""
        if not connection_id:
            raise ValueError("connection_id is required")
        body = {"operation": "stop", "connectionId": connection_id}
        return await self.request("POST", ENDPOINT_PATH, json_body=body)  # type: ignore[no-any-return]

    # -- Async API -------------------------------------------------------------------------------------------------

    async def _job(self, answer: Any, wait: bool) -> AsyncConversation:
        try:
            conversation_id, job_id = str(answer["conversationId"]), str(answer["jobId"])
        except (KeyError, TypeError) as exc:
            raise ApiError(200, f"no conversationId/jobId in the answer: {answer!r}", answer) from exc
        conversation = AsyncConversation(self, conversation_id, AsyncJob(self, job_id, conversation_id))
        if wait:
            await conversation.wait()
        return conversation

    async def process_file(
        self,
        file_path: str | Path,
        content_type: str | None = None,
        wait: bool = True,
        parameters: Mapping[str, Any] | None = None,
        *,
        conversation_id: str | None = None,
    ) -> AsyncConversation:
        """Upload a recording (``POST /v1/process/audio``; ``PUT .../{conversation_id}`` appends) and, with
        ``wait``, poll its job until it completed. ``parameters`` go into the query string (``name``,
        ``customVocabulary``, ``enableSpeakerDiarization``, ...)."""
        path = Path(file_path)
        audio = await asyncio.to_thread(path.read_bytes)
        method, target = ("PUT", f"/v1/process/audio/{conversation_id}") if conversation_id else (
            "POST", "/v1/process/audio")
        answer = await self.request(
            method, target, params=query_params(parameters), content=audio,
            headers={"content-type": content_type or content_type_for(path)},
            timeout_s=max(self.timeouts.request_s, len(audio) / 1_000_000),  # ≥ 1 MB/s for large uploads
        )
        return await self._job(answer, wait)

    async def process_url(
        self,
        payload: Mapping[str, Any],
        wait: bool = True,
        parameters: Mapping[str, Any] | None = None,
        *,
        conversation_id: str | None = None,
    ) -> AsyncConversation:
        """Have the server fetch a recording (``POST /v1/process/audio/url`` with ``{"url": ...}``)."""
        if not payload.get("url"):
            raise ValueError("payload needs a url")
        method, target = ("PUT", f"/v1/process/audio/url/{conversation_id}") if conversation_id else (
            "POST", "/v1/process/audio/url")
        answer = await self.request(method, target, params=query_params(parameters), json_body=dict(payload))
        return await self._job(answer, wait)

    async def get_job(self, job_id: str) -> Record:
        return await self.request("GET", f"/v1/job/{job_id}")  # type: ignore[no-any-return]


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(body, Mapping) and isinstance(body.get("message"), str):
        return str(body["message"])
    return response.text[:300]


def _api_error(response: httpx.Response) -> ApiError:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    kind = NotFoundError if response.status_code == 404 else ApiError
    return kind(response.status_code, _message(response), body)
