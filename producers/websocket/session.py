"""One client connection of the streaming API: the Symbl protocol state machine around our pipeline."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from convoscope.ids import member_id, new_stream_id
from convoscope.logs import bind_log_context
from convoscope.registry import join_conversation
from convoscope.services import Services
from convoscope.timestamps import now_ms
from producers.actions import recipients_attribute
from producers.audio import PIPELINE_SAMPLE_RATE_HZ, AudioNormalizer
from producers.conversation_settings import InlineTracker, app_trackers, conversation_settings_record
from producers.redaction import redaction_attribute
from producers.websocket.events import websocket_event
from producers.websocket.limits import StreamSlots, TokenBucket
from producers.websocket.protocol import (
    PING,
    PONG,
    ModifyRequest,
    ProtocolError,
    StartRequest,
    StopRequest,
    parse_client_message,
)
from producers.websocket.publisher import AudioPublisher, BrokerStalled, PublishError
from sinks.live.hub import Subscription
from sinks.live.symbl_format import conversation_completed
from sinks.live.view import LiveOptions, LiveView

__all__ = ["CloseCode", "StreamingSession"]

log = logging.getLogger(__name__)

ACTIVE_STREAMS = Gauge("convoscope_gateway_active_streams", "Streams between start_request and their end")
AUDIO_BYTES = Counter("convoscope_gateway_audio_bytes_total", "Audio bytes accepted from clients")
CLIENT_ERRORS = Counter("convoscope_gateway_client_errors_total", "Error messages sent to clients", ["message"])
RESULTS_SENT = Counter("convoscope_gateway_results_sent_total", "Results pushed to live clients", ["kind"])
RESULTS_WAIT_S = 10.0
"""After a stream's last final, how long its client waits for that final's insights, topics, trackers and
entities before the conversation is reported complete."""
FINAL_DELIVERY_SECONDS = Histogram(
    "convoscope_gateway_final_delivery_seconds",
    "From the end of an utterance (wall clock of its last sample) to its final message leaving for the client",
    buckets=(0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0),
)
_STREAM_SLOTS: dict[int, StreamSlots] = {}
"""Open streams per app on this process, one counter per configured limit (tests run gateways in one process)."""


def _stream_slots(limit: int) -> StreamSlots:
    return _STREAM_SLOTS.setdefault(limit, StreamSlots(limit))


class CloseCode:
    NORMAL = 1000
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    POLICY_VIOLATION = 1008
    TRY_AGAIN_LATER = 1013
    UNAUTHORIZED = 4001


@dataclass
class ActiveStream:
    """What exists between a start_request and the end of that stream."""

    request: StartRequest
    conversation_id: str
    conversation_started_at_ms: int
    stream_id: str
    speaker: dict[str, Any]
    normalizer: AudioNormalizer
    subscription: Subscription
    view: LiveView
    forwarder: asyncio.Task[None]
    seq: int = 0
    samples: int = 0
    stream_started_at_ms: int | None = None


class StreamingSession:
    def __init__(self, websocket: WebSocket, services: Services, app_id: str, connection_id: str) -> None:
        self.ws = websocket
        self.services = services
        self.app_id = app_id
        self.connection_id = connection_id
        self.publisher = AudioPublisher(services.producer, services.audio_budget,
                                        services.settings.broker_stall_timeout_s)
        self.stream: ActiveStream | None = None
        self._send_lock = asyncio.Lock()
        self._warned_audio_before_start = False
        settings = services.settings
        self._control_budget = TokenBucket(settings.max_control_messages_per_s, settings.max_control_burst)
        self._slots = _stream_slots(settings.max_streams_per_app)

    # -- sending -------------------------------------------------------------------------------

    async def send_json(self, body: dict[str, Any]) -> None:
        await self.send_text(json.dumps(body, separators=(",", ":")))

    async def send_text(self, text: str) -> None:
        async with self._send_lock:
            if self.ws.application_state == WebSocketState.CONNECTED:
                await self.ws.send_text(text)

    async def send_error(self, message: str, details: str) -> None:
        CLIENT_ERRORS.labels(message).inc()
        await self.send_json({"type": "error", "message": message, "details": details})

    async def close(self, code: int, reason: str = "") -> None:
        async with self._send_lock:
            if self.ws.application_state == WebSocketState.CONNECTED:
                await self.ws.close(code, reason[:120])

    # -- main loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("bytes") is not None:
                    if not await self.on_audio(message["bytes"]):
                        break
                elif message.get("text") is not None:
                    if not await self.on_text(message["text"]):
                        break
        except WebSocketDisconnect:
            pass
        except PublishError as exc:
            log.error("connection %s: %s", self.connection_id, exc)
            stored_s = self.publisher.acknowledged_samples / PIPELINE_SAMPLE_RATE_HZ
            if isinstance(exc, BrokerStalled):
                details = (f"the message broker accepted no audio for {self.publisher.stall_timeout_s:g} s; the "
                           f"first {stored_s:.2f} s of this stream's audio are stored; reconnect with the same "
                           "connectionId and send the rest")
            else:
                details = f"audio could not be stored ({exc}); the first {stored_s:.2f} s are; please retry"
            await self.send_error("Service unavailable", details)
            await self.close(CloseCode.TRY_AGAIN_LATER, "audio could not be stored")
        finally:
            if self.stream is not None:
                # The client vanished without stop_request: finish what it sent anyway.
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.end_stream(notify_client=False, client_vanished=True))

    async def on_text(self, text: str) -> bool:
        if not self._control_budget.take():
            settings = self.services.settings
            await self.send_error("Too many requests", (
                f"more than {settings.max_control_messages_per_s:g} messages a second (bursts of "
                f"{settings.max_control_burst}) on one connection; the connection is closed, audio already sent "
                "is kept"))
            await self.end_stream(notify_client=False)
            await self.close(CloseCode.POLICY_VIOLATION, "too many messages")
            return False
        if text.strip() == PING:
            await self.send_text(PONG)
            return True
        try:
            request = parse_client_message(text)
        except ProtocolError as exc:
            await self.send_error(exc.message, exc.details)
            return True
        if isinstance(request, StartRequest):
            if self.stream is not None:
                await self.send_error("Bad request", "a start_request is already active on this connection")
                return True
            await self.start(request)
            return True
        if isinstance(request, StopRequest):
            if self.stream is None:
                await self.send_error("Bad request", "stop_request without an active start_request")
                return True
            disconnect = self.stream.request.disconnect_on_stop
            await self.end_stream(notify_client=True)
            if disconnect:
                await self.close(CloseCode.NORMAL, "stopped")
                return False
            return True
        if isinstance(request, ModifyRequest):
            if self.stream is None:
                await self.send_error("Bad request", "modify_request without an active start_request")
                return True
            tail = self.stream.normalizer.flush()
            if tail:
                await self.publish_pcm(self.stream, tail)
            self.stream.normalizer = AudioNormalizer(request.audio_format)
            await self.send_json({"type": "message", "message": {"type": "session_modified", "data": {
                "encoding": request.audio_format.encoding, "sampleRateHertz": request.audio_format.sample_rate_hz,
            }}})
            return True
        return True

    async def on_audio(self, data: bytes) -> bool:
        if self.stream is None:
            if not self._warned_audio_before_start:
                self._warned_audio_before_start = True
                await self.send_error("Bad request", "audio received before start_request; it was ignored")
            return True
        limit = self.services.settings.max_frame_bytes
        if len(data) > limit:
            await self.send_error("Bad request", f"audio frame of {len(data)} bytes exceeds the {limit}-byte limit")
            await self.end_stream(notify_client=False)
            await self.close(CloseCode.MESSAGE_TOO_BIG, f"audio frames must be at most {limit} bytes")
            return False
        AUDIO_BYTES.inc(len(data))
        pcm = self.stream.normalizer.push(data)
        if pcm:
            await self.publish_pcm(self.stream, pcm)
        longest_s = self.services.settings.max_stream_s
        if self.stream.samples >= longest_s * PIPELINE_SAMPLE_RATE_HZ:
            await self.send_error("Limit reached", f"a stream may carry at most {longest_s:g} s of audio; this one "
                                                   "was stopped there and its results are complete")
            await self.end_stream(notify_client=True)
            await self.close(CloseCode.POLICY_VIOLATION, "stream duration limit")
            return False
        return True

    # -- stream lifecycle ----------------------------------------------------------------------

    async def start(self, request: StartRequest) -> None:
        if not self._slots.acquire(self.app_id):
            await self.send_error("Too many streams", (
                f"this app already has {self._slots.limit} streams open on this gateway; stop one or retry later"))
            return
        try:
            await self._start(request)
        except BaseException:
            if self.stream is None:
                self._slots.release(self.app_id)
            raise

    async def _start(self, request: StartRequest) -> None:
        services = self.services
        stream_id = new_stream_id()
        # What another replica needs to end this stream should this one die (producers/stream_seats.py).
        seat = services.seats.seat(stream_id, request.no_connection_timeout_s, {
            "name": request.speaker.name, "user_id": request.speaker.user_id, "language": request.language_code,
            "stream_started_at_ms": now_ms(),
        })
        joined = await join_conversation(
            services.sessions, self.app_id, self.connection_id, request.meeting_title, now_ms(), seat
        )
        services.seats.track(stream_id, self._seat_lost)
        conversation_id = joined.conversation_id
        bind_log_context(conversation_id=conversation_id, stream_id=stream_id)
        speaker = {
            "id": member_id(conversation_id, request.speaker.user_id, request.speaker.name, stream_id),
            "name": request.speaker.name,
            "user_id": request.speaker.user_id,
        }
        subscription = services.hub.subscribe(conversation_id)
        view = LiveView(conversation_id, LiveOptions(
            insight_types=frozenset(t for t in request.insight_types if t != "topic"),
            entities=request.detect_entities,
            sentiment=request.sentiment,
            analytics=request.analytics,
        ))
        forwarder = asyncio.create_task(self.forward_results(subscription, view), name=f"forward-{stream_id}")
        self.stream = ActiveStream(
            request=request,
            conversation_id=conversation_id,
            conversation_started_at_ms=joined.conversation_started_at_ms,
            stream_id=stream_id,
            speaker=speaker,
            normalizer=AudioNormalizer(request.audio_format),
            subscription=subscription,
            view=view,
            forwarder=forwarder,
        )
        ACTIVE_STREAMS.inc()
        # The client is back: seats held for it since it vanished go now (this stream has its own). Best effort:
        # unreleased, they go at the end of their noConnectionTimeout anyway.
        try:
            await services.seats.client_returned(self.app_id, self.connection_id, stream_id)
        except Exception as exc:
            log.warning("could not release held seats of connection %s: %s", self.connection_id, exc)
        stored_trackers = (
            await app_trackers(services.sessions, self.app_id) if request.enable_all_trackers else []
        )
        await self.publisher.conversation_settings(conversation_settings_record(
            conversation_id, self.app_id, joined.conversation_started_at_ms,
            timezone_offset_min=request.timezone_offset_min,
            insight_types=request.insight_types,
            confidence_threshold=request.confidence_threshold,
            inline_trackers=[InlineTracker(t.name, t.vocabulary) for t in request.trackers],
            stored_trackers=stored_trackers,
            tracker_interim_results=request.tracker_interim_results,
            sentiment=request.sentiment,
        ))
        at = now_ms()
        if joined.created:
            await self.publisher.event(self._event("CONVERSATION_STARTED", conversation_id, at,
                                                   name=request.meeting_title, subject=conversation_id))
        await self.publisher.event(self._event("MEMBER_JOINED", conversation_id, at, member=speaker,
                                               subject=speaker["id"]))
        await self.publisher.event(self._event("STREAM_STARTED", conversation_id, at, stream_id=stream_id,
                                               member=speaker, subject=stream_id, attributes={
                                                   "encoding": request.audio_format.encoding,
                                                   "sample_rate_hz": str(request.audio_format.sample_rate_hz),
                                                   "language": request.language_code,
                                                   "insight_types": ",".join(request.insight_types),
                                                   "trackers": json.dumps([
                                                       {"name": t.name, "vocabulary": list(t.vocabulary)}
                                                       for t in request.trackers
                                                   ]),
                                                   # the store worker records the request (sinks/email sends it)
                                                   **recipients_attribute(request.summary_emails),
                                                   **redaction_attribute(request.redaction),
                                               }))
        data = {"conversationId": conversation_id}
        await self.send_json({"type": "message", "message": {"type": "started_listening"}})
        await self.send_json({"type": "message", "message": {"type": "conversation_created", "data": data}})
        await self.send_json({"type": "message", "message": {"type": "recognition_started", "data": data}})

    def _event(self, event_type: str, conversation_id: str, at: int, *, subject: str,
               stream_id: str | None = None, member: dict[str, Any] | None = None, name: str | None = None,
               final_count: int | None = None, attributes: dict[str, str] | None = None) -> dict[str, Any]:
        return websocket_event(self.app_id, self.connection_id, event_type, conversation_id, at, subject=subject,
                               stream_id=stream_id, member=member, name=name, final_count=final_count,
                               attributes=attributes)

    async def publish_pcm(self, stream: ActiveStream, pcm: bytes) -> None:
        samples = len(pcm) // 2
        if stream.stream_started_at_ms is None:
            # Sample 0 was captured one chunk-duration before it arrived.
            stream.stream_started_at_ms = now_ms() - samples * 1000 // PIPELINE_SAMPLE_RATE_HZ
        await self.publisher.frame(self._frame(stream, "AUDIO", pcm))
        stream.seq += 1
        stream.samples += samples

    def _frame(self, stream: ActiveStream, kind: str, pcm: bytes) -> dict[str, Any]:
        started = stream.stream_started_at_ms if stream.stream_started_at_ms is not None else now_ms()
        return {
            "conversation_id": stream.conversation_id,
            "app_id": self.app_id,
            "stream_id": stream.stream_id,
            "kind": kind,
            "seq": stream.seq,
            "start_sample": stream.samples,
            "sample_rate_hz": PIPELINE_SAMPLE_RATE_HZ,
            "pcm": pcm,
            "speaker": stream.speaker,
            "stream_started_at_ms": started,
            "stream_offset_ms": max(0, started - stream.conversation_started_at_ms),
            "language": stream.request.language_code,
            "sent_at_ms": now_ms(),
            "redaction_types": list(stream.request.redaction),
        }

    async def end_stream(self, notify_client: bool, client_vanished: bool = False) -> None:
        """Finish the stream: last audio, END marker, wait for its finals, then tell the client."""
        stream = self.stream
        if stream is None:
            return
        self.stream = None
        self._slots.release(self.app_id)
        ACTIVE_STREAMS.dec()
        services = self.services
        try:
            await self._finish_stream(stream, notify_client, client_vanished)
        finally:
            stream.forwarder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stream.forwarder
            services.hub.unsubscribe(stream.subscription)
        if notify_client:
            await self.send_json(conversation_completed(stream.conversation_id))
            await self.send_json({"type": "message", "message": {"type": "recognition_stopped"}})

    async def _finish_stream(self, stream: ActiveStream, notify_client: bool, client_vanished: bool) -> None:
        """Publish the rest and the END; for a client still listening wait for its results; then the seat goes
        (or is held for a vanished client's noConnectionTimeout)."""
        services = self.services
        try:
            if self.publisher.stalled:
                raise BrokerStalled("the broker stalled: the stream is left to a reaper")
            tail = stream.normalizer.flush()
            if tail:
                await self.publish_pcm(stream, tail)
            await self.publisher.frame(self._frame(stream, "END", b""))
            await self.publisher.drain()
            await self.publisher.event(self._event("STREAM_ENDED", stream.conversation_id, now_ms(),
                                                   stream_id=stream.stream_id, member=stream.speaker,
                                                   subject=stream.stream_id))
        except BaseException:
            # Not ended (the broker is away): stop renewing its lease, and a reaper ends it once it can.
            services.seats.forget(stream.stream_id)
            raise
        if notify_client:
            done = await stream.subscription.wait_stream_done(stream.stream_id, services.settings.stop_timeout_s)
            if not done:
                log.warning("stream %s: transcription did not finish within %ss", stream.stream_id,
                            services.settings.stop_timeout_s)
            kinds = stream.view.options.result_kinds()
            if not await stream.subscription.wait_results_done(stream.stream_id, kinds, RESULTS_WAIT_S):
                log.warning("stream %s: text results (%s) incomplete after %ss", stream.stream_id,
                            ",".join(sorted(kinds)), RESULTS_WAIT_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stream.subscription.queue.join(), RESULTS_WAIT_S)
        if client_vanished and stream.request.no_connection_timeout_s > 0:
            await services.seats.hold(stream.stream_id)
        else:
            await services.seats.leave(stream.stream_id)

    async def _seat_lost(self) -> None:
        """Another replica ended this stream: this one missed its lease (it lost the database for that long)."""
        await self.send_error("Service unavailable", (
            "this stream was ended while the gateway could not reach its database; reconnect with the same "
            "connectionId to continue the conversation"))
        await self.close(CloseCode.TRY_AGAIN_LATER, "stream lease lost")

    async def forward_results(self, subscription: Subscription, view: LiveView) -> None:
        """Results of the whole conversation (every speaker) to this client, in arrival order."""
        while True:
            kind, record = await subscription.queue.get()
            try:
                await self._forward(subscription, view, kind, record)
            finally:
                subscription.queue.task_done()
            if subscription.overflowed:
                await self.send_error("Client too slow", "results could not be delivered fast enough")
                await self.close(CloseCode.TRY_AGAIN_LATER, "client too slow")
                return

    async def _forward(self, subscription: Subscription, view: LiveView, kind: str, record: dict[str, Any]
                       ) -> None:
        bodies = view.render(kind, record)
        for body in bodies:
            await self.send_json(body)
        if kind == "final":
            subscription.mark_delivered(record)
            ended_at_ms = record["stream_started_at_ms"] + record["end_sample"] * 1000 // PIPELINE_SAMPLE_RATE_HZ
            FINAL_DELIVERY_SECONDS.observe(max(0.0, (now_ms() - ended_at_ms) / 1000))
        if bodies and kind != "event":
            RESULTS_SENT.labels(kind).inc()
