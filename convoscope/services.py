"""Long-lived clients of a gateway process, opened in the app's lifespan and shared by handlers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from convoscope.settings import Settings

if TYPE_CHECKING:
    from convoscope.auth import TokenIssuer
    from producers.stream_seats import SeatKeeper
    from producers.websocket.limits import ByteBudget
    from sinks.live.hub import ResultsHub

__all__ = ["Services"]


@dataclass(frozen=True)
class Services:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    tokens: TokenIssuer
    producer: AIOKafkaProducer
    hub: ResultsHub
    seats: SeatKeeper
    audio_budget: ByteBudget
