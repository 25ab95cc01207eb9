"""The blocking API with the official ``symbl`` SDK's names and signatures, run on the asyncio client.

The async client runs on one event loop in a background daemon thread, started on first use (not at import).
Blocking calls hand a coroutine to that loop and wait for its result; callbacks run on the loop's thread, as the
official SDK ran them on its WebSocket thread, so they should return quickly.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from convoscope_sdk.backoff import Backoff
from convoscope_sdk.client import AsyncClient
from convoscope_sdk.config import CredentialsLike, Timeouts, resolve_base_url, resolve_credentials
from convoscope_sdk.conversation import AsyncConversation
from convoscope_sdk.mic import read_blocks
from convoscope_sdk.records import EventText, Record
from convoscope_sdk.streaming import DEFAULT_NO_CONNECTION_TIMEOUT_S, AsyncStreamingConnection, Callback
from convoscope_sdk.telephony import AsyncTelephonyConnection

__all__ = [
    "AudioApi",
    "BackgroundLoop",
    "Connection",
    "Conversation",
    "ConversationsApi",
    "StreamingApi",
    "StreamingConnection",
    "TelephonyApi",
    "configure",
]

T = TypeVar("T")


class BackgroundLoop:
    """An asyncio event loop on a daemon thread."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="convoscope-sdk-loop", daemon=True).start()
                self._loop = loop
            return self._loop

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run on the loop and wait. Every coroutine the SDK passes here bounds itself with a timeout; Ctrl-C
        cancels it."""
        loop = self.loop
        if _running_loop() is loop:
            coroutine.close()
            raise RuntimeError("blocking convoscope_sdk calls cannot be made from a callback; use the async API")
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


@dataclass(frozen=True)
class _Defaults:
    base_url: str | None = None
    credentials: CredentialsLike | None = None
    timeouts: Timeouts | None = None
    backoff: Backoff | None = None


class _Runtime:
    """The loop and one ``AsyncClient`` per (base URL, app), shared by the module-level APIs, so a token is
    fetched once and reused, as the official SDK did."""

    def __init__(self) -> None:
        self.loop = BackgroundLoop()
        self.defaults = _Defaults()
        self._clients: dict[tuple[str, str, str], AsyncClient] = {}
        self._lock = threading.Lock()

    def client(self, credentials: CredentialsLike | None = None, base_url: str | None = None) -> AsyncClient:
        url = resolve_base_url(base_url or self.defaults.base_url)
        resolved = resolve_credentials(credentials if credentials is not None else self.defaults.credentials)
        key = (url, resolved.app_id, resolved.app_secret)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = AsyncClient(
                    url, resolved, timeouts=self.defaults.timeouts, backoff=self.defaults.backoff
                )
            return self._clients[key]

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run(coroutine)


_runtime = _Runtime()


def configure(
    base_url: str | None = None,
    credentials: CredentialsLike | None = None,
    *,
    timeouts: Timeouts | None = None,
    backoff: Backoff | None = None,
) -> None:
    """Defaults for the module-level APIs (``Streaming``, ``Conversations``, ``Telephony``, ``Audio``) when a call
    does not pass them; unset ones come from the environment or a config file."""
    _runtime.defaults = replace(
        _runtime.defaults,
        **{name: value for name, value in (("base_url", base_url), ("credentials", credentials),
                                           ("timeouts", timeouts), ("backoff", backoff)) if value is not None},
    )


class Conversation:
    """The official SDK's ``Conversation``: one conversation's REST calls, blocking."""

    def __init__(self, conversation: AsyncConversation, runtime: _Runtime = _runtime) -> None:
        self._async = conversation
        self._runtime = runtime
        self._job_done: concurrent.futures.Future[Any] | None = None

    def __repr__(self) -> str:
        return f"Conversation({self._async.conversation_id!r})"

    @property
    def asynchronous(self) -> AsyncConversation:
        return self._async

    def get_conversation_id(self) -> str:
        return self._async.conversation_id

    def get_conversation(self, conversation_id: str | None = None) -> Record:
        return self._runtime.run(self._async.get_conversation(conversation_id))

    def get_messages(self, parameters: Mapping[str, Any] | str | None = None) -> Record:
        return self._runtime.run(self._async.get_messages(parameters))

    def get_members(self, conversation_id: str | None = None) -> Record:
        return self._runtime.run(self._async.get_members(conversation_id))

    def get_topics(self, parameters: Mapping[str, Any] | str | None = None) -> Record:
        return self._runtime.run(self._async.get_topics(parameters))

    def get_questions(self, conversation_id: str | None = None) -> Record:
        return self._runtime.run(self._async.get_questions(conversation_id))

    def get_action_items(self, conversation_id: str | None = None) -> Record:
        return self._runtime.run(self._async.get_action_items(conversation_id))

    def get_follow_ups(self, conversation_id: str | None = None) -> Record:
        return self._runtime.run(self._async.get_follow_ups(conversation_id))

    def get_entities(self, conversation_id: str | None = None) -> Record:
        return self._runtime.run(self._async.get_entities(conversation_id))

    def get_trackers(self, conversation_id: str | None = None) -> list[Record]:
        return self._runtime.run(self._async.get_trackers(conversation_id))

    def get_analytics(self, conversation_id: str | None = None) -> Record:
        return self._runtime.run(self._async.get_analytics(conversation_id))

    def get_summary(self, parameters: Mapping[str, Any] | str | None = None) -> Record:
        return self._runtime.run(self._async.get_summary(parameters))

    def get_formatted_transcript(self, parameters: Mapping[str, Any] | None = None) -> Record:
        return self._runtime.run(self._async.get_formatted_transcript(parameters))

    def put_members(self, members_id: str, parameters: Mapping[str, Any]) -> Record:
        return self._runtime.run(self._async.put_members(members_id, parameters))

    def put_speakers_events(self, parameters: Mapping[str, Any]) -> Record:
        return self._runtime.run(self._async.put_speakers_events(parameters))

    def delete_conversation(self) -> Record:
        return self._runtime.run(self._async.delete_conversation())

    # -- Async API jobs --------------------------------------------------------------------------------------------

    def get_job_id(self) -> str | None:
        return self._async.get_job_id()

    def get_job_status(self) -> str | None:
        return self._async.get_job_status()

    def wait(self, timeout_s: float | None = None) -> Conversation:
        """Block until the job producing this conversation completed (``JobFailedError`` if it failed)."""
        self._runtime.run(self._async.wait(timeout_s))
        return self

    def _watch_job(self) -> None:
        self._job_done = self._runtime.loop.submit(self._async.wait())

    def on_complete(self, func: Callable[[Conversation], Any]) -> Conversation:
        """Call ``func(conversation)`` when the job completes (now, if it already has)."""
        self._on_job_end(func, succeeded=True)
        return self

    def on_error(self, func: Callable[[Conversation], Any]) -> Conversation:
        """Call ``func(conversation)`` if the job fails (now, if it already has)."""
        self._on_job_end(func, succeeded=False)
        return self

    def _on_job_end(self, func: Callable[[Conversation], Any], succeeded: bool) -> None:
        if self._job_done is None:
            if self._async.job is None:
                return
            self._watch_job()
        assert self._job_done is not None

        def fire(done: concurrent.futures.Future[Any]) -> None:
            if done.cancelled():
                return
            if (done.exception() is None) == succeeded:
                func(self)

        self._job_done.add_done_callback(fire)


class StreamingConnection:
    """The official SDK's ``StreamingConnection``, blocking, on an ``AsyncStreamingConnection``."""

    def __init__(self, connection: AsyncStreamingConnection, runtime: _Runtime = _runtime) -> None:
        self._async = connection
        self._runtime = runtime
        self._conversation: Conversation | None = None

    def __repr__(self) -> str:
        return f"StreamingConnection({self.connection_id!r}, conversation={self._async.conversation_id!r})"

    @property
    def asynchronous(self) -> AsyncStreamingConnection:
        return self._async

    @property
    def connection_id(self) -> str:
        return self._async.connection_id

    @property
    def connectionId(self) -> str:  # the official SDK's attribute name
        return self._async.connection_id

    @property
    def start_request(self) -> dict[str, Any]:
        return self._async.start_request

    @property
    def conversation(self) -> Conversation:
        current = self._async.conversation
        assert current is not None, "start_connection returns only after conversation_created"
        if self._conversation is None or self._conversation.asynchronous is not current:
            self._conversation = Conversation(current, self._runtime)
        return self._conversation

    @property
    def conversation_ids(self) -> list[str]:
        return list(self._async.conversation_ids)

    @property
    def reconnects(self) -> int:
        return self._async.reconnects

    def subscribe(self, event_callbacks: Mapping[str, Callback]) -> None:
        """Callbacks by event type: ``message``, ``message_response``, ``insight_response``, ``topic_response``,
        ``tracker_response``, ``entity_response``, ``error``. Each gets the parsed event (a dict)."""
        self._runtime.loop.loop.call_soon_threadsafe(self._async.subscribe, dict(event_callbacks))

    def send_audio(self, data: bytes | bytearray | memoryview) -> None:
        """Send audio (any length: it is cut into frames of at most 8192 bytes). Blocks only while the outgoing
        buffer is full, e.g. during a reconnect."""
        self._runtime.run(self._async.send_audio(bytes(data)))

    def send_audio_from_mic(self, device: int | str | None = None, duration_s: float | None = None) -> None:
        """Stream the microphone (``pip install 'convoscope-sdk[mic]'``) at the start_request's sample rate until
        Ctrl-C or ``duration_s``; then return, so ``stop()`` can follow."""
        rate = int(self._async.start_request["config"]["speechRecognition"]["sampleRateHertz"])
        try:
            for block in read_blocks(rate, device, duration_s):
                self.send_audio(block)
        except KeyboardInterrupt:
            pass

    def modify(self, sample_rate_hz: int | None = None, encoding: str | None = None) -> None:
        self._runtime.run(self._async.modify(sample_rate_hz, encoding))

    def stop(self, timeout_s: float | None = None) -> Record | None:
        """Stop streaming and wait until the server has finished the conversation; returns the
        ``conversation_completed`` message."""
        return self._runtime.run(self._async.stop(timeout_s))

    def close(self) -> None:
        """Drop the connection without ``stop_request``."""
        self._runtime.run(self._async.close())

    def __enter__(self) -> StreamingConnection:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None and not self._async.done:
            self.stop()
        else:
            self.close()


