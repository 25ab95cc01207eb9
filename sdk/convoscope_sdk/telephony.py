"""The Telephony API (``POST /v1/endpoint:connect``) and listen-only subscriptions to a live connection."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import inspect
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from convoscope_sdk.config import websocket_url
from convoscope_sdk.conversation import AsyncConversation
from convoscope_sdk.exceptions import (
    ApiError,
    AuthenticationError,
    CallbackError,
    ConfigurationError,
    ConnectionClosedError,
    ConvoscopeError,
)
from convoscope_sdk.records import Record, wrap

if TYPE_CHECKING:
    from convoscope_sdk.client import AsyncClient

__all__ = [
    "DEFAULT_SIP_AUDIO_CONFIG",
    "AsyncSubscription",
    "AsyncTelephonyConnection",
    "build_endpoint_request",
]

log = logging.getLogger(__name__)

ENDPOINT_PATH = "/v1/endpoint:connect"
TELEPHONY_SUBSCRIBE_PATH = "/session/subscribe/"
STREAMING_SUBSCRIBE_PATH = "/v1/subscribe/"
DEFAULT_SIP_AUDIO_CONFIG = {"sampleRate": 16000, "sampleSize": "16"}  # the official SDK's default
NORMAL_CLOSE = 1000
UNAUTHORIZED_CLOSE_CODE = 4001


def build_endpoint_request(
    endpoint: Mapping[str, Any],
    *,
    actions: Sequence[Mapping[str, Any]] | None = None,
    data: Mapping[str, Any] | None = None,
    languages: Sequence[str] | None = None,
    timezone: str | None = None,
    insight_types: Sequence[str] | None = None,
    trackers: Sequence[Mapping[str, Any]] | None = None,
    push_speaker_events: bool | None = None,
) -> dict[str, Any]:
    """The ``operation: start`` body for ``/v1/endpoint:connect``, validated as the official SDK did."""
    kind = str(endpoint.get("type") or "").lower()
    if kind == "pstn" and not endpoint.get("phoneNumber"):
        raise ConfigurationError("phoneNumber is required when type = 'pstn'.")
    if kind == "sip" and not endpoint.get("uri"):
        raise ConfigurationError("uri is required when type = 'sip'.")
    if kind not in ("pstn", "sip"):
        raise ConfigurationError(f"endpoint.type = {endpoint.get('type')!r} is not valid; use 'pstn' or 'sip'")
    invalid = [a for a in actions or () if not a.get("invokeOn") or not a.get("name")]
    if invalid:
        raise ConfigurationError(f"actions need invokeOn and name: {invalid}")
    if languages is not None and (isinstance(languages, str) or not isinstance(languages, Sequence)):
        raise ConfigurationError("languages should be a list of strings")
    if timezone is not None and not isinstance(timezone, str):
        raise ConfigurationError("timezone should be a string such as 'US/Pacific'")
    body: dict[str, Any] = {
        "operation": "start",
        "endpoint": {key: value for key, value in endpoint.items() if value is not None},
        "actions": [dict(action) for action in actions or ()],
        "data": dict(data or {}),
    }
    if languages:
        body["languages"] = list(languages)
    if timezone:
        body["timezone"] = timezone
    if insight_types:
        body["insightTypes"] = list(insight_types)
    if trackers:
        body["trackers"] = [dict(tracker) for tracker in trackers]
    if push_speaker_events is not None:
        body["pushSpeakerEvents"] = push_speaker_events
    return body


class AsyncSubscription:
    """Listen-only WebSocket to a live connection's results; callbacks by top-level ``type``. Reconnects with
    backoff after a drop; ends when the server closes normally, on ``conversation_completed``, or on ``close()``."""

    def __init__(self, client: AsyncClient, url: str, callbacks: Mapping[str, Callable[[Record], Any]]) -> None:
        self._client = client
        self.url = url
        self._callbacks = dict(callbacks)
        self._task: asyncio.Task[None] | None = None
        self._failure: ConvoscopeError | None = None
        self._callback_error: CallbackError | None = None
        self.events_received = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"convoscope-subscribe-{self.url}")

    async def wait(self, timeout_s: float | None = None) -> None:
        """Until the subscription ends; raises what ended it, or a callback's error."""
        assert self._task is not None
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(self._task)
        except builtins.TimeoutError:
            return  # still running: the caller only wanted to wait so long
        self._raise_if_broken()

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def done(self) -> bool:
        return self._task is not None and self._task.done()

    def _raise_if_broken(self) -> None:
        if self._callback_error is not None:
            error, self._callback_error = self._callback_error, None
            raise error
        if self._failure is not None:
            raise self._failure

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = self._client.backoff
        attempt, outage_since, token_retried = 0, None, False
        try:
            while True:
                code, received = await self._listen_once()
                if code == NORMAL_CLOSE or code == "completed":
                    return
                if received:
                    attempt, outage_since, token_retried = 0, None, False
                if code == UNAUTHORIZED_CLOSE_CODE:
                    if token_retried:
                        raise AuthenticationError("the server refused the access token", 401)
                    token_retried = True
                    continue
                now = loop.time()
                outage_since = now if outage_since is None else outage_since
                delay = backoff.delay_s(attempt)
                if not backoff.should_retry(now - outage_since, delay):
                    raise ConnectionClosedError(f"subscription to {self.url} lost", code if isinstance(code, int)
                                                else None)
                attempt += 1
                await asyncio.sleep(delay)
        except ConvoscopeError as error:
            self._failure = error

    async def _listen_once(self) -> tuple[int | str | None, bool]:
        """One socket; returns (close code or "completed", whether anything arrived)."""
        token = await self._client.tokens.get()
        received = False
        try:
            ws = await websockets.connect(
                self.url, additional_headers={"x-api-key": token}, open_timeout=self._client.timeouts.connect_s,
                ping_interval=15, ping_timeout=30, close_timeout=5, compression=None,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                self._client.tokens.invalidate(token)
                return UNAUTHORIZED_CLOSE_CODE, False
            if status == 429 or status >= 500:
                return None, False
            raise ApiError(status, f"subscription to {self.url} refused") from exc
        except (OSError, InvalidHandshake, builtins.TimeoutError):
            return None, False
        try:
            async for frame in ws:
                if isinstance(frame, bytes):
                    continue
                received = True
                try:
                    body = json.loads(frame)
                except json.JSONDecodeError:
                    continue
                if isinstance(body, dict):
                    await self._dispatch(wrap(body))
                    inner = body.get("message", {}).get("type") if body.get("type") == "message" else None
                    if inner == "conversation_completed":
                        return "completed", True
                    if body.get("type") == "error" and body.get("message") == "Not found":
                        raise ConnectionClosedError(f"nothing to subscribe to: {body.get('details')}")
        except ConnectionClosed:
            pass
        finally:
            await ws.close()
        if ws.close_code == UNAUTHORIZED_CLOSE_CODE:
            self._client.tokens.invalidate(token)
        return ws.close_code, received

    async def _dispatch(self, event: Record) -> None:
        self.events_received += 1
        callback = self._callbacks.get(str(event.get("type")))
        if callback is None:
            return
        try:
            result = callback(event)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            if self._callback_error is None:
                error = CallbackError(f"the {event.get('type')!r} callback raised {exc!r}")
                error.__cause__ = exc
                self._callback_error = error


class AsyncTelephonyConnection:
    """A call placed through ``/v1/endpoint:connect``: ids, its conversation, and its live results."""

    def __init__(self, client: AsyncClient, answer: Record) -> None:
        self._client = client
        self.answer = answer
        self.connection_id: str = str(answer["connectionId"])
        conversation_id = answer.get("conversationId")
        self.conversation = AsyncConversation(client, str(conversation_id)) if conversation_id else None
        self.result_websocket_url: str | None = answer.get("resultWebSocketUrl")
        self.event_url: str | None = answer.get("eventUrl")
        self.subscription: AsyncSubscription | None = None

    # The official SDK's attribute names.
    @property
    def connectionId(self) -> str:
        return self.connection_id

    @property
    def resultWebSocketUrl(self) -> str | None:
        return self.result_websocket_url

    @property
    def eventUrl(self) -> str | None:
        return self.event_url

    def subscribe(self, event_callbacks: Mapping[str, Callable[[Record], Any]]) -> AsyncSubscription:
        """Start receiving the call's results (``transcript_response``, ``message_response``,
        ``insight_response``, ...) on ``/session/subscribe/{connectionId}``; ``await .wait()`` on the result
        until the call ends."""
        url = websocket_url(self._client.base_url, TELEPHONY_SUBSCRIBE_PATH + self.connection_id)
        self.subscription = AsyncSubscription(self._client, url, event_callbacks)
        self.subscription.start()
        return self.subscription

    async def stop(self) -> Record:
        """Hang up (``operation: stop``); returns the server's answer (with ``summaryInfo``)."""
        answer = await self._client.stop_endpoint(self.connection_id)
        if self.subscription is not None:
            with contextlib.suppress(builtins.TimeoutError):
                await self.subscription.wait(timeout_s=self._client.timeouts.stop_s)
            await self.subscription.close()
        return answer
