"""Management API for webhooks (an addition to Symbl's): register receivers for events, read their delivery log.

POST /v1/manage/webhooks ``{url, eventTypes, conversationId?, secret?}`` → 201 ``{"webhook"}`` with its secret
GET /v1/manage/webhooks, GET/DELETE /v1/manage/webhooks/{webhook_id}
GET /v1/manage/webhooks/{webhook_id}/deliveries ``?status=pending|delivered|dead&limit=``

Deliveries are made by ``convoscope worker webhooks`` (sinks/webhooks); docs/webhooks.md describes the envelope
and the signature.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from convoscope.api.insights import _json_body
from convoscope.api.routes import ApiError, _int_param, _json_errors, _sessions, authenticate
from convoscope.api.serialize import optional_iso_ms
from convoscope.db.models import Webhook, WebhookDelivery
from convoscope.egress import BlockedDestination, check_url, parse_networks
from convoscope.timestamps import iso_ms, now_ms
from sinks.webhooks.logic import EVENT_TYPES, new_secret
from sinks.webhooks.outbox import DeliveryStatus

__all__ = ["webhook_routes"]

MAX_URL_CHARS = 2000
MIN_SECRET_CHARS = 16
MAX_SECRET_CHARS = 128
MAX_WEBHOOKS_PER_APP = 100
DEFAULT_DELIVERIES = 50
MAX_DELIVERIES = 1000


def webhook_json(webhook: Webhook, *, with_secret: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": webhook.id,
        "url": webhook.url,
        "eventTypes": list(webhook.event_types),
        "conversationId": webhook.conversation_id,
        "createdAt": iso_ms(webhook.created_at_ms),
    }
    if with_secret:
        body["secret"] = webhook.secret
    return body


def delivery_json(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "eventId": delivery.event_id,
        "eventType": delivery.event_type,
        "conversationId": delivery.conversation_id,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "lastStatusCode": delivery.last_status_code,
        "lastError": delivery.last_error,
        "createdAt": iso_ms(delivery.created_at_ms),
        "updatedAt": iso_ms(delivery.updated_at_ms),
        "nextAttemptAt": optional_iso_ms(delivery.next_attempt_at_ms)
        if delivery.status == DeliveryStatus.PENDING else None,
        "deliveredAt": optional_iso_ms(delivery.delivered_at_ms),
    }


def _parse_webhook(body: Any) -> tuple[str, list[str], str | None, str | None]:
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be an object {url, eventTypes, conversationId?, secret?}.")
    url = body.get("url")
    if not isinstance(url, str) or len(url) > MAX_URL_CHARS:
        raise ApiError(400, f"url must be an http or https URL of at most {MAX_URL_CHARS} characters.")
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # raises on a port that is not a number in range
    except ValueError:
        valid = False
    if not valid or any(c.isspace() or not c.isprintable() for c in url):
        raise ApiError(400, f"url must be an http or https URL with a host, got {url!r}.")
    event_types = body.get("eventTypes")
    known = ", ".join(EVENT_TYPES)
    if not isinstance(event_types, list) or not event_types or not all(isinstance(t, str) for t in event_types):
        raise ApiError(400, f"eventTypes must be a non-empty list of event types: {known}.")
    unknown = [t for t in event_types if t not in EVENT_TYPES]
    if unknown:
        raise ApiError(400, f"Unknown event type {unknown[0]!r}; known event types: {known}.")
    conversation_id = body.get("conversationId")
    if conversation_id is not None and (not isinstance(conversation_id, str) or not conversation_id.isascii()
                                        or not conversation_id.isdigit() or len(conversation_id) > 32):
        raise ApiError(400, "conversationId must be a conversation id (a string of digits) or absent.")
    secret = body.get("secret")
    if secret is not None and (not isinstance(secret, str)
                               or not MIN_SECRET_CHARS <= len(secret) <= MAX_SECRET_CHARS or not secret.isprintable()):
        raise ApiError(400, f"secret must be a string of {MIN_SECRET_CHARS} to {MAX_SECRET_CHARS} printable "
                            "characters, or absent (one is generated).")
    return url, list(dict.fromkeys(event_types)), conversation_id, secret


async def _owned_webhook(session: AsyncSession, app_id: str, webhook_id: str) -> Webhook:
    webhook = await session.scalar(select(Webhook).where(Webhook.id == webhook_id, Webhook.app_id == app_id))
    if webhook is None:
        raise ApiError(404, f"Webhook with id {webhook_id} does not exist.")
    return webhook


@_json_errors
async def create_webhook(request: Request) -> Response:
    """POST /v1/manage/webhooks: the answer carries the signing secret (generated unless given); keep it."""
    app_id = authenticate(request)
    url, event_types, conversation_id, secret = _parse_webhook(await _json_body(request))
    try:
        # An address literal is refused now; a host name is checked by the sender after each resolution.
        check_url(url, parse_networks(request.app.state.settings.outbound_blocked_networks))
    except BlockedDestination as exc:
        raise ApiError(400, f"url is not allowed: {exc}.") from None
    at = now_ms()
    webhook = Webhook(id=str(uuid.uuid4()), app_id=app_id, url=url, event_types=event_types,
                      conversation_id=conversation_id, secret=secret or new_secret(), created_at_ms=at,
                      updated_at_ms=at)
    async with _sessions(request).begin() as session:
        count = len(list(await session.scalars(select(Webhook.id).where(Webhook.app_id == app_id))))
        if count >= MAX_WEBHOOKS_PER_APP:
            raise ApiError(409, f"An app may register at most {MAX_WEBHOOKS_PER_APP} webhooks.")
        session.add(webhook)
    return JSONResponse({"webhook": webhook_json(webhook, with_secret=True)}, status_code=201)


@_json_errors
async def list_webhooks(request: Request) -> Response:
    """GET /v1/manage/webhooks (secrets are not shown again)."""
    app_id = authenticate(request)
    async with _sessions(request)() as session:
        webhooks = list(await session.scalars(
            select(Webhook).where(Webhook.app_id == app_id).order_by(Webhook.created_at_ms, Webhook.id)
        ))
    return JSONResponse({"webhooks": [webhook_json(w) for w in webhooks]})


@_json_errors
async def get_webhook(request: Request) -> Response:
    """GET /v1/manage/webhooks/{webhook_id}"""
    app_id = authenticate(request)
    async with _sessions(request)() as session:
        webhook = await _owned_webhook(session, app_id, request.path_params["webhook_id"])
    return JSONResponse({"webhook": webhook_json(webhook)})


@_json_errors
async def delete_webhook(request: Request) -> Response:
    """DELETE /v1/manage/webhooks/{webhook_id}: nothing more is sent to it, and its delivery log goes too."""
    app_id = authenticate(request)
    webhook_id = request.path_params["webhook_id"]
    async with _sessions(request).begin() as session:
        await _owned_webhook(session, app_id, webhook_id)
        await session.execute(delete(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id))
        await session.execute(delete(Webhook).where(Webhook.id == webhook_id, Webhook.app_id == app_id))
    return JSONResponse({"message": f"Webhook with id {webhook_id} deleted successfully."})


@_json_errors
async def list_deliveries(request: Request) -> Response:
    """GET /v1/manage/webhooks/{webhook_id}/deliveries ``?status=&limit=``: newest first."""
    app_id = authenticate(request)
    status = request.query_params.get("status") or None
    if status is not None and status not in DeliveryStatus.ALL:
        raise ApiError(400, f"status must be one of {', '.join(DeliveryStatus.ALL)}.")
    limit = _int_param(request, "limit", DEFAULT_DELIVERIES, MAX_DELIVERIES)
    async with _sessions(request)() as session:
        webhook = await _owned_webhook(session, app_id, request.path_params["webhook_id"])
        query = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook.id)
        if status is not None:
            query = query.where(WebhookDelivery.status == status)
        rows = list(await session.scalars(
            query.order_by(WebhookDelivery.created_at_ms.desc(), WebhookDelivery.id).limit(limit)
        ))
    return JSONResponse({"deliveries": [delivery_json(row) for row in rows]})


def webhook_routes() -> list[BaseRoute]:
    base = "/v1/manage/webhooks"
    return [
        Route(base, create_webhook, methods=["POST"]),
        Route(base, list_webhooks, methods=["GET"]),
        Route(f"{base}/{{webhook_id}}", get_webhook, methods=["GET"]),
        Route(f"{base}/{{webhook_id}}", delete_webhook, methods=["DELETE"]),
        Route(f"{base}/{{webhook_id}}/deliveries", list_deliveries, methods=["GET"]),
    ]
