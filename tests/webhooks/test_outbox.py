"""The outbox on SQLite and PostgreSQL: claims are leased (never handed out twice while the lease holds, handed out
again after it runs out), capped per webhook, and an attempt is recorded only by the lease holder."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from convoscope.auth import create_app
from convoscope.db.models import Webhook, WebhookDelivery
from convoscope.timestamps import now_ms
from schemas.topics import TRANSCRIPTS_FINAL
from sinks.webhooks.logic import WebhookEvent, events_from_record
from sinks.webhooks.outbox import (
    claim_due,
    enqueue,
    forget_finished,
    pending_count,
    record_attempt,
    webhooks_of,
)
from sinks.webhooks.worker import WebhookDirectory
from tests.store.records import final, speaker

NOW = 1_800_000_000_000
LEASE_MS = 10_000

pytestmark = pytest.mark.usefixtures("empty_outbox")


async def test_claims_are_leased_capped_per_webhook_and_recorded_by_their_holder(
    db_sessions: async_sessionmaker[AsyncSession],
) -> None:
    app_id = (await create_app(db_sessions, "outbox")).app_id
    busy, quiet = str(uuid.uuid4()), str(uuid.uuid4())
    cid = str(1_700_000_000_000_000_000 + uuid.uuid4().int % 10**17)
    async with db_sessions.begin() as session:
        session.add_all([
            Webhook(id=busy, app_id=app_id, url="http://127.0.0.1:1/busy", event_types=["message.final"],
                    secret="s" * 20, created_at_ms=NOW, updated_at_ms=NOW),
            Webhook(id=quiet, app_id=app_id, url="http://127.0.0.1:1/quiet", event_types=["message.final"],
                    conversation_id=cid, secret="t" * 20, created_at_ms=NOW, updated_at_ms=NOW),
        ])
    who = speaker(cid, "Ann")
    other_cid = str(int(cid) + 1)
    events = [e for i in range(6) for e in events_from_record(TRANSCRIPTS_FINAL.name, final(
        cid if i < 2 else other_cid, app_id, "s", who, i, i * 16_000, i * 16_000 + 8_000, f"Line {i}.", NOW))]
    async with db_sessions.begin() as session:
        queued = await enqueue(session, await webhooks_of(session, {app_id}), events, NOW)
    assert queued == 6 + 2  # every event for the busy webhook, the first conversation's two for the quiet one

    async with db_sessions.begin() as session:
        first = await claim_due(session, NOW, LEASE_MS, slots=4, room_per_webhook={}, default_room=2)
    assert sorted(c.webhook_id for c in first) == sorted([busy, busy, quiet, quiet])
    assert all(c.lease_until_ms == NOW + LEASE_MS and c.attempts == 0 for c in first)
    async with db_sessions.begin() as session:  # a second sender meanwhile: only the rows nobody holds
        second = await claim_due(session, NOW + 1, LEASE_MS, slots=10, room_per_webhook={busy: 3},
                                 default_room=10)
    assert [c.webhook_id for c in second] == [busy] * 3
    assert not {c.id for c in first} & {c.id for c in second}
    async with db_sessions.begin() as session:  # a webhook without room is not served at all
        assert await claim_due(session, NOW + 2, LEASE_MS, slots=10, room_per_webhook={busy: 0},
                               default_room=10) == []

    delivered, lost = first[0], first[1]
    async with db_sessions.begin() as session:
        assert await record_attempt(session, delivered, status="delivered", now_ms=NOW + 5, status_code=204,
                                    error=None, next_attempt_at_ms=None)
    # The lease of the first claim runs out (its sender died): its unsent rows are handed out again, with the one
    # row nobody claimed yet; the second sender's rows are still leased.
    later = NOW + LEASE_MS + 1
    async with db_sessions.begin() as session:
        again = await claim_due(session, later, LEASE_MS, slots=10, room_per_webhook={}, default_room=10)
    again_ids = {c.id for c in again}
    assert len(again) == 4 and {c.id for c in first[1:]} < again_ids
    assert delivered.id not in again_ids and not again_ids & {c.id for c in second}
    async with db_sessions.begin() as session:  # the old holder's late answer does not overwrite the new claim
        assert not await record_attempt(session, lost, status="delivered", now_ms=later, status_code=204,
                                        error=None, next_attempt_at_ms=None)
    async with db_sessions() as session:
        assert await pending_count(session) >= 7


async def test_the_delivery_log_forgets_finished_deliveries_after_its_retention(
    db_sessions: async_sessionmaker[AsyncSession],
) -> None:
    day = 86_400_000

    def row(status: str, updated_at_ms: int) -> WebhookDelivery:
        return WebhookDelivery(
            id=str(uuid.uuid4()), webhook_id="w", app_id="a", event_id=str(uuid.uuid4()), event_type="message.final",
            body="{}", status=status, attempts=1, next_attempt_at_ms=updated_at_ms, created_at_ms=updated_at_ms,
            updated_at_ms=updated_at_ms)

    rows = {"old delivered": row("delivered", NOW - 9 * day), "old dead": row("dead", NOW - 8 * day),
            "old but still pending": row("pending", NOW - 9 * day), "recent": row("delivered", NOW - day)}
    async with db_sessions.begin() as session:
        session.add_all(rows.values())
    async with db_sessions.begin() as session:
        assert await forget_finished(session, NOW - 7 * day) == 2
    async with db_sessions() as session:
        kept = set(await session.scalars(select(WebhookDelivery.id)))
    assert kept == {rows["old but still pending"].id, rows["recent"].id}


async def test_a_webhook_registered_just_before_an_event_gets_it(db_sessions: async_sessionmaker[AsyncSession]) -> None:
    app_id = (await create_app(db_sessions, "directory")).app_id
    directory = WebhookDirectory(ttl_s=3600)  # the cache alone would hide the new webhook for an hour
    cid = str(1_700_000_000_000_000_000 + uuid.uuid4().int % 10**17)

    def event_at(at_ms: int) -> list[WebhookEvent]:
        return events_from_record(TRANSCRIPTS_FINAL.name, final(cid, app_id, "s", speaker(cid, "Ann"), 0, 0, 8000,
                                                                "Hello.", at_ms))

    async with db_sessions() as session:
        assert await directory.lookup(session, event_at(now_ms() - 1000)) == {app_id: []}
    webhook_id = str(uuid.uuid4())
    async with db_sessions.begin() as session:
        session.add(Webhook(id=webhook_id, app_id=app_id, url="http://127.0.0.1:1/new", event_types=["message.final"],
                            secret="s" * 20, created_at_ms=now_ms(), updated_at_ms=now_ms()))
    async with db_sessions() as session:
        # An event from before the last read may use the cached list; one after it reads the list again.
        assert await directory.lookup(session, event_at(now_ms() - 60_000)) == {app_id: []}
        found = await directory.lookup(session, event_at(now_ms() + 1))
    assert [w.id for w in found[app_id]] == [webhook_id]
