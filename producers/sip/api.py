"""The Telephony API on the HTTP gateway (symbl-api.md §3): ``POST /v1/endpoint:connect`` and the result sockets.

This process places no calls itself: ``start`` opens the conversation, tells the text processors what to look for
and publishes a START command on ``convoscope.telephony.commands.v1``; a SIP gateway (``convoscope gateway sip``)
dials and reports progress as CALL_STATUS conversation events. Results reach subscribers of
``/session/subscribe/{connectionId}`` (the official Python SDK's path) and ``/events/{connectionId}`` through the
same results hub as the streaming API. Nothing here imports the SIP stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import zoneinfo
from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from convoscope.api import ApiError, authenticate, error_response
from convoscope.auth import InvalidToken, subprotocol_token, token_from_request
from convoscope.db.models import Connection, Conversation
from convoscope.ids import event_id
from convoscope.registry import join_conversation, leave_conversation
from convoscope.services import Services
from convoscope.timestamps import now_ms
from convoscope.view_links import conversation_page_url
from producers.actions import recipients_attribute
from producers.conversation_settings import InlineTracker, conversation_settings_record
from producers.sip.requests import (
    ConnectStart,
    ConnectStop,
    TelephonyRequestError,
    parse_connect_request,
    start_command,
    stop_command,
)
from producers.sip.status import FINAL_STATUSES, call_status_message
from producers.websocket.publisher import AudioPublisher
from schemas.topics import TELEPHONY_COMMANDS
from sinks.live.hub import Subscription
from sinks.live.symbl_format import conversation_completed, speaker_user
from sinks.live.view import LiveOptions, LiveView

__all__ = ["telephony_routes", "transcript_response"]

log = logging.getLogger(__name__)

NOT_ENABLED = (
    "Telephony is not enabled on this server: set CONVOSCOPE_SIP_ENABLED=true and run `convoscope gateway sip`."
)
RESULTS_WAIT_S = 10.0  # after the call, how long subscribers wait for the last results before completion
START_ACK_TIMEOUT_S = 5.0  # start waits this long for a SIP gateway to take the call
TRANSCRIPTION_WAIT_S = 60.0  # after the call, how long subscribers wait for its last finals


def _services(request: Request | WebSocket) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def _urls(services: Services, request: Request, connection_id: str) -> dict[str, str]:
    base = services.settings.public_url or str(request.base_url)
    base = base.rstrip("/")
    return {
        "eventUrl": f"{base}/v1/event/{connection_id}",
        "resultWebSocketUrl": base.replace("http", "ws", 1) + f"/events/{connection_id}",
    }


def _timezone_offset_min(name: str | None) -> int | None:
    if not name:
        return None
    try:
        zone = zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise TelephonyRequestError(f"unknown timezone {name!r}; use an IANA name such as \"US/Pacific\".") from exc
    offset = dt.datetime.now(zone).utcoffset() or dt.timedelta()
    return int(offset.total_seconds() // 60)


async def _connection(services: Services, app_id: str, connection_id: str) -> Connection | None:
    async with services.sessions() as session:
        return await session.scalar(
            select(Connection).where(Connection.app_id == app_id, Connection.connection_id == connection_id)
        )


async def _publish_command(services: Services, record: dict[str, Any]) -> None:
    value = TELEPHONY_COMMANDS.serde(record)
    await (await services.producer.send(TELEPHONY_COMMANDS.name, value=value, key=record["conversation_id"].encode()))


async def _start(request: Request, services: Services, app_id: str, start: ConnectStart) -> Response:
    timezone_offset_min = _timezone_offset_min(start.timezone)
    existing = await _connection(services, app_id, start.connection_id)
    if existing is not None and existing.open_streams > 0:
        raise ApiError(409, f"connectionId {start.connection_id!r} is already in a live call.")
    at = now_ms()
    joined = await join_conversation(services.sessions, app_id, start.connection_id, start.name, at)
    if not joined.created:  # lost a race with another start of the same connectionId
        await leave_conversation(services.sessions, app_id, start.connection_id, joined.conversation_id, now_ms())
        raise ApiError(409, f"connectionId {start.connection_id!r} is already in a live call.")
    conversation_id = joined.conversation_id
    publisher = AudioPublisher(services.producer)
    await publisher.event({
        "event_id": event_id(conversation_id, "CONVERSATION_STARTED", conversation_id),
        "conversation_id": conversation_id, "app_id": app_id, "type": "CONVERSATION_STARTED", "at_ms": at,
        "stream_id": None, "member": None, "name": start.name, "final_count": None,
        "attributes": {"source": "sip", "connection_id": start.connection_id, "uri": start.uri,
                       "direction": "outbound", **recipients_attribute(start.summary_emails)},
    })
    await publisher.conversation_settings(conversation_settings_record(
        conversation_id, app_id, joined.conversation_started_at_ms,
        timezone_offset_min=timezone_offset_min,
        insight_types=start.insight_types,
        inline_trackers=[InlineTracker(t.name, t.vocabulary) for t in start.trackers],
    ))
    # Answer once a SIP gateway has taken the call (its first CALL_STATUS), as Symbl answers once it dials: a stop
    # sent right after the start then finds the call placed.
    subscription = services.hub.subscribe(conversation_id)
    try:
        await _publish_command(services, start_command(start, conversation_id, app_id,
                                                       joined.conversation_started_at_ms, now_ms()))
        taken = await _first_call_status(subscription, START_ACK_TIMEOUT_S)
    finally:
        services.hub.unsubscribe(subscription)
    log.info("telephony start %s: calling %s into conversation %s%s", start.connection_id, start.uri,
             conversation_id, "" if taken else f" (no SIP gateway took it within {START_ACK_TIMEOUT_S:g} s yet)")
    return JSONResponse({"connectionId": start.connection_id, "conversationId": conversation_id,
                         **_urls(services, request, start.connection_id)})


async def _first_call_status(subscription: Subscription, timeout_s: float) -> dict[str, Any] | None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (remaining := deadline - loop.time()) > 0:
        try:
            kind, record = await asyncio.wait_for(subscription.queue.get(), remaining)
        except TimeoutError:
            return None
        if kind == "event" and record["type"] == "CALL_STATUS":
            return record
    return None


async def _stop(request: Request, services: Services, app_id: str, stop: ConnectStop) -> Response:
    connection = await _connection(services, app_id, stop.connection_id)
    if connection is None:
        raise ApiError(404, f"connectionId {stop.connection_id!r} is not known.")
    if connection.open_streams > 0:
        await _publish_command(services, stop_command(connection.conversation_id, app_id, stop.connection_id,
                                                      now_ms()))
    page = conversation_page_url(services.settings, services.tokens, app_id, connection.conversation_id,
                                 base_url=str(request.base_url))
    return JSONResponse({
        "connectionId": stop.connection_id,
        "conversationId": connection.conversation_id,
        **_urls(services, request, stop.connection_id),
        # Symbl's prebuilt summary UI: here the conversation page, by a signed link that expires.
        "summaryInfo": [{"url": page}],
    })


async def endpoint_connect(request: Request) -> Response:
    """POST /v1/endpoint:connect ``{"operation": "start" | "stop", ...}``."""
    services = _services(request)
    try:
        app_id = authenticate(request)
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise TelephonyRequestError("Request body must be a JSON object.") from None
        parsed = parse_connect_request(body)
        if isinstance(parsed, ConnectStop):
            return await _stop(request, services, app_id, parsed)
        if not services.settings.sip_enabled:
            return error_response(503, NOT_ENABLED)
        return await _start(request, services, app_id, parsed)
    except TelephonyRequestError as exc:
        return error_response(400, str(exc))
    except ApiError as exc:
        return error_response(exc.status_code, exc.message)


async def push_event(request: Request) -> Response:
    """POST /v1/event/{connectionId}: speaker events (symbl-api.md §3.3). Accepted and not used: members come from
    the call's own audio streams."""
    try:
        app_id = authenticate(request)
    except ApiError as exc:
        return error_response(exc.status_code, exc.message)
    connection_id = request.path_params["connection_id"]
    if await _connection(_services(request), app_id, connection_id) is None:
        return error_response(404, f"connectionId {connection_id!r} is not known.")
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        return error_response(400, "Request body must be a JSON object.")
    return JSONResponse({"connectionId": connection_id, "accepted": True}, status_code=202)


