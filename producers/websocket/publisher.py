"""Publishes one stream's audio frames and lifecycle events, within the gateway's buffer budget.

While the broker does not acknowledge (it stalls, a leader moves), frames wait in the process-wide ``ByteBudget``;
once that is spent the stream stops reading from its client, which is backpressure all the way to the client's
socket. A stall longer than ``stall_timeout_s`` ends in ``BrokerStalled``: the client is told how much of its audio
is stored, rather than the gateway growing without bound or dropping frames silently.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import Gauge

from producers.websocket.limits import ByteBudget
from schemas.topics import AUDIO_FRAMES, CONVERSATION_EVENTS, CONVERSATION_SETTINGS

__all__ = ["AudioPublisher", "BrokerStalled", "PublishError"]

# Frames awaiting the broker's ack on one stream before it stops reading from its client, whatever the budget.
MAX_IN_FLIGHT_FRAMES = 256
DEFAULT_STALL_TIMEOUT_S = 30.0
PRIVATE_BUDGET_BYTES = 16 * 1024 * 1024
BUFFERED_BYTES = Gauge("convoscope_gateway_buffered_bytes", "Audio bytes awaiting the broker's acknowledgement")


class PublishError(RuntimeError):
    """The broker did not accept a record."""


class BrokerStalled(PublishError):
    """The broker acknowledged nothing of this stream for the stall timeout."""


class AudioPublisher:
    def __init__(self, producer: AIOKafkaProducer, budget: ByteBudget | None = None,
                 stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S) -> None:
        """Without a shared ``budget`` the publisher has its own (SIP calls and recordings: in-flight frames are
        bounded by MAX_IN_FLIGHT_FRAMES there)."""
        self._producer = producer
        self._budget = budget or ByteBudget(PRIVATE_BUDGET_BYTES)
        self.stall_timeout_s = stall_timeout_s
        self._in_flight: deque[tuple[asyncio.Future[Any], int]] = deque()
        self.acknowledged_samples = 0
        """End (in samples) of the last frame the broker acknowledged, frames acknowledged in order."""
        self.stalled = False

    async def _send(self, topic_name: str, key: str, value: bytes) -> asyncio.Future[Any]:
        try:
            # aiokafka's send() itself waits while the partition's batch is full and unsent.
            return await asyncio.wait_for(
                self._producer.send(topic_name, value=value, key=key.encode()), self.stall_timeout_s
            )
        except TimeoutError as exc:
            raise self._stalled() from exc
        except KafkaError as exc:
            raise PublishError(f"could not publish to {topic_name}: {exc}") from exc

    async def frame(self, record: dict[str, Any]) -> None:
        value = AUDIO_FRAMES.serde(record)
        try:
            await self._budget.acquire(len(value), self.stall_timeout_s)
        except TimeoutError as exc:
            raise self._stalled() from exc
        BUFFERED_BYTES.inc(len(value))
        try:
            future = await self._send(AUDIO_FRAMES.name, record["conversation_id"], value)
        except BaseException:
            self._release(len(value))
            raise
        future.add_done_callback(lambda _: self._release(len(value)))
        self._in_flight.append((future, record["start_sample"] + len(record["pcm"]) // 2))
        while len(self._in_flight) > MAX_IN_FLIGHT_FRAMES or (self._in_flight and self._in_flight[0][0].done()):
            await self._settle_oldest()

    async def event(self, record: dict[str, Any]) -> None:
        future = await self._send(
            CONVERSATION_EVENTS.name, record["conversation_id"], CONVERSATION_EVENTS.serde(record)
        )
        await self._settle(future)

    async def conversation_settings(self, record: dict[str, Any]) -> None:
        future = await self._send(
            CONVERSATION_SETTINGS.name, record["conversation_id"], CONVERSATION_SETTINGS.serde(record)
        )
        await self._settle(future)

    async def drain(self) -> None:
        """Wait until the broker acknowledged every frame sent so far."""
        while self._in_flight:
            await self._settle_oldest()

    async def _settle_oldest(self) -> None:
        future, end_sample = self._in_flight[0]
        await self._settle(future)
        self._in_flight.popleft()
        self.acknowledged_samples = end_sample

    async def _settle(self, future: asyncio.Future[Any]) -> None:
        try:
            # shield: giving up waiting must not cancel the record, which may still be delivered.
            await asyncio.wait_for(asyncio.shield(future), self.stall_timeout_s)
        except TimeoutError as exc:
            raise self._stalled() from exc
        except KafkaError as exc:
            raise PublishError(f"broker rejected a record: {exc}") from exc

    def _release(self, size: int) -> None:
        self._budget.release(size)
        BUFFERED_BYTES.dec(size)

    def _stalled(self) -> BrokerStalled:
        self.stalled = True
        return BrokerStalled(f"the broker acknowledged nothing for {self.stall_timeout_s:g} s")
