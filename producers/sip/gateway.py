"""The SIP gateway process (`convoscope gateway sip`): a SIP user agent and RTP receiver publishing call audio.

One asyncio process holds the SIP stack (aiosipua, UDP), one RTP socket per call leg, and a Kafka producer. Each
leg's audio goes through ``LegMedia`` (jitter buffer, codec, media clock, concealment, resampling) and out as the
same AudioFrame records the WebSocket gateway publishes, so transcription, storage and live push need nothing
new. Calls come from two sides:

- dial-out: START commands of the Telephony API (``convoscope.telephony.commands.v1``, consumer group
  ``convoscope-sip``); STOP commands are read by every gateway, and the one holding the call hangs up;
- inbound: INVITEs on ``CONVOSCOPE_SIP_PORT`` from allowed networks (and with digest credentials when configured)
  are answered and transcribed as a new conversation of the owning app.

Every call ends the same way, whoever ends it: the legs' last audio and END markers are published and
acknowledged, then STREAM_ENDED, the final CALL_STATUS, and CONVERSATION_COMPLETED.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiosipua import (
    IncomingCall,
    OutgoingCall,
    SipRequest,
    SipResponse,
    SipUAC,
    SipUAS,
    UdpSipTransport,
    parse_uri,
)
from aiosipua.dialog import DialogState
from prometheus_client import Counter, Gauge, Histogram

from convoscope.auth import list_apps
from convoscope.db import create_engine, migrate, session_factory
from convoscope.ids import event_id, member_id, new_stream_id
from convoscope.kafka import create_consumer, create_producer, ensure_topics, new_trace_id
from convoscope.logs import bind_log_context
from convoscope.registry import join_conversation, leave_conversation, live_conversation_id
from convoscope.settings import Settings
from convoscope.timestamps import now_ms
from producers.audio import PIPELINE_SAMPLE_RATE_HZ
from producers.conversation_settings import app_trackers, conversation_settings_record
from producers.redaction import redaction_attribute, types_of_attribute
from producers.sip.access import DigestVerifier, SourceFilter, parse_digest_accounts
from producers.sip.codecs import DTMF_PAYLOAD_TYPE, supported_codecs
from producers.sip.media import LegMedia, PcmChunk
from producers.sip.sdp import AudioStream, SdpError, build_answer, build_offer, streams_from_answer, streams_from_offer
from producers.sip.status import CallStatus, EndedBy, call_status_event, status_for_rejection
from producers.websocket.publisher import AudioPublisher, PublishError
from schemas.serde import SchemaError
from schemas.topics import ALL_TOPICS, TELEPHONY_COMMANDS

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from convoscope.health import Health

__all__ = ["SIP_GROUP", "SipGateway", "run_sip_gateway"]

log = logging.getLogger(__name__)

SIP_GROUP = "convoscope-sip"
USER_AGENT = "convoscope"
TICK_S = 0.02
TIMEOUT_CHECK_S = 0.25
INVITE_RETRANSMIT_S = (0.5, 1.0, 2.0, 4.0, 4.0, 4.0)  # RFC 3261 timer A over UDP, capped at T2
STALE_COMMAND_SLACK_S = 30.0
COMMAND_POLL_MS = 250
RTP_QUIET_S = 0.1  # after a hang-up, the RTP socket counts as drained once this long passes without a packet
RTP_DRAIN_MAX_S = 1.0
ANNOUNCE_WAIT_S = 10.0
INBOUND_APP_CACHE_S = 60.0
STOP_MEMORY_S = 300.0
MAX_BACKLOG_FRAMES = 600  # 60 s of 100 ms frames waiting for the broker: the call is ended rather than grow
ALL_INSIGHT_TYPES = ("question", "action_item", "follow_up")

CALLS = Counter("convoscope_sip_calls_total", "Calls by direction and final status", ["direction", "status"])
ACTIVE_CALLS = Gauge("convoscope_sip_active_calls", "Calls between INVITE and their end")
RTP_PACKETS = Counter("convoscope_sip_rtp_packets_total", "RTP packets received on answered legs")
RTP_LOST = Counter("convoscope_sip_rtp_lost_total", "RTP packets never received (counted when a leg ends)")
FRAMES = Counter("convoscope_sip_frames_total", "Audio frames published")
FRAME_DELAY = Histogram(
    "convoscope_sip_frame_delay_seconds",
    "From the arrival of the RTP packet that completed a frame to the frame being handed to the producer",
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, receive: Callable[[bytes, tuple[str, int]], None]) -> None:
        self._receive = receive

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._receive(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)


class _SipTransport(UdpSipTransport):
    """aiosipua's UDP transport, bound through our own protocol (its own asserts on Python 3.11) and reporting the
    port it got when asked for port 0."""

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self._dispatch), local_addr=self.local_addr
        )
        self._udp_transport = transport
        host, port = transport.get_extra_info("sockname")[:2]
        self.local_addr = (str(host), int(port))


class _Uac(SipUAC):
    """aiosipua's UAC plus two transaction-layer duties it leaves to us over UDP: retransmitting an INVITE until
    a response arrives, and ACKing a final non-2xx response (RFC 3261 §17.1.1.3)."""

    def __init__(self, transport: UdpSipTransport, **kwargs: Any) -> None:
        super().__init__(transport, **kwargs)
        self.responded: set[str] = set()
        # INVITEs by Call-ID until their final response; aiosipua forgets a call once it sends CANCEL, but the
        # 487 that follows still needs its ACK.
        self._invites: dict[str, tuple[SipRequest, tuple[str, int]]] = {}

    def send_invite(self, from_uri: str, to_uri: str, remote_addr: tuple[str, int], *args: Any, **kwargs: Any
                    ) -> OutgoingCall:
        call = super().send_invite(from_uri, to_uri, remote_addr, *args, **kwargs)
        self._invites[call.call_id] = (call.invite, remote_addr)
        return call

    def handle_response(self, response: SipResponse, addr: tuple[str, int]) -> None:
        call_id = response.call_id or ""
        cseq = response.cseq
        if cseq is not None and cseq.method.upper() == "INVITE":
            self.responded.add(call_id)
            if response.status_code >= 200:
                pending = self._invites.pop(call_id, None)
                if pending is not None and response.status_code >= 300:
                    self._ack_failure(pending[0], response, pending[1])
        super().handle_response(response, addr)

    def _ack_failure(self, invite: SipRequest, response: SipResponse, remote: tuple[str, int]) -> None:
        ack = SipRequest(method="ACK", uri=invite.uri)
        via = invite.headers.get_first("via")
        if via:
            ack.headers.append("Via", via)  # same branch: this ACK belongs to the INVITE transaction
        for name in ("From", "Call-ID"):
            value = invite.headers.get_first(name)
            if value:
                ack.headers.set_single(name, value)
        to = response.headers.get_first("to")
        if to:
            ack.headers.set_single("To", to)
        sequence = invite.cseq.seq if invite.cseq else 1
        ack.headers.set_single("CSeq", f"{sequence} ACK")
        ack.headers.set_single("Max-Forwards", "70")
        for route in invite.headers.get("route"):
            ack.headers.append("Route", route)
        self.transport.send(ack, remote)


class RtpSocket:
    """A leg's RTP port. Read with the selector directly, not through asyncio's datagram transport (one datagram
    per loop turn): every callback reads all that is queued, and ``drain`` empties the kernel buffer on the spot
    when the call ends, so packets that arrived before a BYE are never dropped with the socket."""

    RECEIVE_BUFFER_BYTES = 1 << 20  # ~5 s of G.711 packets queued while the loop is busy
    MAX_DATAGRAM = 2048
    MAX_PER_TURN = 512

    def __init__(self, sock: socket.socket, receive: Callable[[bytes], None]) -> None:
        self.sock = sock
        self.port = int(sock.getsockname()[1])
        self._receive = receive
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._ready)

    def _ready(self, limit: int = MAX_PER_TURN) -> None:
        for _ in range(limit):
            try:
                data = self.sock.recv(self.MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("RTP socket %d: %s", self.port, exc)
                return
            self._receive(data)

    def drain(self) -> None:
        self._ready(limit=1 << 20)

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self._loop.remove_reader(self.sock.fileno())
            self.sock.close()


class PortPool:
    """RTP ports from the configured range (even numbers, RTCP would take the odd one), or any free port."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high
        self._next = low + (low % 2)

    @staticmethod
    def _socket(host: str, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RtpSocket.RECEIVE_BUFFER_BYTES)
            sock.setblocking(False)
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        return sock

    def bind(self, host: str, receive: Callable[[bytes], None]) -> RtpSocket:
        if self.low == 0:
            return RtpSocket(self._socket(host, 0), receive)
        span = max(1, (self.high - self.low) // 2 + 1)
        for _ in range(span):
            port = self._next
            self._next = port + 2 if port + 2 <= self.high else self.low + (self.low % 2)
            try:
                return RtpSocket(self._socket(host, port), receive)
            except OSError:
                continue
        raise OSError(f"no free RTP port in {self.low}-{self.high}")


@dataclass(eq=False)
class Leg:
    """One party's audio stream in a call: an RTP port, its media pipeline and its frames on their way out."""

    stream_id: str
    speaker: dict[str, Any]
    media: LegMedia
    rtp: RtpSocket
    publisher: AudioPublisher
    receiving: bool = False
    peer_sends: bool = True
    started: bool = False  # STREAM_STARTED published
    seq: int = 0
    stream_started_at_ms: int | None = None
    first_arrival_ms: int | None = None
    last_packet_s: float = 0.0
    codec: str = ""
    outbox: deque[tuple[PcmChunk, float] | None] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


@dataclass(eq=False)
class Call:
    direction: str  # outbound (dial-out) or inbound
    app_id: str
    connection_id: str
    conversation_id: str = ""
    conversation_started_at_ms: int = 0
    language: str = "en-US"
    remote_uri: str = ""
    redaction: tuple[str, ...] = ()
    """PII types the transcriber masks (Telephony API ``redaction``); inbound calls have none."""
    sip_call_id: str = ""
    legs: list[Leg] = field(default_factory=list)
    trace_id: str = field(default_factory=new_trace_id)
    """The call's correlation id, in the Kafka headers of its audio and of everything made from it."""
    status: CallStatus = CallStatus.DIALING
    outgoing: OutgoingCall | None = None
    incoming: IncomingCall | None = None
    answered_at_s: float | None = None
    ending: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)
    ringing_reported: bool = False
    canceled: bool = False  # inbound: CANCEL arrived before our answer
    announced: asyncio.Event = field(default_factory=asyncio.Event)  # answered, members and streams published


