"""The connection registry under concurrency, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from convoscope.db import Connection, Conversation, create_engine, session_factory
from convoscope.registry import (
    StreamSeat,
    claim_expired_seats,
    client_returned,
    due_held_seats,
    hold_seat,
    join_conversation,
    leave_conversation,
    leave_seat,
    live_conversation_id,
    new_conversation_id,
    renew_seats,
)
from convoscope.timestamps import now_ms


async def test_concurrent_joins_share_one_conversation(
    database_url: str, db_sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Two speakers (on two 'gateway replicas', i.e. two engines) connecting at the same instant."""
    app_id, connection_id = uuid.uuid4().hex * 2, str(uuid.uuid4())
    other_engine = create_engine(database_url)
    try:
        other = session_factory(other_engine)
        now = now_ms()
        first, second = await asyncio.gather(
            join_conversation(db_sessions, app_id, connection_id, "Standup", now),
            join_conversation(other, app_id, connection_id, "Standup", now),
        )
    finally:
        await other_engine.dispose()
    assert first.conversation_id == second.conversation_id
    assert sorted([first.created, second.created]) == [False, True]
    assert first.conversation_started_at_ms == second.conversation_started_at_ms == now
    async with db_sessions() as session:
        row = await session.get(Connection, (app_id, connection_id))
        assert row is not None and row.open_streams == 2
        count = await session.scalar(
            select(func.count()).select_from(Conversation).where(Conversation.app_id == app_id)
        )
        assert count == 1
        conversation = await session.get(Conversation, first.conversation_id)
        assert conversation is not None and conversation.name == "Standup" and conversation.start_ms == now


