"""The Streaming API client: one speaker's live audio in, the conversation's results out, surviving network drops.

A connection sends ``start_request``, then audio, then ``stop_request``. When the socket drops without a
``stop_request``, the connection reconnects with backoff to the same ``connectionId`` and sends its
``start_request`` again (what Symbl's JS SDK did); the server keeps the conversation for ``noConnectionTimeout``
seconds, so the stream continues in the same conversation. Audio given to ``send_audio`` while the socket is
down waits in a bounded buffer and goes out after the reconnect; a frame leaves the buffer only once it was
written to a socket.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import copy
import inspect
import json
import logging
import uuid
import warnings
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from convoscope_sdk.config import websocket_url
from convoscope_sdk.conversation import AsyncConversation
from convoscope_sdk.exceptions import (
    ApiError,
    AuthenticationError,
    CallbackError,
    ConnectionClosedError,
    ConversationResumeWarning,
    ConvoscopeError,
    StreamingError,
    TimeoutError,
)
from convoscope_sdk.records import Record, wrap

if TYPE_CHECKING:
    from convoscope_sdk.client import AsyncClient

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_NO_CONNECTION_TIMEOUT_S",
    "EVENT_TYPES",
    "MAX_FRAME_BYTES",
    "AsyncStreamingConnection",
    "Callback",
    "build_start_request",
    "split_frames",
]

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 8192  # the Streaming API's limit for one binary frame
MAX_BUFFERED_BYTES = 4 * 1024 * 1024  # ~2 min of 16 kHz LINEAR16, ~47 s at the default 44.1 kHz
EVENT_QUEUE_SIZE = 1000
# WebSocket pings: a dead network is noticed within PING_INTERVAL_S + PING_TIMEOUT_S. The timeout is generous (the
# JS SDK waited 30 s for its pong) because a busy gateway answers late, and a false alarm costs a reconnect.
PING_INTERVAL_S = 15.0
PING_TIMEOUT_S = 30.0
WRITE_LIMIT_BYTES = 2 * MAX_FRAME_BYTES  # little unsent audio sits in our socket buffer when a network dies
DEFAULT_NO_CONNECTION_TIMEOUT_S = 60
# The official Python SDK's defaults, kept so audio that worked with it works here.
DEFAULT_CONFIG: dict[str, Any] = {
    "confidenceThreshold": 0.5,
    "languageCode": "en-US",
    "speechRecognition": {"encoding": "LINEAR16", "sampleRateHertz": 44100},
}
EVENT_TYPES = (
    "message",
    "message_response",
    "insight_response",
    "topic_response",
    "tracker_response",
    "entity_response",
    "error",
)
STOP_REQUEST = json.dumps({"type": "stop_request"})
# Close codes after which reconnecting cannot help: the request itself is wrong.
FATAL_CLOSE_CODES = {1003: "unsupported data", 1007: "invalid data", 1008: "policy violation", 1009: "frame too big"}
UNAUTHORIZED_CLOSE_CODE = 4001

Callback = Callable[[Record], Any]


def build_start_request(
    speaker: Mapping[str, Any] | None = None,
    insight_types: Sequence[str] | None = None,
    config: Mapping[str, Any] | None = None,
    trackers: Sequence[Mapping[str, Any]] | None = None,
    actions: Sequence[Mapping[str, Any]] | None = None,
    no_connection_timeout_s: int | None = DEFAULT_NO_CONNECTION_TIMEOUT_S,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``start_request`` the official SDK would send for these arguments (``config`` merged over its defaults,
    ``speechRecognition`` merged key by key), plus ``noConnectionTimeout`` so a dropped connection can resume,
    ``actions`` when given, and any ``extra`` top-level fields (e.g. ``customVocabulary``)."""
    if config is not None and not isinstance(config, Mapping):
        raise TypeError("config should be of type dict")
    merged = copy.deepcopy(DEFAULT_CONFIG)
    for key, value in (config or {}).items():
        if key == "speechRecognition" and isinstance(value, Mapping):
            merged["speechRecognition"].update(value)
        else:
            merged[key] = copy.deepcopy(value)
    request: dict[str, Any] = {
        "type": "start_request",
        "insightTypes": list(insight_types) if isinstance(insight_types, list | tuple) else [],
        "config": merged,
    }
    if speaker is not None:
        request["speaker"] = dict(speaker)
    if trackers is not None:
        request["trackers"] = [dict(tracker) for tracker in trackers]
    if actions:
        request["actions"] = [dict(action) for action in actions]
    if no_connection_timeout_s:
        request["noConnectionTimeout"] = int(no_connection_timeout_s)
    request.update(copy.deepcopy(dict(extra or {})))
    return request


