"""Publishes one stream's audio frames and lifecycle events, with bounded in-flight sends."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from schemas.topics import AUDIO_FRAMES, CONVERSATION_EVENTS, CONVERSATION_SETTINGS

__all__ = ["AudioPublisher", "PublishError"]

# Frames awaiting the broker's ack before we stop reading from the client (backpressure).
MAX_IN_FLIGHT_FRAMES = 256


class PublishError(RuntimeError):
    """The broker did not accept a record."""


class AudioPublisher:
    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._in_flight: deque[asyncio.Future[Any]] = deque()

    async def _send(self, topic_name: str, key: str, value: bytes) -> asyncio.Future[Any]:
        try:
            return await self._producer.send(topic_name, value=value, key=key.encode())
        except KafkaError as exc:
            raise PublishError(f"could not publish to {topic_name}: {exc}") from exc

    async def frame(self, record: dict[str, Any]) -> None:
        future = await self._send(AUDIO_FRAMES.name, record["conversation_id"], AUDIO_FRAMES.serde(record))
        self._in_flight.append(future)
        while len(self._in_flight) > MAX_IN_FLIGHT_FRAMES or (self._in_flight and self._in_flight[0].done()):
            await self._settle(self._in_flight.popleft())

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
            await self._settle(self._in_flight.popleft())

    @staticmethod
    async def _settle(future: asyncio.Future[Any]) -> None:
        try:
            await future
        except KafkaError as exc:
            raise PublishError(f"broker rejected a record: {exc}") from exc