def transcript_response(record: dict[str, Any], is_final: bool) -> dict[str, Any]:
    """The Telephony API's live transcript (symbl-api.md §3.2): ``payload.content`` and ``isFinal``."""
    return {
        "type": "transcript_response",
        "payload": {"content": record["text"], "contentType": "text/plain"},
        "isFinal": is_final,
        "user": speaker_user(record["speaker"]),
        "id": record.get("message_id") or record.get("utterance_id"),
    }


class _TelephonySubscriber:
    """One subscriber socket: renders the conversation's records, and closes once the call's results are out."""

    def __init__(self, websocket: WebSocket, services: Services, app_id: str, connection_id: str,
                 conversation_id: str, subscription: Subscription) -> None:
        self.ws = websocket
        self.services = services
        self.app_id = app_id
        self.connection_id = connection_id
        self.conversation_id = conversation_id
        self.subscription = subscription
        self.view = LiveView(conversation_id, LiveOptions.everything())
        self.streams: set[str] = set()
        self.completing_until: float | None = None
        self.transcribed_at: float | None = None

    async def send(self, body: dict[str, Any]) -> None:
        await self.ws.send_text(json.dumps(body, separators=(",", ":")))

    def _finished(self, now: float) -> bool:
        """After the call: every stream transcribed and its finals sent, then its text results (insights, topics,
        trackers, entities) for at most RESULTS_WAIT_S more."""
        if self.completing_until is None:
            return False
        if not all(self.subscription.stream_done(s) for s in self.streams):
            return now > self.completing_until
        if self.transcribed_at is None:
            self.transcribed_at = now
        kinds = self.view.options.result_kinds()
        results = all(self.subscription.results_done(s, kinds) for s in self.streams)
        return results or now > self.transcribed_at + RESULTS_WAIT_S

    async def forward(self, kind: str, record: dict[str, Any]) -> None:
        if kind == "event":
            if record["type"] == "CALL_STATUS":
                await self.send(call_status_message(record))
            elif record["type"] == "STREAM_STARTED" and record.get("stream_id"):
                self.streams.add(record["stream_id"])
            elif record["type"] == "CONVERSATION_COMPLETED":
                # The transcriber may still be on the last words. A listener sends nothing and loses nothing by
                # waiting, so it waits longer than a streaming client does at stop_request.
                wait_s = max(self.services.settings.stop_timeout_s, TRANSCRIPTION_WAIT_S)
                self.completing_until = asyncio.get_running_loop().time() + wait_s
            return
        if kind in ("interim", "final"):
            await self.send(transcript_response(record, kind == "final"))
        for body in self.view.render(kind, record):
            if body.get("type") != "message":  # the streaming API's recognition_result envelopes
                await self.send(body)
        if kind == "final":
            self.subscription.mark_delivered(record)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        client = asyncio.create_task(self._read_client())
        try:
            while not client.done():
                if self._finished(loop.time()):
                    break
                getter = asyncio.create_task(self.subscription.queue.get())
                await asyncio.wait({getter, client}, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    continue
                kind, record = getter.result()
                await self.forward(kind, record)
            if not client.done():
                await self.send(conversation_completed(self.conversation_id))
                await self.ws.close(1000, "call ended")
        except WebSocketDisconnect:
            pass
        finally:
            client.cancel()

    async def _read_client(self) -> None:
        """Speaker events are accepted and ignored; the SDK's ``Connection.stop()`` (a stop_request on this socket)
        hangs the call up."""
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if "stop_request" in (message.get("text") or ""):
                    await _publish_command(self.services, stop_command(self.conversation_id, self.app_id,
                                                                       self.connection_id, now_ms()))


async def _refuse(websocket: WebSocket, code: int, message: str, details: str) -> None:
    await websocket.send_text(json.dumps({"type": "error", "message": message, "details": details}))
    await websocket.close(code, message)


async def telephony_subscribe(websocket: WebSocket) -> None:
    """``/session/subscribe/{connectionId}`` and ``/events/{connectionId}``: the call's live results."""
    services = _services(websocket)
    headers = {k.lower(): v for k, v in websocket.headers.items()}
    token = token_from_request(headers, dict(websocket.query_params))
    _, echoed = subprotocol_token(headers)
    await websocket.accept(subprotocol=echoed)
    try:
        app_id = services.tokens.verify(token or "")
    except InvalidToken:
        await _refuse(websocket, 4001, "Unauthorized", "Token validation failed for provided token.")
        return
    connection_id = websocket.path_params["connection_id"]
    connection = await _connection(services, app_id, connection_id)
    if connection is None:
        await _refuse(websocket, 1008, "Not found", f"no telephony connection {connection_id!r}")
        return
    conversation_id = connection.conversation_id
    subscription = services.hub.subscribe(conversation_id)  # before the liveness check: nothing falls between
    try:
        connection = await _connection(services, app_id, connection_id)
        if connection is None or connection.open_streams <= 0 or connection.conversation_id != conversation_id:
            await _replay_outcome(websocket, services, conversation_id)
            return
        await websocket.send_text(json.dumps({"type": "message", "message": {
            "type": "subscription_started", "data": {"conversationId": conversation_id,
                                                     "connectionId": connection_id}}}))
        await _TelephonySubscriber(websocket, services, app_id, connection_id, conversation_id, subscription).run()
    finally:
        services.hub.unsubscribe(subscription)


async def _replay_outcome(websocket: WebSocket, services: Services, conversation_id: str) -> None:
    """The call is over: its last status (as the store recorded it) and the completion, then close."""
    async with services.sessions() as session:
        conversation = await session.get(Conversation, conversation_id)
    telephony = ((conversation.metadata_ or {}) if conversation else {}).get("telephony") or {}
    if telephony.get("status") in FINAL_STATUSES:
        await websocket.send_text(json.dumps({"type": "call_status", **telephony, "final": True,
                                              "conversationId": conversation_id}))
    await websocket.send_text(json.dumps(conversation_completed(conversation_id)))
    await websocket.close(1000, "call ended")


def telephony_routes() -> list[BaseRoute]:
    return [
        Route("/v1/endpoint:connect", endpoint_connect, methods=["POST"]),
        Route("/v1/event/{connection_id}", push_event, methods=["POST"]),
        WebSocketRoute("/session/subscribe/{connection_id}", telephony_subscribe),
        WebSocketRoute("/events/{connection_id}", telephony_subscribe),
    ]