def split_frames(data: bytes | bytearray | memoryview, max_bytes: int = MAX_FRAME_BYTES) -> list[bytes]:
    """Audio cut into frames the server accepts. Cuts fall on even byte counts so no 16-bit sample is split."""
    view = memoryview(data).cast("B")
    step = max_bytes - max_bytes % 2
    return [bytes(view[offset : offset + step]) for offset in range(0, len(view), step)]


class _Outbox:
    """What is waiting to be sent (audio frames and control text, in order), kept across reconnects. Bounded in
    bytes; the head is removed only after it was written to a socket."""

    def __init__(self, max_bytes: int) -> None:
        self._items: deque[bytes | str] = deque()
        self._bytes = 0
        self._max_bytes = max_bytes
        self._changed = asyncio.Condition()

    @property
    def pending_bytes(self) -> int:
        return self._bytes

    async def put(self, item: bytes | str) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self._bytes + len(item) <= self._max_bytes or not self._items)
            self._items.append(item)
            self._bytes += len(item)
            self._changed.notify_all()

    async def head(self) -> bytes | str:
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._items))
            return self._items[0]

    async def pop_head(self) -> None:
        async with self._changed:
            item = self._items.popleft()
            self._bytes -= len(item)
            self._changed.notify_all()


class _Dropped(Exception):
    """The socket went away or could not be opened; reconnecting may help."""

    def __init__(self, why: str, code: int | None = None, reason: str = "", *, connected: bool = True) -> None:
        super().__init__(why)
        self.why = why
        self.code = code
        self.reason = reason
        self.connected = connected  # the WebSocket handshake had succeeded


_Outcome = Literal["stopped"]


