"""The webhook outbox in SQL (``webhook_deliveries``): queue events for the webhooks that want them, claim due
deliveries under a lease, record each attempt's outcome. Also the delivery log the Management API reads.

Queueing is idempotent (the row id is derived from webhook and event), so a record read twice after a crash is
queued once. A claim sets ``lease_until_ms`` with a compare-and-set update per row: several senders never send
the same row at once, and a row whose sender died becomes due again when its lease runs out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from convoscope.db.engine import dialect_insert
from convoscope.db.models import Webhook, WebhookDelivery
from sinks.webhooks.logic import WebhookEvent, delivery_id, envelope_body, wants

__all__ = [
    "ClaimedDelivery",
    "DeliveryStatus",
    "WebhookTarget",
    "claim_due",
    "enqueue",
    "pending_count",
    "queue_events",
    "record_attempt",
    "release",
    "webhooks_of",
]


INSERT_CHUNK_ROWS = 1000


class DeliveryStatus:
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"
    ALL = ("pending", "delivered", "dead")


@dataclass(frozen=True)
class WebhookTarget:
    """What queueing needs of a webhook (a detached copy, so it can be cached between transactions)."""

    id: str
    app_id: str
    event_types: tuple[str, ...]
    conversation_id: str | None


async def webhooks_of(session: AsyncSession, app_ids: Iterable[str]) -> dict[str, list[WebhookTarget]]:
    """The webhooks of each app (apps without any map to an empty list)."""
    wanted = sorted(set(app_ids))
    found: dict[str, list[WebhookTarget]] = {app_id: [] for app_id in wanted}
    if not wanted:
        return found
    rows = await session.scalars(select(Webhook).where(Webhook.app_id.in_(wanted)).order_by(Webhook.created_at_ms))
    for row in rows:
        found[row.app_id].append(WebhookTarget(row.id, row.app_id, tuple(row.event_types or ()), row.conversation_id))
    return found


async def enqueue(session: AsyncSession, webhooks: Mapping[str, Sequence[WebhookTarget]],
                  events: Iterable[WebhookEvent], now_ms: int) -> int:
    """Queue each event for every webhook of its app that wants it (inside the caller's transaction); rows that
    exist already are left as they are. Returns how many (webhook, event) pairs matched."""
    rows = []
    for event in events:
        for webhook in webhooks.get(event.app_id, ()):
            if not wants(webhook.event_types, webhook.conversation_id, event):
                continue
            rows.append({
                "id": delivery_id(webhook.id, event.id),
                "webhook_id": webhook.id,
                "app_id": event.app_id,
                "event_id": event.id,
                "event_type": event.type,
                "conversation_id": event.conversation_id,
                "body": envelope_body(event),
                "status": DeliveryStatus.PENDING,
                "attempts": 0,
                "next_attempt_at_ms": now_ms,
                "lease_until_ms": None,
                "created_at_ms": now_ms,
                "updated_at_ms": now_ms,
            })
    if rows:
        unique = list({row["id"]: row for row in rows}.values())  # a batch may hold one record twice
        table = WebhookDelivery.__table__
        for start in range(0, len(unique), INSERT_CHUNK_ROWS):  # SQLite binds at most 32766 values per statement
            chunk = unique[start:start + INSERT_CHUNK_ROWS]
            await session.execute(dialect_insert(session, table).values(chunk).on_conflict_do_nothing(
                index_elements=["id"]))
    return len(rows)


async def queue_events(session: AsyncSession, events: Sequence[WebhookEvent], now_ms: int) -> int:
    """``enqueue`` for callers without a webhook cache (the job monitor): reads the apps' webhooks first."""
    if not events:
        return 0
    return await enqueue(session, await webhooks_of(session, {e.app_id for e in events}), events, now_ms)


@dataclass(frozen=True)
class ClaimedDelivery:
    id: str
    webhook_id: str
    app_id: str
    url: str
    secret: str
    event_id: str
    event_type: str
    conversation_id: str | None
    body: str
    attempts: int
    """Attempts made before this one."""
    created_at_ms: int
    lease_until_ms: int


async def claim_due(session: AsyncSession, now_ms: int, lease_ms: int, slots: int,
                    room_per_webhook: Mapping[str, int], default_room: int) -> list[ClaimedDelivery]:
    """Lease up to ``slots`` due deliveries, at most ``room_per_webhook[id]`` (else ``default_room``) per webhook,
    oldest due first. Webhooks with no room are not even read, so one receiver's backlog cannot fill the claim."""
    if slots <= 0:
        return []
    full = [webhook_id for webhook_id, room in room_per_webhook.items() if room <= 0]
    due = (
        select(WebhookDelivery.id, WebhookDelivery.webhook_id)
        .where(WebhookDelivery.status == DeliveryStatus.PENDING, WebhookDelivery.next_attempt_at_ms <= now_ms,
               or_(WebhookDelivery.lease_until_ms.is_(None), WebhookDelivery.lease_until_ms < now_ms))
        .order_by(WebhookDelivery.next_attempt_at_ms, WebhookDelivery.id)
        .limit(slots * 4)
    )
    if full:
        due = due.where(WebhookDelivery.webhook_id.not_in(full))
    taken: dict[str, int] = defaultdict(int)
    chosen: list[str] = []
    for row_id, webhook_id in (await session.execute(due)).all():
        if len(chosen) >= slots:
            break
        if taken[webhook_id] >= room_per_webhook.get(webhook_id, default_room):
            continue
        taken[webhook_id] += 1
        chosen.append(row_id)
    lease_until = now_ms + lease_ms
    won: list[str] = []
    for row_id in chosen:
        result = await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == row_id, WebhookDelivery.status == DeliveryStatus.PENDING,
                   or_(WebhookDelivery.lease_until_ms.is_(None), WebhookDelivery.lease_until_ms < now_ms))
            .values(lease_until_ms=lease_until)
        )
        if result.rowcount:  # type: ignore[attr-defined]
            won.append(row_id)
    if not won:
        return []
    rows = await session.execute(
        select(WebhookDelivery, Webhook.url, Webhook.secret)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id, isouter=True)
        .where(WebhookDelivery.id.in_(won))
    )
    claimed = []
    for delivery, url, secret in rows.all():
        if url is None:  # the webhook was deleted after the event was queued: nothing to send to
            delivery.status, delivery.last_error = DeliveryStatus.DEAD, "webhook deleted"
            delivery.updated_at_ms = now_ms
            continue
        claimed.append(ClaimedDelivery(
            delivery.id, delivery.webhook_id, delivery.app_id, url, secret, delivery.event_id, delivery.event_type,
            delivery.conversation_id, delivery.body, delivery.attempts, delivery.created_at_ms, lease_until,
        ))
    claimed.sort(key=lambda c: won.index(c.id))
    return claimed


