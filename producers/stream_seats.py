"""Stream leases of a gateway replica: renews its own, and ends the streams of replicas that stopped renewing theirs.

A gateway that is killed (or loses the database for longer than a lease) leaves its streams open in the connection
registry: their conversations would never complete. Every replica therefore leases each stream it serves and renews
the leases every third of ``stream_lease_s``. A reaper in every replica claims leases that ran out, publishes the
stream's END marker (the transcriber finalises whatever audio reached the topic) and STREAM_ENDED, holds the seat
for the start_request's noConnectionTimeout (a client may reconnect to the same connection id on any replica and
continue), then gives the seat up; the last stream out announces CONVERSATION_COMPLETED.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from convoscope.ids import member_id
from convoscope.registry import (
    ClaimedSeat,
    StreamSeat,
    claim_expired_seats,
    client_returned,
    due_held_seats,
    hold_seat,
    leave_seat,
    renew_seats,
)
from convoscope.settings import Settings
from convoscope.timestamps import now_ms
from producers.audio import PIPELINE_SAMPLE_RATE_HZ
from producers.websocket.events import websocket_event
from schemas.topics import AUDIO_FRAMES, CONVERSATION_EVENTS

__all__ = ["END_OF_RECEIVED_AUDIO", "SeatKeeper"]

log = logging.getLogger(__name__)

STREAMS_REAPED = Counter("convoscope_gateway_streams_reaped_total",
                         "Streams of a vanished gateway replica ended by this one")
END_OF_RECEIVED_AUDIO = 2**62
"""start_sample of an END written by a reaper: it cannot know how far the dead replica got, and the transcriber ends
the stream at the last audio it received (the smaller of the two)."""
REAP_INTERVAL_S = 1.0

LostSeat = Callable[[], Awaitable[None]]


class SeatKeeper:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], producer: AIOKafkaProducer,
                 owner: str | None = None) -> None:
        self.sessions = sessions
        self.producer = producer
        self.lease_s = settings.stream_lease_s
        self.owner = owner or f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(3)}"
        self._mine: dict[str, LostSeat] = {}
        self._database_ok_since: float | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- this replica's streams ------------------------------------------------------------------

    def seat(self, stream_id: str, hold_s: float, details: dict[str, Any]) -> StreamSeat:
        return StreamSeat(stream_id, self.owner, int(self.lease_s * 1000), int(hold_s * 1000), details)

    def track(self, stream_id: str, on_lost: LostSeat) -> None:
        """Renew this stream's lease from now on; ``on_lost`` runs if another replica ended it meanwhile."""
        self._mine[stream_id] = on_lost

    def forget(self, stream_id: str) -> None:
        self._mine.pop(stream_id, None)

    async def leave(self, stream_id: str) -> bool:
        """Give the stream's seat up now (its END and STREAM_ENDED are out)."""
        self.forget(stream_id)
        return await leave_seat(self.sessions, stream_id, now_ms(), self._announce_completed)

    async def hold(self, stream_id: str) -> None:
        """Keep the seat for noConnectionTimeout; any replica's reaper gives it up then."""
        self.forget(stream_id)
        await hold_seat(self.sessions, stream_id, now_ms())

    async def client_returned(self, app_id: str, connection_id: str, stream_id: str) -> None:
        await client_returned(self.sessions, app_id, connection_id, stream_id, now_ms())

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        # Two loops: a stalled broker (the reaper publishes) must never delay renewals (database only).
        self._tasks = [asyncio.create_task(self._renew_loop(), name="stream-leases-renew"),
                       asyncio.create_task(self._reap_loop(), name="stream-leases-reap")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _renew_loop(self) -> None:
        while True:
            try:
                await self.renew_once()
                if self._database_ok_since is None:
                    self._database_ok_since = time.monotonic()
            except Exception as exc:  # the database is away: renew again soon, reap nothing meanwhile
                if self._database_ok_since is not None:
                    log.warning("stream leases not renewed: %s", exc)
                self._database_ok_since = None
                await asyncio.sleep(REAP_INTERVAL_S)
                continue
            await asyncio.sleep(self.lease_s / 3)

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(REAP_INTERVAL_S)
            try:
                await self.reap_once()
            except Exception as exc:  # database or broker away: claims run out and are taken again later
                log.warning("stream reaper: %s", exc)

    async def renew_once(self) -> None:
        asked = set(self._mine)
        held = await renew_seats(self.sessions, self.owner, asked, now_ms(), int(self.lease_s * 1000))
        for stream_id in (asked & set(self._mine)) - held:
            on_lost = self._mine.pop(stream_id)
            log.warning("stream %s was ended by another replica (this one missed its lease)", stream_id)
            await on_lost()

    async def reap_once(self) -> int:
        """End the streams of replicas that stopped renewing, then give up held seats that are due. Claims only
        after this replica has reached the database for a whole lease: a live replica cut off from it just as long
        has had the chance to renew since it came back."""
        ended = 0
        if self._database_ok_since is not None and time.monotonic() - self._database_ok_since >= self.lease_s:
            for seat in await claim_expired_seats(self.sessions, self.owner, now_ms(), int(self.lease_s * 1000)):
                await self._end_stream(seat)
                ended += 1
        for stream_id in await due_held_seats(self.sessions, now_ms()):
            await leave_seat(self.sessions, stream_id, now_ms(), self._announce_completed)
        return ended

    # -- records ----------------------------------------------------------------------------------

    async def _end_stream(self, seat: ClaimedSeat) -> None:
        log.warning("stream %s of conversation %s: its gateway stopped renewing the lease; ending it",
                    seat.stream_id, seat.conversation_id)
        details = seat.details
        speaker = {
            "id": member_id(seat.conversation_id, details.get("user_id"), details.get("name"), seat.stream_id),
            "name": details.get("name"),
            "user_id": details.get("user_id"),
        }
        at = now_ms()
        started_at = int(details.get("stream_started_at_ms", at))
        end_frame = AUDIO_FRAMES.serde({
            "conversation_id": seat.conversation_id,
            "app_id": seat.app_id,
            "stream_id": seat.stream_id,
            "kind": "END",
            "seq": 0,
            "start_sample": END_OF_RECEIVED_AUDIO,
            "sample_rate_hz": PIPELINE_SAMPLE_RATE_HZ,
            "pcm": b"",
            "speaker": speaker,
            "stream_started_at_ms": started_at,
            "stream_offset_ms": int(details.get("stream_offset_ms", 0)),
            "language": details.get("language", "en-US"),
            "sent_at_ms": at,
        })
        await self.producer.send_and_wait(AUDIO_FRAMES.name, key=seat.conversation_id.encode(), value=end_frame)
        await self._publish_event(seat.app_id, seat.connection_id, seat.conversation_id, "STREAM_ENDED",
                                  seat.stream_id, stream_id=seat.stream_id, member=speaker, ended_by="lease expiry")
        await hold_seat(self.sessions, seat.stream_id, now_ms())
        STREAMS_REAPED.inc()

    async def _announce_completed(self, app_id: str, connection_id: str, conversation_id: str) -> None:
        await self._publish_event(app_id, connection_id, conversation_id, "CONVERSATION_COMPLETED", conversation_id)

    async def _publish_event(self, app_id: str, connection_id: str, conversation_id: str, event_type: str,
                             subject: str, *, stream_id: str | None = None, member: dict[str, Any] | None = None,
                             ended_by: str | None = None) -> None:
        record = websocket_event(app_id, connection_id, event_type, conversation_id, now_ms(), subject=subject,
                                 stream_id=stream_id, member=member,
                                 attributes={"ended_by": ended_by} if ended_by is not None else None)
        await self.producer.send_and_wait(CONVERSATION_EVENTS.name, key=conversation_id.encode(),
                                          value=CONVERSATION_EVENTS.serde(record))