class StreamingApi:
    """``Streaming`` in the official SDK."""

    def __init__(self, runtime: _Runtime = _runtime) -> None:
        self._runtime = runtime

    def start_connection(
        self,
        credentials: CredentialsLike | None = None,
        speaker: Mapping[str, Any] | None = None,
        insight_types: Sequence[str] | None = None,
        config: Mapping[str, Any] | None = None,
        trackers: Sequence[Mapping[str, Any]] | None = None,
        actions: Sequence[Mapping[str, Any]] | None = None,
        *,
        base_url: str | None = None,
        connection_id: str | None = None,
        no_connection_timeout_s: int | None = DEFAULT_NO_CONNECTION_TIMEOUT_S,
        reconnect: bool = True,
        callbacks: Mapping[str, Callback] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> StreamingConnection:
        """Open a streaming connection; returns once the conversation exists, so ``connection.conversation`` is
        usable at once. See ``AsyncClient.start_connection`` for the keyword-only arguments."""
        client = self._runtime.client(credentials, base_url)
        connection = self._runtime.run(client.start_connection(
            speaker, insight_types, config, trackers, actions, connection_id=connection_id,
            no_connection_timeout_s=no_connection_timeout_s, reconnect=reconnect, callbacks=callbacks, extra=extra,
        ))
        return StreamingConnection(connection, self._runtime)


class ConversationsApi:
    """``Conversations`` in the official SDK: the same calls as ``Conversation``, conversation id first."""

    def __init__(self, runtime: _Runtime = _runtime) -> None:
        self._runtime = runtime

    def _conversation(self, conversation_id: str, credentials: CredentialsLike | None, base_url: str | None
                      ) -> Conversation:
        return Conversation(self._runtime.client(credentials, base_url).conversation(conversation_id), self._runtime)

    def get_conversation(self, conversation_id: str, credentials: CredentialsLike | None = None, *,
                         base_url: str | None = None) -> Record:
        return self._conversation(conversation_id, credentials, base_url).get_conversation()

    def get_messages(self, conversation_id: str, credentials: CredentialsLike | None = None,
                     parameters: Mapping[str, Any] | None = None, *, base_url: str | None = None) -> Record:
        return self._conversation(conversation_id, credentials, base_url).get_messages(parameters)

    def get_members(self, conversation_id: str, credentials: CredentialsLike | None = None, *,
                    base_url: str | None = None) -> Record:
        return self._conversation(conversation_id, credentials, base_url).get_members()

    def get_topics(self, conversation_id: str, credentials: CredentialsLike | None = None,
                   parameters: Mapping[str, Any] | None = None, *, base_url: str | None = None) -> Record:
        return self._conversation(conversation_id, credentials, base_url).get_topics(parameters)

    def get_questions(self, conversation_id: str, credentials: CredentialsLike | None = None, *,
                      base_url: str | None = None) -> Record:
        return self._conversation(conversation_id, credentials, base_url).get_questions()

    def get_action_items(self, conversation_id: str, credentials: CredentialsLike | None = None, *,
                         base_url: str | None = None) -> Record:
        return self._conversation(conversation_id, credentials, base_url).get_action_items()

    def get_follow_ups(self, conversation_id: str, credentials: CredentialsLike | None = None, *,
                       base_url: str | None = None) -> Record:
        return self._conversation(conversation_id, credentials, base_url).get_follow_ups()

    def get_entities(self, conversation_id: str, credentials: CredentialsLike | None = None, *,
                     base_url: str | None = None) -> Record:
        return self._conversation(conversation_id, credentials, base_url).get_entities()

    def get_trackers(self, conversation_id: str, credentials: CredentialsLike | None = None, *,
                     base_url: str | None = None) -> list[Record]:
        return self._conversation(conversation_id, credentials, base_url).get_trackers()

    def get_analytics(self, conversation_id: str, credentials: CredentialsLike | None = None, *,
                      base_url: str | None = None) -> Record:
        return self._conversation(conversation_id, credentials, base_url).get_analytics()

    def get_summary(self, conversation_id: str, credentials: CredentialsLike | None = None,
                    parameters: Mapping[str, Any] | None = None, *, base_url: str | None = None) -> Record:
        return self._conversation(conversation_id, credentials, base_url).get_summary(parameters)

    def list_conversations(self, credentials: CredentialsLike | None = None,
                           parameters: Mapping[str, Any] | None = None, *, base_url: str | None = None) -> Record:
        client = self._runtime.client(credentials, base_url)
        return self._runtime.run(client.list_conversations(parameters))


class Connection:
    """The official SDK's telephony ``Connection``: a call placed with ``Telephony.start_sip``/``start_pstn``."""

    def __init__(self, connection: AsyncTelephonyConnection, runtime: _Runtime = _runtime) -> None:
        self._async = connection
        self._runtime = runtime
        self.connectionId = connection.connection_id
        self.connection_id = connection.connection_id
        self.resultWebSocketUrl = connection.result_websocket_url
        self.eventUrl = connection.event_url
        self.conversation = Conversation(connection.conversation, runtime) if connection.conversation else None

    def subscribe(self, event_callbacks: Mapping[str, Callable[[EventText], Any]], block: bool = True) -> None:
        """Receive the call's results by event type (``transcript_response``, ``message_response``,
        ``insight_response``, ``topic_response``, ``tracker_response``, ...). As in the official SDK, callbacks get
        the event's JSON text (which here also allows ``event["type"]``), and the call blocks until the call ends
        (Ctrl-C hangs up); ``block=False`` returns at once."""
        callbacks = {kind: _as_text(callback) for kind, callback in event_callbacks.items()}
        subscription = self._runtime.run(_subscribe(self._async, callbacks))
        if not block:
            return
        try:
            self._runtime.run(subscription.wait())
        except KeyboardInterrupt:
            self.stop()

    def stop(self) -> Record:
        """Hang up and stop the subscription."""
        return self._runtime.run(self._async.stop())


def _as_text(callback: Callable[[EventText], Any]) -> Callable[[Record], Any]:
    return lambda record: callback(EventText(record))


async def _subscribe(connection: AsyncTelephonyConnection, callbacks: Mapping[str, Callable[[Record], Any]]) -> Any:
    return connection.subscribe(callbacks)


class TelephonyApi:
    """``Telephony`` in the official SDK."""

    def __init__(self, runtime: _Runtime = _runtime) -> None:
        self._runtime = runtime

    def start_sip(
        self,
        uri: str,
        audio_config: Mapping[str, Any] | None = None,
        credentials: CredentialsLike | None = None,
        actions: Sequence[Mapping[str, Any]] | None = None,
        data: Mapping[str, Any] | None = None,
        languages: Sequence[str] | None = None,
        timezone: str | None = None,
        *,
        base_url: str | None = None,
        insight_types: Sequence[str] | None = None,
        trackers: Sequence[Mapping[str, Any]] | None = None,
    ) -> Connection:
        """Dial a SIP URI; returns the call's ``Connection``. (Unlike the official SDK, ``credentials`` is used.)"""
        client = self._runtime.client(credentials, base_url)
        connection = self._runtime.run(client.start_sip(
            uri, audio_config, actions, data, languages, timezone, insight_types=insight_types, trackers=trackers
        ))
        return Connection(connection, self._runtime)

    def start_pstn(
        self,
        phone_number: str,
        dtmf: str | None = None,
        credentials: CredentialsLike | None = None,
        actions: Sequence[Mapping[str, Any]] | None = None,
        data: Mapping[str, Any] | None = None,
        languages: Sequence[str] | None = None,
        timezone: str | None = None,
        *,
        base_url: str | None = None,
        insight_types: Sequence[str] | None = None,
        trackers: Sequence[Mapping[str, Any]] | None = None,
    ) -> Connection:
        client = self._runtime.client(credentials, base_url)
        connection = self._runtime.run(client.start_pstn(
            phone_number, dtmf, actions, data, languages, timezone, insight_types=insight_types, trackers=trackers
        ))
        return Connection(connection, self._runtime)

    def stop(self, connection_id: str, credentials: CredentialsLike | None = None, *,
             base_url: str | None = None) -> Record:
        client = self._runtime.client(credentials, base_url)
        return self._runtime.run(client.stop_endpoint(connection_id))


class AudioApi:
    """``Audio`` in the official SDK: recorded calls through the Async API."""

    def __init__(self, runtime: _Runtime = _runtime) -> None:
        self._runtime = runtime

    def _conversation(self, conversation: AsyncConversation, wait: bool) -> Conversation:
        result = Conversation(conversation, self._runtime)
        if not wait:
            result._watch_job()
        return result

    def process_file(
        self,
        file_path: str | Path,
        credentials: CredentialsLike | None = None,
        content_type: str | None = None,
        wait: bool = True,
        parameters: Mapping[str, Any] | None = None,
        *,
        base_url: str | None = None,
    ) -> Conversation:
        """Upload a recording; with ``wait`` (the default) return once its job has completed."""
        client = self._runtime.client(credentials, base_url)
        conversation = self._runtime.run(client.process_file(file_path, content_type or None, wait, parameters))
        return self._conversation(conversation, wait)

    def append_file(
        self,
        file_path: str | Path,
        conversation_id: str,
        credentials: CredentialsLike | None = None,
        content_type: str | None = None,
        wait: bool = True,
        parameters: Mapping[str, Any] | None = None,
        *,
        base_url: str | None = None,
    ) -> Conversation:
        client = self._runtime.client(credentials, base_url)
        conversation = self._runtime.run(client.process_file(
            file_path, content_type or None, wait, parameters, conversation_id=conversation_id
        ))
        return self._conversation(conversation, wait)

    def process_url(
        self,
        payload: Mapping[str, Any],
        credentials: CredentialsLike | None = None,
        wait: bool = True,
        parameters: Mapping[str, Any] | None = None,
        *,
        base_url: str | None = None,
    ) -> Conversation:
        client = self._runtime.client(credentials, base_url)
        conversation = self._runtime.run(client.process_url(payload, wait, parameters))
        return self._conversation(conversation, wait)

    def append_url(
        self,
        payload: Mapping[str, Any],
        conversation_id: str,
        credentials: CredentialsLike | None = None,
        wait: bool = True,
        parameters: Mapping[str, Any] | None = None,
        *,
        base_url: str | None = None,
    ) -> Conversation:
        client = self._runtime.client(credentials, base_url)
        conversation = self._runtime.run(client.process_url(payload, wait, parameters,
                                                            conversation_id=conversation_id))
        return self._conversation(conversation, wait)