async def record_attempt(session: AsyncSession, delivery: ClaimedDelivery, *, status: str, now_ms: int,
                         status_code: int | None, error: str | None, next_attempt_at_ms: int | None) -> bool:
    """Store one attempt's outcome, if this sender still holds the lease (False: it ran out and another sender
    may have the row; the receiver may then get the event twice, which the event id lets it notice)."""
    values: dict[str, object] = {
        "status": status,
        "attempts": delivery.attempts + 1,
        "last_status_code": status_code,
        "last_error": error,
        "lease_until_ms": None,
        "updated_at_ms": now_ms,
    }
    if next_attempt_at_ms is not None:
        values["next_attempt_at_ms"] = next_attempt_at_ms
    if status == DeliveryStatus.DELIVERED:
        values["delivered_at_ms"] = now_ms
    result = await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery.id, WebhookDelivery.status == DeliveryStatus.PENDING,
               WebhookDelivery.lease_until_ms == delivery.lease_until_ms)
        .values(**values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def release(session: AsyncSession, deliveries: Iterable[ClaimedDelivery]) -> None:
    """Give unsent claimed rows back at once (a sender stopping), instead of when their lease runs out."""
    for delivery in deliveries:
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery.id, WebhookDelivery.lease_until_ms == delivery.lease_until_ms)
            .values(lease_until_ms=None)
        )


async def pending_count(session: AsyncSession) -> int:
    return int(await session.scalar(
        select(func.count()).select_from(WebhookDelivery).where(WebhookDelivery.status == DeliveryStatus.PENDING)
    ) or 0)


async def forget_finished(session: AsyncSession, before_ms: int, limit: int = 5000) -> int:
    """Delete up to ``limit`` delivered or dead rows last updated before ``before_ms`` (the delivery log keeps a
    retention period, not every delivery ever made). Returns how many went."""
    old = (select(WebhookDelivery.id)
           .where(WebhookDelivery.status != DeliveryStatus.PENDING, WebhookDelivery.updated_at_ms < before_ms)
           .limit(limit))
    ids = list(await session.scalars(old))
    if ids:
        await session.execute(delete(WebhookDelivery).where(WebhookDelivery.id.in_(ids)))
    return len(ids)