class SipGateway:
    def __init__(self, settings: Settings, health: Health | None = None) -> None:
        self.settings = settings
        self.health = health
        self.public_address = settings.sip_public_address or settings.sip_host
        self.sources = SourceFilter(settings.sip_allowed_networks)
        secret = settings.sip_digest_accounts.get_secret_value() if settings.sip_digest_accounts else None
        self.digest = DigestVerifier(parse_digest_accounts(secret))
        self.ports = PortPool(settings.sip_rtp_port_min, settings.sip_rtp_port_max)
        self.calls: dict[str, Call] = {}  # by SIP Call-ID
        self.by_conversation: dict[str, Call] = {}
        self.stopped_conversations: dict[str, float] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.sessions: async_sessionmaker[AsyncSession] | None = None
        self.events: AudioPublisher | None = None
        self.uas: SipUAS | None = None
        self.uac: _Uac | None = None
        self.sip_address: tuple[str, int] = (settings.sip_host, settings.sip_port)
        self._producer: AIOKafkaProducer | None = None
        self._default_app: tuple[str, float] | None = None  # the oldest app, and when it was looked up

    # -- process ---------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        settings = self.settings
        await migrate(settings)
        await ensure_topics(settings, ALL_TOPICS)
        engine = create_engine(settings)
        self.sessions = session_factory(engine)
        producer = create_producer(settings)
        await producer.start()
        self.events = AudioPublisher(producer)
        self._producer = producer
        transport = _SipTransport(local_addr=(settings.sip_host, settings.sip_port))
        self.uac = _Uac(transport)
        self.uas = SipUAS(transport, uac=self.uac, user_agent=USER_AGENT)
        await self.uas.start()
        # Bound now: advertise the real port (CONVOSCOPE_SIP_PORT=0 picks a free one).
        self.sip_address = (self.public_address, transport.local_addr[1])
        self.uac.advertised_addr = self.uas.advertised_addr = self.sip_address
        self.uas.on_invite = self._on_invite
        self.uas.on_bye = self._on_bye
        self.uas.on_cancel = self._on_cancel
        self.uas.on_reinvite = self._on_reinvite
        self.uas.on_ack_timeout = self._on_ack_timeout
        # A command may wait a quarter second; polling faster costs the idle gateway a tenth of a core.
        starts = create_consumer(settings, TELEPHONY_COMMANDS.name, group_id=SIP_GROUP,
                                 fetch_max_wait_ms=COMMAND_POLL_MS)
        stops = create_consumer(settings, group_id=None, fetch_max_wait_ms=COMMAND_POLL_MS)
        await starts.start()
        await stops.start()
        workers = [
            asyncio.create_task(self._consume_starts(starts), name="sip-starts"),
            asyncio.create_task(self._consume_stops(stops), name="sip-stops"),
            asyncio.create_task(self._tick(), name="sip-tick"),
        ]
        log.info("SIP gateway on udp %s:%d (advertised %s:%d), RTP %s", settings.sip_host, transport.local_addr[1],
                 *self.sip_address, f"{settings.sip_rtp_port_min}-{settings.sip_rtp_port_max}"
                 if settings.sip_rtp_port_min else "any free port")
        if self.health is not None:
            self.health.set_ready(f"SIP on udp port {transport.local_addr[1]}")
        try:
            await stop.wait()
        finally:
            calls = set(self.calls.values()) | set(self.by_conversation.values())
            for call in calls:
                self._hang_up(call, EndedBy.SHUTDOWN)
            if calls:
                waits = [asyncio.create_task(call.done.wait()) for call in calls]
                await asyncio.wait(waits, timeout=settings.stop_timeout_s)
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await starts.stop()
            await stops.stop()
            await self.uas.stop()
            await producer.stop()
            await engine.dispose()

    def _spawn(self, coroutine: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._reap)
        return task

    def _reap(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())

    # -- commands --------------------------------------------------------------------------------

    async def _consume_starts(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=500, max_records=100)
            for tp, records in batch.items():
                for record in records:
                    command = self._decode(record.value, f"{tp.topic}[{tp.partition}]@{record.offset}")
                    if command is not None and command["operation"] == "START":
                        self._spawn(self._dial(command), f"dial-{command['connection_id']}")
            if batch:
                # The call is placed (or refused) from here on: a restart must not dial it again.
                with contextlib.suppress(KafkaError):
                    await consumer.commit()

    async def _consume_stops(self, consumer: AIOKafkaConsumer) -> None:
        await consumer.topics()
        partitions = [TopicPartition(TELEPHONY_COMMANDS.name, p)
                      for p in sorted(consumer.partitions_for_topic(TELEPHONY_COMMANDS.name) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        while True:
            batch = await consumer.getmany(timeout_ms=500, max_records=100)
            for tp, records in batch.items():
                for record in records:
                    command = self._decode(record.value, f"{tp.topic}[{tp.partition}]@{record.offset}")
                    if command is not None and command["operation"] == "STOP":
                        self._stop_requested(command)

    @staticmethod
    def _decode(value: bytes | None, where: str) -> dict[str, Any] | None:
        try:
            return TELEPHONY_COMMANDS.serde.deserialize(value or b"")
        except SchemaError as exc:
            log.error("skipping bad telephony command at %s: %s", where, exc)
            return None

    def _stop_requested(self, command: dict[str, Any]) -> None:
        conversation_id = command["conversation_id"]
        call = self.by_conversation.get(conversation_id)
        if call is None:
            # Maybe its START has not been read yet (another consumer); remember, so it is never dialled.
            now = time.monotonic()
            self.stopped_conversations[conversation_id] = now
            for key, at in list(self.stopped_conversations.items()):
                if now - at > STOP_MEMORY_S:
                    del self.stopped_conversations[key]
            return
        log.info("call %s: stop requested through the API", call.connection_id)
        self._hang_up(call, EndedBy.API)

    # -- dial-out --------------------------------------------------------------------------------

    async def _dial(self, command: dict[str, Any]) -> None:
        settings = self.settings
        call = Call(
            direction="outbound", app_id=command["app_id"], connection_id=command["connection_id"],
            conversation_id=command["conversation_id"],
            conversation_started_at_ms=command["conversation_started_at_ms"] or command["at_ms"],
            language=command["language"], remote_uri=command["uri"] or "",
            redaction=types_of_attribute(command["attributes"]),
        )
        if call.conversation_id in self.by_conversation:
            return  # a redelivered START of a call in progress
        self.by_conversation[call.conversation_id] = call
        ACTIVE_CALLS.inc()
        if self.stopped_conversations.pop(call.conversation_id, None) is not None:
            await self._finish(call, CallStatus.CANCELED, reason="stopped before dialling", ended_by=EndedBy.API)
            return
        assert self.sessions is not None
        if await live_conversation_id(self.sessions, call.app_id, call.connection_id) != call.conversation_id:
            # A START read again after a restart, for a call that has already ended: never dial twice.
            self.by_conversation.pop(call.conversation_id, None)
            ACTIVE_CALLS.dec()
            return
        age_s = (now_ms() - command["at_ms"]) / 1000
        if age_s > settings.sip_answer_timeout_s + STALE_COMMAND_SLACK_S:
            await self._finish(call, CallStatus.FAILED, reason=f"request expired ({age_s:.0f} s old)")
            return
        try:
            uri = parse_uri(call.remote_uri)
            host = uri.host.strip("[]")
            port = uri.port or 5060
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            remote = (str(infos[0][4][0]), int(infos[0][4][1]))
        except (OSError, ValueError, IndexError) as exc:
            await self._finish(call, CallStatus.FAILED, reason=f"cannot reach {call.remote_uri}: {exc}")
            return
        callee = command["callee"] or {"id": member_id(call.conversation_id, call.remote_uri, None, "callee"),
                                       "name": uri.user or host, "user_id": call.remote_uri}
        try:
            leg = await self._open_leg(call, callee, {c.payload_type: c for c in supported_codecs()},
                                       frozenset({DTMF_PAYLOAD_TYPE}))
        except OSError as exc:
            await self._finish(call, CallStatus.FAILED, sip_code=503, reason=str(exc))
            return
        assert self.uac is not None
        outgoing = self.uac.send_invite(
            from_uri=f"sip:convoscope@{self.sip_address[0]}:{self.sip_address[1]}",
            to_uri=call.remote_uri,
            remote_addr=remote,
            sdp_offer=build_offer(self.public_address, leg.rtp.port),
            user_agent=USER_AGENT,
        )
        call.outgoing = outgoing
        call.sip_call_id = outgoing.call_id
        self.calls[outgoing.call_id] = call
        outgoing.on_ringing = lambda _: self._on_ringing(call)
        outgoing.on_answer = lambda _: self._on_answer(call)
        outgoing.on_rejected = lambda _, code, reason: self._spawn(
            self._finish(call, status_for_rejection(code), sip_code=code, reason=reason), "rejected")
        await self._status(call, CallStatus.DIALING, extra={"uri": call.remote_uri})
        log.info("call %s: INVITE %s", call.connection_id, call.remote_uri)
        self._spawn(self._retransmit_invite(call), f"invite-{call.connection_id}")
        try:
            await asyncio.wait_for(call.done.wait(), settings.sip_answer_timeout_s)
        except TimeoutError:
            if call.answered_at_s is None and not call.ending:
                with contextlib.suppress(ValueError):
                    outgoing.cancel(self.uac)
                await self._finish(call, CallStatus.NO_ANSWER,
                                   reason=f"no answer within {settings.sip_answer_timeout_s:g} s")

    async def _retransmit_invite(self, call: Call) -> None:
        assert self.uac is not None and call.outgoing is not None
        for delay in INVITE_RETRANSMIT_S:
            await asyncio.sleep(delay)
            if call.ending or call.sip_call_id in self.uac.responded:
                return
            self.uac.transport.send(call.outgoing.invite, call.outgoing.remote_addr)

    def _on_ringing(self, call: Call) -> None:
        if not call.ringing_reported and not call.ending:
            call.ringing_reported = True
            self._spawn(self._status(call, CallStatus.RINGING), "ringing")

    def _on_answer(self, call: Call) -> None:
        """200 OK to our INVITE (aiosipua has ACKed it). Audio is taken from now on."""
        if call.ending or call.answered_at_s is not None or call.outgoing is None:
            return
        leg = call.legs[0]
        try:
            if call.outgoing.sdp_answer is None:
                raise SdpError("the 200 OK carries no SDP")
            stream = streams_from_answer(call.outgoing.sdp_answer)[0]
        except (SdpError, ValueError) as exc:
            log.warning("call %s: unusable answer: %s", call.connection_id, exc)
            call.outgoing.hangup(self.uac)  # type: ignore[arg-type]
            self._spawn(self._finish(call, CallStatus.FAILED, sip_code=488, reason=str(exc),
                                     ended_by=EndedBy.ERROR), "bad-answer")
            return
        call.answered_at_s = asyncio.get_running_loop().time()
        self._apply_stream(leg, stream)
        leg.receiving = True
        leg.last_packet_s = call.answered_at_s
        self._spawn(self._announce_answer(call), "answered")

    # -- inbound ---------------------------------------------------------------------------------

    def _on_invite(self, incoming: IncomingCall) -> None:
        self._spawn(self._accept(incoming), f"inbound-{incoming.call_id}")

    def _reply(self, incoming: IncomingCall, code: int, reason: str, headers: dict[str, str] | None = None) -> None:
        response = incoming.dialog.create_response(incoming.invite, code, reason)
        response.headers.set_single("User-Agent", USER_AGENT)
        for name, value in (headers or {}).items():
            response.headers.set_single(name, value)
        incoming.dialog.terminate()
        assert self.uas is not None
        self.uas.transport.send_reply(response)

    async def _inbound_app(self, username: str | None) -> str | None:
        if username is not None:
            return self.digest.accounts[username].app_id
        if self.settings.sip_inbound_app_id:
            return self.settings.sip_inbound_app_id
        now = time.monotonic()
        if self._default_app is None or now - self._default_app[1] > INBOUND_APP_CACHE_S:
            assert self.sessions is not None
            apps = await list_apps(self.sessions)
            if not apps:
                return None
            self._default_app = (apps[0].app_id, now)
        return self._default_app[0]

    async def _accept(self, incoming: IncomingCall) -> None:
        host = incoming.source_addr[0]
        if not self.sources.allows(host):
            log.warning("INVITE from %s refused: not in CONVOSCOPE_SIP_ALLOWED_NETWORKS", host)
            self._reply(incoming, 403, "Forbidden")
            return
        username: str | None = None
        if self.digest.enabled:
            account = self.digest.verify("INVITE", incoming.invite.get_header("authorization"))
            if account is None:
                self._reply(incoming, 401, "Unauthorized", {"WWW-Authenticate": self.digest.challenge()})
                return
            username = account.username
        if incoming.sdp_offer is None:
            self._reply(incoming, 488, "Not Acceptable Here", {"Warning": '399 convoscope "an SDP offer is required"'})
            return
        try:
            streams = streams_from_offer(incoming.sdp_offer)
        except SdpError as exc:
            self._reply(incoming, 488, "Not Acceptable Here", {"Warning": f'305 convoscope "{exc}"'})
            return
        app_id = await self._inbound_app(username)
        if app_id is None:
            self._reply(incoming, 480, "Temporarily Unavailable")
            return
        incoming.ringing()
        caller = incoming.invite.from_addr
        callee = incoming.invite.to_addr
        call = Call(direction="inbound", app_id=app_id, connection_id=str(uuid.uuid4()),
                    remote_uri=incoming.caller, sip_call_id=incoming.call_id, incoming=incoming)
        self.calls[incoming.call_id] = call
        ACTIVE_CALLS.inc()
        caller_name = (caller.display_name if caller else None) or "caller"
        name = f"Call from {caller_name if caller_name != 'caller' else incoming.caller}"
        assert self.sessions is not None and self.events is not None
        joined = await join_conversation(self.sessions, app_id, call.connection_id, name, now_ms())
        call.conversation_id = joined.conversation_id
        call.conversation_started_at_ms = joined.conversation_started_at_ms
        self.by_conversation[call.conversation_id] = call
        parties = [(caller_name, incoming.caller),
                   ((callee.display_name if callee else None) or "callee", incoming.callee)]
        try:
            for number, stream in enumerate(streams):
                who, uri = parties[number] if number < len(parties) else (f"party {number + 1}", None)
                stream_id = new_stream_id()
                speaker = {"id": member_id(call.conversation_id, uri, who, stream_id), "name": who, "user_id": uri}
                leg = await self._open_leg(call, speaker, stream.codecs, stream.event_payload_types,
                                           stream_id=stream_id)
                self._apply_stream(leg, stream)
                leg.receiving = True
        except OSError as exc:
            self._reply(incoming, 503, "Service Unavailable")
            await self._finish(call, CallStatus.FAILED, sip_code=503, reason=str(exc))
            return
        if call.canceled:
            await self._finish(call, CallStatus.CANCELED, reason="the caller hung up before the answer")
            return
        call.answered_at_s = asyncio.get_running_loop().time()
        for leg in call.legs:
            leg.last_packet_s = call.answered_at_s
        answer = build_answer(incoming.sdp_offer, self.public_address,
                              {s.index: leg.rtp.port for s, leg in zip(streams, call.legs, strict=True)}, streams)
        incoming.accept(answer)
        log.info("call %s: answered INVITE from %s (%d stream(s)) as conversation %s", call.connection_id,
                 incoming.caller, len(streams), call.conversation_id)
        await self.events.event(self._event(call, "CONVERSATION_STARTED", subject=call.conversation_id, name=name,
                                            attributes={"direction": "inbound", "from": incoming.caller,
                                                        "to": incoming.callee}))
        trackers = await app_trackers(self.sessions, app_id)
        await self.events.conversation_settings(conversation_settings_record(
            call.conversation_id, app_id, call.conversation_started_at_ms, insight_types=ALL_INSIGHT_TYPES,
            stored_trackers=trackers))
        await self._announce_answer(call)

    # -- in-dialog requests ----------------------------------------------------------------------

    def _on_bye(self, wrapper: IncomingCall, request: SipRequest) -> None:
        call = self.calls.get(wrapper.call_id)
        if call is not None:
            log.info("call %s: BYE from the other party", call.connection_id)
            self._spawn(self._finish(call, CallStatus.ENDED, ended_by=EndedBy.REMOTE), "bye")

    def _on_cancel(self, request: SipRequest, addr: tuple[str, int]) -> None:
        """The caller gave up while we were setting the call up (aiosipua has answered 487); ``_accept`` sees
        the flag before it would answer."""
        call = self.calls.get(request.call_id or "")
        if call is not None and call.direction == "inbound" and call.answered_at_s is None:
            call.canceled = True

    def _on_ack_timeout(self, incoming: IncomingCall) -> None:
        call = self.calls.get(incoming.call_id)
        if call is not None:
            self._spawn(self._finish(call, CallStatus.FAILED, reason="no ACK for our 200 OK",
                                     ended_by=EndedBy.ERROR), "ack-timeout")

    def _on_reinvite(self, wrapper: IncomingCall) -> None:
        """Hold, resume, codec or address changes: answer with the same ports, follow the new streams."""
        call = self.calls.get(wrapper.call_id)
        offer = wrapper.sdp_offer
        if call is None or offer is None:
            wrapper.reject(488, "Not Acceptable Here")
            return
        try:
            streams = streams_from_offer(offer)
        except SdpError as exc:
            log.warning("call %s: re-INVITE refused: %s", call.connection_id, exc)
            wrapper.reject(488, "Not Acceptable Here")
            return
        ports: dict[int, int] = {}
        for stream, leg in zip(streams, call.legs, strict=False):
            self._apply_stream(leg, stream)
            ports[stream.index] = leg.rtp.port
        wrapper.accept(build_answer(offer, self.public_address, ports, streams[: len(call.legs)]))
        log.info("call %s: re-INVITE (%s)", call.connection_id, ", ".join(s.direction for s in streams))

    # -- legs and audio --------------------------------------------------------------------------

    async def _open_leg(self, call: Call, speaker: dict[str, Any], codecs: dict[int, Any],
                        events: frozenset[int], *, stream_id: str | None = None) -> Leg:
        assert self._producer is not None
        holder: list[Leg] = []
        rtp = self.ports.bind(self.settings.sip_host, lambda data: self._datagram(holder[0], data))
        leg = Leg(stream_id=stream_id or new_stream_id(), speaker=speaker,
                  media=LegMedia(codecs, event_payload_types=events), rtp=rtp,
                  publisher=AudioPublisher(self._producer))
        holder.append(leg)
        call.legs.append(leg)
        leg.task = self._spawn(self._publish_leg(call, leg), f"leg-{leg.stream_id}")
        return leg

    @staticmethod
    def _apply_stream(leg: Leg, stream: AudioStream) -> None:
        leg.media.set_codecs(stream.codecs)
        leg.media.event_payload_types = stream.event_payload_types | {13}
        leg.peer_sends = stream.peer_sends
        leg.codec = stream.preferred.name

    def _datagram(self, leg: Leg, data: bytes) -> None:
        if not leg.receiving:
            return
        now = asyncio.get_running_loop().time()
        if leg.first_arrival_ms is None:
            leg.first_arrival_ms = now_ms()
        leg.last_packet_s = now
        RTP_PACKETS.inc()
        self._enqueue(leg, leg.media.receive(data, now), now)

    def _enqueue(self, leg: Leg, chunks: list[PcmChunk], arrival_s: float) -> None:
        if not chunks:
            return
        leg.outbox.extend((chunk, arrival_s) for chunk in chunks)
        leg.wake.set()

    async def _tick(self) -> None:
        """Releases audio the jitter buffers held too long, and hangs up calls whose RTP stopped."""
        loop = asyncio.get_running_loop()
        next_check = loop.time()
        timeout_s = self.settings.sip_rtp_timeout_s
        while True:
            await asyncio.sleep(TICK_S)
            now = loop.time()
            for call in list(self.calls.values()):
                for leg in call.legs:
                    if leg.receiving:
                        self._enqueue(leg, leg.media.tick(now), now)
            if now < next_check:
                continue
            next_check = now + TIMEOUT_CHECK_S
            for call in list(self.calls.values()):
                listening = [leg for leg in call.legs if leg.receiving and leg.peer_sends]
                if call.ending or call.answered_at_s is None or not listening:
                    continue
                if all(now - leg.last_packet_s > timeout_s for leg in listening):
                    log.warning("call %s: no RTP for %.0f s, hanging up", call.connection_id, timeout_s)
                    self._hang_up(call, EndedBy.RTP_TIMEOUT)

    async def _publish_leg(self, call: Call, leg: Leg) -> None:
        """The leg's frames, in order; the END marker after the last one (a None in the outbox)."""
        bind_log_context(trace_id=call.trace_id, conversation_id=call.conversation_id, connection_id=call.connection_id)
        loop = asyncio.get_running_loop()
        try:
            while True:
                await leg.wake.wait()
                leg.wake.clear()
                if len(leg.outbox) > MAX_BACKLOG_FRAMES and not call.ending:
                    log.error("call %s: %d frames waiting for the broker, ending the call", call.connection_id,
                              len(leg.outbox))
                    self._hang_up(call, EndedBy.ERROR)
                while leg.outbox:
                    item = leg.outbox.popleft()
                    if item is None:
                        await leg.publisher.frame(self._frame(call, leg, "END", leg.media.position, b""))
                        await leg.publisher.drain()
                        return
                    chunk, arrival_s = item
                    if leg.stream_started_at_ms is None:
                        # Sample 0 was captured about one packet (20 ms) before the first packet arrived.
                        leg.stream_started_at_ms = (leg.first_arrival_ms or now_ms()) - 20
                    await leg.publisher.frame(self._frame(call, leg, "AUDIO", chunk.start_sample, chunk.pcm))
                    FRAMES.inc()
                    FRAME_DELAY.observe(max(0.0, loop.time() - arrival_s))
        except PublishError as exc:
            log.error("call %s: audio could not be published: %s", call.connection_id, exc)
            if not call.ending:
                self._hang_up(call, EndedBy.ERROR)

    def _frame(self, call: Call, leg: Leg, kind: str, start_sample: int, pcm: bytes) -> dict[str, Any]:
        started = leg.stream_started_at_ms if leg.stream_started_at_ms is not None else now_ms()
        record = {
            "conversation_id": call.conversation_id,
            "app_id": call.app_id,
            "stream_id": leg.stream_id,
            "kind": kind,
            "seq": leg.seq,
            "start_sample": start_sample,
            "sample_rate_hz": PIPELINE_SAMPLE_RATE_HZ,
            "pcm": pcm,
            "speaker": leg.speaker,
            "stream_started_at_ms": started,
            "stream_offset_ms": max(0, started - call.conversation_started_at_ms),
            "language": call.language,
            "sent_at_ms": now_ms(),
            "redaction_types": list(call.redaction),
        }
        leg.seq += 1
        return record

    # -- lifecycle events ------------------------------------------------------------------------

    def _event(self, call: Call, event_type: str, *, subject: str, stream_id: str | None = None,
               member: dict[str, Any] | None = None, name: str | None = None,
               attributes: dict[str, str] | None = None) -> dict[str, Any]:
        return {
            "event_id": event_id(call.conversation_id, event_type, subject),
            "conversation_id": call.conversation_id,
            "app_id": call.app_id,
            "type": event_type,
            "at_ms": now_ms(),
            "stream_id": stream_id,
            "member": member,
            "name": name,
            "final_count": None,
            "attributes": {"source": "sip", "connection_id": call.connection_id, **(attributes or {})},
        }

    async def _status(self, call: Call, status: CallStatus, *, sip_code: int | None = None, reason: str = "",
                      ended_by: EndedBy | None = None, extra: dict[str, str] | None = None) -> None:
        assert self.events is not None
        call.status = status
        await self.events.event(call_status_event(
            call.conversation_id, call.app_id, call.connection_id, status, now_ms(), direction=call.direction,
            sip_code=sip_code, sip_reason=reason, ended_by=ended_by, extra=extra))

    async def _announce_answer(self, call: Call) -> None:
        assert self.events is not None
        try:
            await self._status(call, CallStatus.ANSWERED)
            for leg in call.legs:
                await self.events.event(self._event(call, "MEMBER_JOINED", subject=leg.speaker["id"],
                                                    member=leg.speaker))
                await self.events.event(self._event(
                    call, "STREAM_STARTED", subject=leg.stream_id, stream_id=leg.stream_id, member=leg.speaker,
                    attributes={"codec": leg.codec, "language": call.language, "direction": call.direction,
                                "sample_rate_hz": str(PIPELINE_SAMPLE_RATE_HZ),
                                **redaction_attribute(call.redaction)}))
                leg.started = True
        finally:
            call.announced.set()

    def _hang_up(self, call: Call, ended_by: EndedBy) -> None:
        """End the call from our side: BYE when answered, CANCEL while ringing."""
        if call.ending:
            return
        if call.outgoing is not None and self.uac is not None:
            if call.outgoing.dialog.state == DialogState.CONFIRMED:
                call.outgoing.hangup(self.uac)
            elif call.outgoing.dialog.state == DialogState.EARLY:
                with contextlib.suppress(ValueError):
                    call.outgoing.cancel(self.uac)
        elif call.incoming is not None:
            if call.incoming.dialog.state == DialogState.CONFIRMED:
                call.incoming.hangup()
            elif call.incoming.dialog.state == DialogState.EARLY:
                call.incoming.reject(480, "Temporarily Unavailable")
        if call.answered_at_s is not None:
            status = CallStatus.ENDED
        else:
            status = CallStatus.CANCELED
        self._spawn(self._finish(call, status, ended_by=ended_by), "hang-up")

    async def _drain_rtp(self, call: Call) -> None:
        """Packets sent before the BYE may still wait in the socket buffers (the loop reads one datagram per
        socket per turn): read on until the legs are quiet, so nothing the peer sent is lost."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RTP_DRAIN_MAX_S
        while loop.time() < deadline:
            receiving = [leg for leg in call.legs if leg.receiving]
            if all(loop.time() - leg.last_packet_s >= RTP_QUIET_S for leg in receiving):
                return
            await asyncio.sleep(RTP_QUIET_S / 4)

    async def _finish(self, call: Call, status: CallStatus, *, sip_code: int | None = None, reason: str = "",
                      ended_by: EndedBy | None = None) -> None:
        """The one way a call ends: last audio and END per leg (acknowledged), STREAM_ENDED, the final status,
        then the conversation's completion."""
        if call.ending:
            return
        call.ending = True
        assert self.events is not None and self.sessions is not None
        try:
            if call.answered_at_s is not None:
                # A BYE right after the answer: the start events go out before the end events.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(call.announced.wait(), ANNOUNCE_WAIT_S)
            await self._drain_rtp(call)
            for leg in call.legs:
                if leg.receiving:
                    leg.rtp.drain()  # whatever the kernel still holds
                    leg.receiving = False
                    self._enqueue(leg, leg.media.finish(), asyncio.get_running_loop().time())
                leg.rtp.close()
                if leg.started or leg.seq or leg.outbox:
                    leg.outbox.append(None)  # END after the last frame
                    leg.wake.set()
                elif leg.task is not None:
                    leg.task.cancel()  # never answered: no stream to close
            for leg in call.legs:
                if leg.task is not None:
                    await asyncio.gather(leg.task, return_exceptions=True)
            for leg in call.legs:
                if leg.started:
                    stats = leg.media.stats
                    RTP_LOST.inc(stats.lost)
                    log.info("call %s: stream %s %s", call.connection_id, leg.stream_id,
                             " ".join(f"{k}={v}" for k, v in stats.summary().items()))
                    await self.events.event(self._event(call, "STREAM_ENDED", subject=leg.stream_id,
                                                        stream_id=leg.stream_id, member=leg.speaker,
                                                        attributes=stats.summary()))
            if call.conversation_id:
                await self._status(call, status, sip_code=sip_code, reason=reason, ended_by=ended_by)
                last = await leave_conversation(self.sessions, call.app_id, call.connection_id,
                                                call.conversation_id, now_ms())
                if last:
                    await self.events.event(self._event(call, "CONVERSATION_COMPLETED",
                                                        subject=call.conversation_id))
            CALLS.labels(call.direction, str(status)).inc()
            log.info("call %s: %s%s%s", call.connection_id, status, f" ({ended_by})" if ended_by else "",
                     f": {sip_code or ''} {reason}" if reason or sip_code else "")
        except PublishError as exc:
            log.error("call %s: could not publish its end: %s", call.connection_id, exc)
        finally:
            ACTIVE_CALLS.dec()
            self.calls.pop(call.sip_call_id, None)
            if self.by_conversation.get(call.conversation_id) is call:
                del self.by_conversation[call.conversation_id]
            call.done.set()


async def run_sip_gateway(settings: Settings, stop: asyncio.Event, health: Health | None = None) -> None:
    await SipGateway(settings, health).run(stop)


def serve(settings: Settings) -> int:
    """`convoscope gateway sip`: runs until SIGINT/SIGTERM; /healthz, /readyz, /metrics on CONVOSCOPE_HEALTH_PORT."""
    import signal

    from convoscope.health import Health, health_server

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        health = Health("gateway-sip")
        async with health_server(health, settings.health_host, settings.health_port):
            await run_sip_gateway(settings, stop, health)

    asyncio.run(main())
    return 0