async def test_many_concurrent_joins(db_sessions: async_sessionmaker[AsyncSession]) -> None:
    app_id, connection_id = uuid.uuid4().hex * 2, "many"
    results = await asyncio.gather(
        *(join_conversation(db_sessions, app_id, connection_id, None, now_ms()) for _ in range(8))
    )
    assert len({r.conversation_id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    last = await asyncio.gather(
        *(
            leave_conversation(db_sessions, app_id, connection_id, results[0].conversation_id, now_ms())
            for _ in results
        )
    )
    assert sum(last) == 1


async def test_leave_then_rejoin_starts_a_new_conversation(db_sessions: async_sessionmaker[AsyncSession]) -> None:
    app_id, connection_id = uuid.uuid4().hex * 2, "room-1"
    assert await live_conversation_id(db_sessions, app_id, connection_id) is None
    a = await join_conversation(db_sessions, app_id, connection_id, "First", now_ms())
    b = await join_conversation(db_sessions, app_id, connection_id, "ignored", now_ms())
    assert a.created and not b.created and a.conversation_id == b.conversation_id
    assert await live_conversation_id(db_sessions, app_id, connection_id) == a.conversation_id
    assert not await leave_conversation(db_sessions, app_id, connection_id, a.conversation_id, now_ms())
    assert await leave_conversation(db_sessions, app_id, connection_id, a.conversation_id, now_ms())
    assert await live_conversation_id(db_sessions, app_id, connection_id) is None
    # counted out already: a duplicate leave is not a second "last"
    assert not await leave_conversation(db_sessions, app_id, connection_id, a.conversation_id, now_ms())
    await asyncio.sleep(0.002)
    c = await join_conversation(db_sessions, app_id, connection_id, "Second", now_ms())
    assert c.created and c.conversation_id != a.conversation_id
    assert int(c.conversation_id) > int(a.conversation_id)
    # a leave for the old conversation does not touch the new one
    assert not await leave_conversation(db_sessions, app_id, connection_id, a.conversation_id, now_ms())
    async with db_sessions() as session:
        row = await session.get(Connection, (app_id, connection_id))
        assert row is not None and row.conversation_id == c.conversation_id and row.open_streams == 1
        second = await session.get(Conversation, c.conversation_id)
        assert second is not None and second.name == "Second"


async def test_same_connection_id_in_two_apps_is_two_conversations(
    db_sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = now_ms()
    a = await join_conversation(db_sessions, uuid.uuid4().hex * 2, "shared", None, now)
    b = await join_conversation(db_sessions, uuid.uuid4().hex * 2, "shared", None, now)
    assert a.created and b.created and a.conversation_id != b.conversation_id


def test_conversation_ids_are_numeric_and_time_ordered() -> None:
    now = now_ms()
    ids = [new_conversation_id(now + i) for i in range(100)]
    assert all(i.isdigit() and 16 <= len(i) <= 19 for i in ids)
    assert [int(i) for i in ids] == sorted(int(i) for i in ids)


# -- stream seats: leases that let one replica end the streams of another that died --------------------------------


def _seat(stream_id: str, owner: str, *, lease_ms: int = 1_000, hold_ms: int = 0, name: str = "Dana") -> StreamSeat:
    return StreamSeat(stream_id, owner, lease_ms, hold_ms, {"name": name, "user_id": f"{name.lower()}@example.com"})


async def test_expired_seats_are_claimed_once_and_the_last_leaver_announces(
    database_url: str, db_sessions: async_sessionmaker[AsyncSession]
) -> None:
    app_id, connection_id = uuid.uuid4().hex, str(uuid.uuid4())
    now = now_ms()
    joined = await join_conversation(db_sessions, app_id, connection_id, None, now, _seat("s-dead", "replica-a"))
    await join_conversation(db_sessions, app_id, connection_id, None, now, _seat("s-live", "replica-b"))
    assert await renew_seats(db_sessions, "replica-b", ["s-live"], now + 900, 1_000) == {"s-live"}
    assert await renew_seats(db_sessions, "replica-b", ["s-dead"], now + 900, 1_000) == set(), "not its seat"

    # Two reapers (two engines) race for the dead replica's seat after its lease ran out: one gets it.
    other_engine = create_engine(database_url)
    try:
        claims = await asyncio.gather(
            claim_expired_seats(db_sessions, "reaper-1", now + 1_500, 5_000),
            claim_expired_seats(session_factory(other_engine), "reaper-2", now + 1_500, 5_000),
        )
    finally:
        await other_engine.dispose()
    claimed = [seat for claim in claims for seat in claim if seat.app_id == app_id]
    assert [seat.stream_id for seat in claimed] == ["s-dead"]
    assert claimed[0].conversation_id == joined.conversation_id and claimed[0].details["name"] == "Dana"

    announced: list[str] = []

    async def announce(app: str, connection: str, conversation_id: str) -> None:
        announced.append(conversation_id)

    await hold_seat(db_sessions, "s-dead", now + 1_600)  # hold_ms 0: due at once
    assert "s-dead" in await due_held_seats(db_sessions, now + 1_600)
    assert await leave_seat(db_sessions, "s-dead", now + 1_700, announce)
    assert not await leave_seat(db_sessions, "s-dead", now + 1_700, announce), "a seat is given up once"
    assert announced == []
    assert await leave_seat(db_sessions, "s-live", now + 1_800, announce)
    assert announced == [joined.conversation_id]
    async with db_sessions() as session:
        row = await session.get(Connection, (app_id, connection_id))
        assert row is not None and row.open_streams == 0 and row.ended_at_ms == now + 1_800


async def test_a_returning_client_frees_its_old_seats_but_not_other_speakers(
    db_sessions: async_sessionmaker[AsyncSession]
) -> None:
    app_id, connection_id = uuid.uuid4().hex, str(uuid.uuid4())
    now = now_ms()
    for stream_id, name, owner in (("held", "Dana", "a"), ("dead", "Dana", "b"), ("other", "Eve", "b")):
        await join_conversation(db_sessions, app_id, connection_id, None, now,
                                _seat(stream_id, owner, hold_ms=60_000, name=name))
    await hold_seat(db_sessions, "held", now)  # Dana's client vanished: held for a minute
    assert await due_held_seats(db_sessions, now + 1_000) == []

    await join_conversation(db_sessions, app_id, connection_id, None, now + 1_000, _seat("back", "c", name="Dana"))
    await client_returned(db_sessions, app_id, connection_id, "back", now + 1_000)
    assert await due_held_seats(db_sessions, now + 1_000) == ["held"]
    # Dana's seat on the dead replica is not held once reaped (she is back); Eve's still is.
    claimed = {s.stream_id: s for s in await claim_expired_seats(db_sessions, "r", now + 2_000, 5_000)
               if s.app_id == app_id}
    assert claimed["dead"].hold_ms == 0 and claimed["other"].hold_ms == 60_000
