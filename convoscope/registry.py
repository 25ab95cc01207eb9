"""The connection registry: which conversation the streams of a client-chosen connection id share.

Every gateway replica uses it through the database. Several WebSocket connections with one connection id (one per
speaker) join one live conversation; when the last of them leaves, the conversation is over and the next connection
with that id starts a new one. Each operation is a single transaction that starts with a write on the connection's
row (an upsert or an UPDATE ... RETURNING), so PostgreSQL row locks and the SQLite write lock serialise concurrent
joins: two speakers connecting at the same instant land in one conversation.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from convoscope.db.engine import dialect_insert
from convoscope.db.models import Connection, Conversation, LiveStream

__all__ = [
    "CONVERSATION_TYPE",
    "ClaimedSeat",
    "JoinResult",
    "StreamSeat",
    "claim_expired_seats",
    "client_returned",
    "due_held_seats",
    "hold_seat",
    "join_conversation",
    "leave_conversation",
    "leave_seat",
    "live_conversation_id",
    "new_conversation_id",
    "renew_seats",
]

CONVERSATION_TYPE = "meeting"
ID_EPOCH_MS = 1_577_836_800_000  # 2020-01-01T00:00:00Z
ID_RANDOM_BITS = 22
JOIN_ATTEMPTS = 3

_connections = Connection.__table__
_conversations = Conversation.__table__
_live_streams = LiveStream.__table__

LIVE, ENDING, HELD = "live", "ending", "held"


@dataclass(frozen=True, slots=True)
class StreamSeat:
    """A stream's seat in its conversation, leased by the gateway replica ``owner`` for ``lease_ms`` at a time.
    ``details`` is what another replica needs to end the stream if the owner dies (speaker, language, source)."""

    stream_id: str
    owner: str
    lease_ms: int
    hold_ms: int
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ClaimedSeat:
    """A seat whose owner stopped renewing it, claimed by a reaper that now ends its stream."""

    stream_id: str
    app_id: str
    connection_id: str
    conversation_id: str
    hold_ms: int
    details: dict[str, Any]


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
    seat: StreamSeat | None = None,
) -> JoinResult:
    """Join the live conversation of ``connection_id`` (one more open stream), or start a new one when there is
    none or the previous one has ended. ``name`` (Symbl's meetingTitle) only names a new conversation. With
    ``seat``, the stream's lease is written in the same transaction: no seat is ever counted without one."""
    for attempt in range(JOIN_ATTEMPTS):
        try:
            return await _join_once(sessions, app_id, connection_id, name, now_ms, seat)
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
    seat: StreamSeat | None,
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
            await _insert_seat(session, seat, app_id, connection_id, row.conversation_id, now_ms)
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
        await _insert_seat(session, seat, app_id, connection_id, candidate, now_ms)
        return JoinResult(candidate, now_ms, created=True)


async def _insert_seat(session: AsyncSession, seat: StreamSeat | None, app_id: str, connection_id: str,
                       conversation_id: str, now_ms: int) -> None:
    if seat is None:
        return
    await session.execute(_live_streams.insert().values(
        stream_id=seat.stream_id,
        app_id=app_id,
        connection_id=connection_id,
        conversation_id=conversation_id,
        owner=seat.owner,
        state=LIVE,
        due_at_ms=now_ms + seat.lease_ms,
        hold_ms=seat.hold_ms,
        details=seat.details,
    ))


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
    async with sessions.begin() as session:
        return await _count_out(session, app_id, connection_id, conversation_id, now_ms)


async def _count_out(session: AsyncSession, app_id: str, connection_id: str, conversation_id: str, now_ms: int
                     ) -> bool:
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
    remaining = (await session.execute(statement)).scalar_one_or_none()
    return remaining == 0


async def leave_seat(
    sessions: async_sessionmaker[AsyncSession],
    stream_id: str,
    now_ms: int,
    on_last: Callable[[str, str, str], Awaitable[None]],
) -> bool:
    """The stream gives up its seat: its lease row goes and its conversation counts one stream less, in one
    transaction. When it was the last stream, ``on_last(app_id, connection_id, conversation_id)`` runs before the
    commit (it announces CONVERSATION_COMPLETED), so a crash in between repeats the announcement, never loses it.
    False when the seat was already given up (another reaper got there first)."""
    async with sessions.begin() as session:
        row = (await session.execute(
            delete(_live_streams).where(_live_streams.c.stream_id == stream_id).returning(
                _live_streams.c.app_id, _live_streams.c.connection_id, _live_streams.c.conversation_id)
        )).one_or_none()
        if row is None:
            return False
        if await _count_out(session, row.app_id, row.connection_id, row.conversation_id, now_ms):
            await on_last(row.app_id, row.connection_id, row.conversation_id)
        return True


async def renew_seats(
    sessions: async_sessionmaker[AsyncSession], owner: str, stream_ids: Iterable[str], now_ms: int, lease_ms: int
) -> set[str]:
    """Extend ``owner``'s leases on these live streams; returns the ones it still holds."""
    ids = list(stream_ids)  # even when empty: the statement doubles as the database check of the caller
    async with sessions.begin() as session:
        rows = await session.execute(
            update(_live_streams)
            .where(_live_streams.c.stream_id.in_(ids), _live_streams.c.owner == owner, _live_streams.c.state == LIVE)
            .values(due_at_ms=now_ms + lease_ms)
            .returning(_live_streams.c.stream_id)
        )
        return {row.stream_id for row in rows}


async def hold_seat(sessions: async_sessionmaker[AsyncSession], stream_id: str, now_ms: int) -> None:
    """The stream's client vanished and its END is out: keep the seat for the start_request's noConnectionTimeout
    (``hold_ms``), so a client reconnecting to the connection id continues the same conversation."""
    async with sessions.begin() as session:
        await session.execute(
            update(_live_streams)
            .where(_live_streams.c.stream_id == stream_id)
            .values(state=HELD, due_at_ms=now_ms + _live_streams.c.hold_ms)
        )


async def client_returned(
    sessions: async_sessionmaker[AsyncSession], app_id: str, connection_id: str, stream_id: str, now_ms: int
) -> None:
    """A client (re)connected to the connection id with stream ``stream_id``. Seats held for vanished clients go at
    the next reap (the new stream has its own). A still-leased seat of the same speaker belongs to a connection that
    died without the client noticing (its gateway was killed): it is given up as soon as it is reaped, not held."""
    async with sessions.begin() as session:
        rows = (await session.execute(
            select(_live_streams.c.stream_id, _live_streams.c.state, _live_streams.c.due_at_ms,
                   _live_streams.c.details)
            .where(_live_streams.c.app_id == app_id, _live_streams.c.connection_id == connection_id)
        )).all()
        mine = next((row.details for row in rows if row.stream_id == stream_id), None)
        held = [row.stream_id for row in rows if row.state == HELD and row.due_at_ms > now_ms]
        same_speaker = [row.stream_id for row in rows if row.state != HELD and row.stream_id != stream_id
                        and mine is not None and _speaker_of(row.details) == _speaker_of(mine)]
        if held:
            await session.execute(
                update(_live_streams).where(_live_streams.c.stream_id.in_(held)).values(due_at_ms=now_ms))
        if same_speaker:
            await session.execute(
                update(_live_streams).where(_live_streams.c.stream_id.in_(same_speaker)).values(hold_ms=0))


def _speaker_of(details: dict[str, Any]) -> tuple[Any, Any]:
    return details.get("user_id"), details.get("name")


async def claim_expired_seats(
    sessions: async_sessionmaker[AsyncSession], owner: str, now_ms: int, claim_ms: int, limit: int = 50
) -> list[ClaimedSeat]:
    """Claim seats whose lease ran out (their gateway died or lost the database), or whose earlier claimer did
    not finish, for ``claim_ms``. Two reapers never claim the same seat: the UPDATE re-checks the expiry."""
    expired = (_live_streams.c.state.in_((LIVE, ENDING))) & (_live_streams.c.due_at_ms < now_ms)
    candidates = select(_live_streams.c.stream_id).where(expired).limit(limit)
    async with sessions.begin() as session:
        rows = await session.execute(
            update(_live_streams)
            .where(_live_streams.c.stream_id.in_(candidates), expired)
            .values(state=ENDING, owner=owner, due_at_ms=now_ms + claim_ms)
            .returning(_live_streams.c.stream_id, _live_streams.c.app_id, _live_streams.c.connection_id,
                       _live_streams.c.conversation_id, _live_streams.c.hold_ms, _live_streams.c.details)
        )
        return [ClaimedSeat(r.stream_id, r.app_id, r.connection_id, r.conversation_id, r.hold_ms, r.details)
                for r in rows]


async def due_held_seats(sessions: async_sessionmaker[AsyncSession], now_ms: int, limit: int = 100) -> list[str]:
    """Held seats whose noConnectionTimeout has run out."""
    async with sessions() as session:
        rows = await session.execute(
            select(_live_streams.c.stream_id)
            .where(_live_streams.c.state == HELD, _live_streams.c.due_at_ms <= now_ms)
            .limit(limit)
        )
        return [row.stream_id for row in rows]