class AsyncStreamingConnection:
    """A live streaming connection. Create it with ``await client.start_connection(...)`` (it is open and the
    conversation exists when that returns); use it as an async context manager to stop it on exit.

    ``subscribe({"message_response": callback, ...})`` registers callbacks (plain or async functions) by the
    top-level ``type`` of what the server sends: ``message`` (every ``{"type": "message"}`` envelope:
    ``recognition_result``, ``conversation_created``, ...), ``message_response``, ``insight_response``,
    ``topic_response``, ``tracker_response``, ``entity_response`` and ``error``. ``events()`` iterates over
    everything instead."""

    def __init__(
        self,
        client: AsyncClient,
        start_request: dict[str, Any],
        *,
        connection_id: str | None = None,
        reconnect: bool = True,
        max_buffered_bytes: int = MAX_BUFFERED_BYTES,
        path: str = "/v1/streaming/",
    ) -> None:
        self._client = client
        self.connection_id = connection_id or str(uuid.uuid4())
        self.start_request = start_request
        self.url = websocket_url(client.base_url, path + self.connection_id)
        self.reconnect = reconnect
        self.conversation: AsyncConversation | None = None
        self.conversation_ids: list[str] = []
        self.reconnects = 0
        self.last_error: Record | None = None
        self.completion: Record | None = None
        self._callbacks: dict[str, Callback] = {}
        self._listeners: set[asyncio.Queue[Record | None]] = set()
        self._outbox = _Outbox(max_buffered_bytes)
        self._started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._supervisor: asyncio.Task[None] | None = None
        self._failure: ConvoscopeError | None = None
        self._callback_error: CallbackError | None = None
        self._stopping = False
        self._stop_sent = False
        self._session_started = False
        self._delivered_message_ids: set[str] = set()
        self._ws: ClientConnection | None = None

    # -- the Symbl surface ----------------------------------------------------------------------------------------

    @property
    def connectionId(self) -> str:  # the official SDK's attribute name
        return self.connection_id

    @property
    def conversation_id(self) -> str | None:
        return self.conversation.conversation_id if self.conversation else None

    def subscribe(self, event_callbacks: Mapping[str, Callback]) -> None:
        """Add (or replace) callbacks by event type. A callback that raises does not stop the stream; its
        exception comes back as ``CallbackError`` from the next ``send_audio``/``stop``."""
        unknown = set(event_callbacks) - set(EVENT_TYPES)
        if unknown:
            log.warning("subscribing to event types the server does not send on this API: %s", sorted(unknown))
        self._callbacks.update(event_callbacks)

    async def send_audio(self, data: bytes | bytearray | memoryview) -> None:
        """Queue audio for sending, in frames of at most 8192 bytes. Waits while the buffer is full (the network is
        slow or down) up to ``Timeouts.send_s``, then raises ``TimeoutError``."""
        self._raise_if_broken()
        if self._stopping:
            raise ConnectionClosedError("send_audio after stop()")
        try:
            async with asyncio.timeout(self._client.timeouts.send_s):
                for frame in split_frames(data):
                    await self._outbox.put(frame)
        except builtins.TimeoutError as exc:
            raise TimeoutError(
                f"audio buffer full ({self._outbox.pending_bytes} bytes) for {self._client.timeouts.send_s} s"
            ) from exc

    async def modify(self, sample_rate_hz: int | None = None, encoding: str | None = None) -> None:
        """Change the audio format mid-stream (``modify_request``); a resumed stream uses the new format too."""
        self._raise_if_broken()
        speech = self.start_request.setdefault("config", {}).setdefault("speechRecognition", {})
        if sample_rate_hz is not None:
            speech["sampleRateHertz"] = sample_rate_hz
        if encoding is not None:
            speech["encoding"] = encoding
        await self._outbox.put(json.dumps({"type": "modify_request", "speechRecognition": dict(speech)}))

    async def send_audio_from_mic(self, device: int | str | None = None, duration_s: float | None = None) -> None:
        """Capture the microphone (needs the ``mic`` extra: ``sounddevice``) at the start_request's sample rate and
        stream it, until ``duration_s`` has passed or the task is cancelled."""
        from convoscope_sdk.mic import capture_blocks

        rate = int(self.start_request["config"]["speechRecognition"]["sampleRateHertz"])
        async for block in capture_blocks(rate, device=device, duration_s=duration_s):
            await self.send_audio(block)

    async def stop(self, timeout_s: float | None = None) -> Record | None:
        """Send everything queued, then ``stop_request``; wait for ``conversation_completed`` (returned) while
        the server finishes transcribing. Raises what ended the stream if it failed, or a callback's error."""
        if self._failure is not None:
            raise self._failure
        timeout_s = self._client.timeouts.stop_s if timeout_s is None else timeout_s
        if not self._stopping:
            self._stopping = True
            await self._outbox.put(STOP_REQUEST)
        assert self._supervisor is not None
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(self._supervisor)
        except builtins.TimeoutError as exc:
            await self.close()
            raise TimeoutError(f"no conversation_completed within {timeout_s} s of stop_request") from exc
        self._raise_if_broken()
        return self.completion

    async def close(self) -> None:
        """Drop the connection without ``stop_request`` (the server ends the conversation after its
        ``noConnectionTimeout``). Idempotent."""
        if self._supervisor is not None and not self._supervisor.done():
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        self._end_listeners()

    async def events(self) -> AsyncIterator[Record]:
        """Everything the server sends from now on, in order, until the connection ends."""
        queue: asyncio.Queue[Record | None] = asyncio.Queue(EVENT_QUEUE_SIZE)
        if self.done:
            queue.put_nowait(None)  # nothing more will come
        self._listeners.add(queue)
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            self._listeners.discard(queue)
        self._raise_if_broken()

    async def wait_closed(self) -> None:
        """Until the connection has ended; raises what ended it if it failed."""
        if self._supervisor is not None:
            await asyncio.shield(self._supervisor)
        self._raise_if_broken()

    async def __aenter__(self) -> AsyncStreamingConnection:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None and not self.done:
            await self.stop()
        else:
            await self.close()

    @property
    def done(self) -> bool:
        return self._supervisor is not None and self._supervisor.done()

    # -- lifecycle ------------------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and wait for ``conversation_created`` (``Timeouts.start_s``). Called by ``start_connection``."""
        self._supervisor = asyncio.create_task(self._run(), name=f"convoscope-stream-{self.connection_id}")
        timeout_s = self._client.timeouts.start_s
        await asyncio.wait({self._started, self._supervisor}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        if self._started.done() and self._failure is None:
            return
        if self._supervisor.done():
            self._raise_if_broken()
            raise ConnectionClosedError("the connection ended before the conversation started")
        await self.close()
        raise TimeoutError(f"no conversation_created within {timeout_s} s of start_request")

    def _raise_if_broken(self) -> None:
        if self._callback_error is not None:
            error, self._callback_error = self._callback_error, None
            raise error
        if self._failure is not None:
            raise self._failure

    def _fail(self, error: ConvoscopeError) -> None:
        if self._failure is None:
            self._failure = error

    def _end_listeners(self) -> None:
        for queue in list(self._listeners):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

    async def _run(self) -> None:
        """Sessions until stopped; reconnects with backoff after drops; records the error that ended it."""
        loop = asyncio.get_running_loop()
        outage_since: float | None = None
        attempt = 0
        token_retried = False
        try:
            while True:
                self._session_started = False
                try:
                    await self._session()
                    return
                except _Dropped as dropped:
                    if self._session_started:
                        outage_since, attempt, token_retried = None, 0, False
                    if dropped.code == UNAUTHORIZED_CLOSE_CODE:
                        # The token may have expired or the server's key rotated: one retry with a fresh token.
                        if token_retried:
                            raise AuthenticationError("the server refused the access token", 401) from None
                        token_retried = True
                        continue
                    if not self._started.done() and not dropped.connected:
                        # Nothing answers at all: say so now rather than retry until the start timeout.
                        raise self._closed_error("could not start streaming", dropped) from None
                    if self._stop_sent:
                        raise self._closed_error("closed after stop_request, before conversation_completed",
                                                 dropped) from None
                    if not self.reconnect:
                        raise self._closed_error("connection lost", dropped) from None
                    now = loop.time()
                    outage_since = now if outage_since is None else outage_since
                    delay = self._client.backoff.delay_s(attempt)
                    if not self._client.backoff.should_retry(now - outage_since, delay):
                        raise self._closed_error(
                            f"could not reconnect within {self._client.backoff.give_up_after_s} s", dropped
                        ) from None
                    attempt += 1
                    log.info("connection %s dropped (%s); reconnecting in %.2f s", self.connection_id, dropped.why,
                             delay)
                    await asyncio.sleep(delay)
                    self.reconnects += 1
        except ConvoscopeError as error:
            self._fail(error)
        except Exception as exc:  # a bug of ours: still end the connection with an error the caller can catch
            log.exception("connection %s failed", self.connection_id)
            failure = ConvoscopeError(f"internal error in the streaming client: {exc!r}")
            failure.__cause__ = exc
            self._fail(failure)
        finally:
            self._end_listeners()

    def _closed_error(self, what: str, dropped: _Dropped) -> ConnectionClosedError:
        detail = dropped.why
        if self.last_error is not None:
            detail += f"; last server error: {self.last_error.get('message')}: {self.last_error.get('details')}"
        return ConnectionClosedError(f"{what}: {detail}", dropped.code, dropped.reason)

    async def _connect(self) -> ClientConnection:
        client = self._client
        token = await client.tokens.get()
        try:
            return await websockets.connect(
                self.url,
                additional_headers={"x-api-key": token},
                open_timeout=client.timeouts.connect_s,
                ping_interval=PING_INTERVAL_S,
                ping_timeout=PING_TIMEOUT_S,
                close_timeout=5,
                write_limit=WRITE_LIMIT_BYTES,
                compression=None,  # audio does not compress; deflate would only cost CPU
                user_agent_header=f"convoscope-sdk/{client.version}",
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                client.tokens.invalidate(token)
                raise _Dropped(f"handshake refused with HTTP {status}", UNAUTHORIZED_CLOSE_CODE) from exc
            if status == 429 or status >= 500:
                raise _Dropped(f"handshake refused with HTTP {status}", connected=False) from exc
            raise ApiError(status, f"WebSocket handshake to {self.url} refused") from exc
        except (OSError, InvalidHandshake, builtins.TimeoutError) as exc:
            raise _Dropped(f"cannot connect: {exc!r}", connected=False) from exc

    async def _session(self) -> _Outcome:
        """One socket's life: start_request, then audio out and results in, until it closes."""
        try:
            ws = await self._connect()
        except ConvoscopeError as exc:
            if exc.retriable:  # the token request could not reach the server: it is unreachable for us too
                raise _Dropped(str(exc), connected=False) from exc
            raise
        self._ws = ws
        try:
            await ws.send(json.dumps(self.start_request))  # before any audio the writer sends
        except ConnectionClosed:
            pass
        reader = asyncio.create_task(self._read(ws), name="convoscope-read")
        writer = asyncio.create_task(self._write(ws), name="convoscope-write")
        try:
            await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, writer):
                task.cancel()
            for task in (reader, writer):
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await task
            self._ws = None
            await ws.close()
        if reader.done() and not reader.cancelled() and reader.exception() is not None:
            raise reader.exception()  # type: ignore[misc]
        if self._stop_sent and (self.completion is not None or ws.close_code == 1000):
            return "stopped"
        code, reason = ws.close_code, ws.close_reason or ""
        if code == UNAUTHORIZED_CLOSE_CODE:
            await self._invalidate_token()
        if code in FATAL_CLOSE_CODES:
            raise self._closed_error(FATAL_CLOSE_CODES[code], _Dropped("server closed the connection", code, reason))
        raise _Dropped("connection closed" if code is not None else "connection lost", code, reason)

    async def _invalidate_token(self) -> None:
        current = self._client.tokens.current
        if current is not None:
            self._client.tokens.invalidate(current.value)

    async def _write(self, ws: ClientConnection) -> None:
        while True:
            item = await self._outbox.head()
            await ws.send(item)
            await self._outbox.pop_head()
            if item is STOP_REQUEST:
                self._stop_sent = True

    async def _read(self, ws: ClientConnection) -> None:
        """Dispatches every text frame; returns when the socket closes; raises fatal protocol errors."""
        try:
            async for frame in ws:
                if isinstance(frame, bytes) or frame.strip() == "__PONG__":
                    continue
                try:
                    body = json.loads(frame)
                except json.JSONDecodeError:
                    log.warning("ignoring a non-JSON frame from the server: %.100r", frame)
                    continue
                if not isinstance(body, dict):
                    continue
                event = wrap(body)
                await self._on_event(event, ws)
        except ConnectionClosed:
            return

    async def _on_event(self, event: Record, ws: ClientConnection) -> None:
        kind = event.get("type")
        inner = event.get("message", {}).get("type") if kind == "message" else None
        if kind == "error" or inner == "error":
            self.last_error = event if kind == "error" else wrap(event["message"])
            message = str(self.last_error.get("message", "error"))
            if not self._session_started and message != "Unauthorized":  # Unauthorized: the 4001 close follows
                raise StreamingError(message, str(self.last_error.get("details", "")))
        elif inner == "conversation_created":
            self._on_conversation(str(event["message"]["data"]["conversationId"]))
        elif inner == "conversation_completed":
            self.completion = event["message"]
        elif inner == "recognition_stopped" and self._stop_sent:
            # Also ends the stream when the server keeps the socket open (disconnectOnStopRequest: false).
            await ws.close()
        elif kind == "message_response":
            messages = [m for m in event.get("messages", []) if m.get("id") not in self._delivered_message_ids]
            if not messages:
                return  # all delivered before a reconnect
            self._delivered_message_ids.update(str(m.get("id")) for m in messages)
            event["messages"] = messages
        await self._dispatch(str(kind), event)

    def _on_conversation(self, conversation_id: str) -> None:
        self._session_started = True
        if self.conversation is None:
            self.conversation = AsyncConversation(self._client, conversation_id)
            self.conversation_ids.append(conversation_id)
        elif conversation_id not in self.conversation_ids:
            self.conversation_ids.append(conversation_id)
            warnings.warn(
                f"connection {self.connection_id} resumed in conversation {conversation_id}, not "
                f"{self.conversation.conversation_id}: the server did not keep the conversation",
                ConversationResumeWarning,
                stacklevel=1,
            )
        if not self._started.done():
            self._started.set_result(None)

    async def _dispatch(self, kind: str, event: Record) -> None:
        callback = self._callbacks.get(kind)
        if callback is not None:
            try:
                result = callback(event)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                if self._callback_error is None:
                    error = CallbackError(f"the {kind!r} callback raised {exc!r}")
                    error.__cause__ = exc
                    self._callback_error = error
                log.debug("callback for %s raised", kind, exc_info=True)
        for queue in list(self._listeners):
            await queue.put(event)
