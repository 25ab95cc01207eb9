"""The connection registry: which conversation the streams of a client-chosen connection id share.

Every gateway replica uses it through the database. Several WebSocket connections with one connection id (one per
speaker) join one live conversation; when the last of them leaves, the conversation is over and the next connection
with that id starts a new one. Each operation is a single transaction that starts with a write on the connection's
row (an upsert or an UPDATE ... RETURNING), so PostgreSQL row locks and the SQLite write lock serialise concurrent
joins: two speakers connecting at the same instant land in one conversation.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import case, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from convoscope.db.engine import dialect_insert
from convoscope.db.models import Connection, Conversation

__all__ = [
    "CONVERSATION_TYPE",
    "JoinResult",
    "join_conversation",
    "leave_conversation",
    "live_conversation_id",
    "new_conversation_id",
]

CONVERSATION_TYPE = "meeting"
ID_EPOCH_MS = 1_577_836_800_000  # 2020-01-01T00:00:00Z
ID_RANDOM_BITS = 22
JOIN_ATTEMPTS = 3

_connections = Connection.__table__
_conversations = Conversation.__table__


@dataclass(frozen=True, slots=True)
class JoinResult:
    conversation_id: str
    conversation_started_at_ms: int
    created: bool


def new_conversation_id(now_ms: int) -> str:
    """A numeric string like Symbl's (18 digits until ~2040, 19 after), ordered by creation time: milliseconds
    since 2020 in the high bits, 22 random bits below."""
    return str(((now_ms - ID_EPOCH_MS) << ID_RANDOM_BITS) | secrets.randbits(ID_RANDOM_BITS))


class _IdCollision(Exception):
    """The generated conversation id already exists (22 random bits in one millisecond): roll back, draw again."""


async def join_conversation(
    sessions: async_sessionmaker[AsyncSession],
    app_id: str,
    connection_id: str,
    name: str | None,
    now_ms: int,
) -> JoinResult:
    """Join the live conversation of ``connection_id`` (one more open stream), or start a new one when there is
    none or the previous one has ended. ``name`` (Symbl's meetingTitle) only names a new conversation."""
    for attempt in range(JOIN_ATTEMPTS):
        try:
            return await _join_once(sessions, app_id, connection_id, name, now_ms)
        except _IdCollision:
            if attempt == JOIN_ATTEMPTS - 1:
                raise RuntimeError("could not allocate a unique conversation id") from None
    raise AssertionError("unreachable")  # pragma: no cover


async def _join_once(
    sessions: async_sessionmaker[AsyncSession],
    app_id: str,
    connection_id: str,
    name: str | None,
    now_ms: int,
) -> JoinResult:
    candidate = new_conversation_id(now_ms)
    async with sessions.begin() as session:
        insert = dialect_insert(session, _connections).values(
            app_id=app_id,
            connection_id=connection_id,
            conversation_id=candidate,
            conversation_started_at_ms=now_ms,
            open_streams=0,
            created_at_ms=now_ms,
            updated_at_ms=now_ms,
            ended_at_ms=None,
        )
        upsert = insert.on_conflict_do_update(
            index_elements=["app_id", "connection_id"], set_={"updated_at_ms": insert.excluded.updated_at_ms}
        ).returning(
            _connections.c.conversation_id,
            _connections.c.conversation_started_at_ms,
            _connections.c.open_streams,
            _connections.c.ended_at_ms,
        )
        row = (await session.execute(upsert)).one()
        key = (_connections.c.app_id == app_id) & (_connections.c.connection_id == connection_id)
        fresh = row.conversation_id == candidate
        ended = row.open_streams <= 0 and row.ended_at_ms is not None
        if not fresh and not ended:
            await session.execute(
                update(_connections)
                .where(key)
                .values(open_streams=_connections.c.open_streams + 1, ended_at_ms=None, updated_at_ms=now_ms)
            )
            return JoinResult(row.conversation_id, row.conversation_started_at_ms, created=False)
        await session.execute(
            update(_connections)
            .where(key)
            .values(
                conversation_id=candidate,
                conversation_started_at_ms=now_ms,
                ended_at_ms=None,
                open_streams=1,
                updated_at_ms=now_ms,
            )
        )
        conversation = dialect_insert(session, _conversations).values(
            id=candidate,
            app_id=app_id,
            name=name,
            type=CONVERSATION_TYPE,
            start_ms=now_ms,
            end_ms=None,
            metadata={},
        )
        inserted = await session.scalar(
            conversation.on_conflict_do_nothing(index_elements=["id"]).returning(_conversations.c.id)
        )
        if inserted is None:
            raise _IdCollision(candidate)
        return JoinResult(candidate, now_ms, created=True)


async def live_conversation_id(
    sessions: async_sessionmaker[AsyncSession], app_id: str, connection_id: str
) -> str | None:
    """The conversation the connection's streams are in now; None when no stream of it is open."""
    async with sessions() as session:
        return await session.scalar(
            select(_connections.c.conversation_id).where(
                _connections.c.app_id == app_id,
                _connections.c.connection_id == connection_id,
                _connections.c.open_streams > 0,
            )
        )


async def leave_conversation(
    sessions: async_sessionmaker[AsyncSession],
    app_id: str,
    connection_id: str,
    conversation_id: str,
    now_ms: int,
) -> bool:
    """One stream of the conversation closed. True when it was the last one: that caller announces
    CONVERSATION_COMPLETED. False when others are still open, or the stream was already counted out."""
    open_streams = _connections.c.open_streams
    statement = (
        update(_connections)
        .where(
            (_connections.c.app_id == app_id)
            & (_connections.c.connection_id == connection_id)
            & (_connections.c.conversation_id == conversation_id)
            & (open_streams > 0)
        )
        .values(
            open_streams=open_streams - 1,
            updated_at_ms=now_ms,
            ended_at_ms=case((open_streams <= 1, now_ms), else_=None),
        )
        .returning(open_streams)
    )
    async with sessions.begin() as session:
        remaining = (await session.execute(statement)).scalar_one_or_none()
    return remaining == 0
