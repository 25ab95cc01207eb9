"""Fixtures of the webhook tests: the REST API (tests/api/conftest.py), and an outbox emptied around each test.

Senders claim due deliveries of every app, and the PostgreSQL database is shared by the session's tests, so rows
one test leaves behind would otherwise be sent (to receivers that no longer exist) by the next test's worker.
Database test modules use it with ``pytestmark = pytest.mark.usefixtures("empty_outbox")``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from convoscope.db.models import Webhook, WebhookDelivery
from tests.api.conftest import api

__all__ = ["api", "empty_outbox"]


async def _empty(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        await session.execute(delete(WebhookDelivery))
        await session.execute(delete(Webhook))


@pytest_asyncio.fixture
async def empty_outbox(db_sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[None]:
    await _empty(db_sessions)
    yield
    await _empty(db_sessions)
