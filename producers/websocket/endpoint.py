"""WebSocket routes of the Streaming API (both Symbl paths) and the read-only Subscribe API."""

from __future__ import annotations

import json
import logging
import re

from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket

from convoscope.auth import InvalidToken, subprotocol_token, token_from_request
from convoscope.kafka import new_trace_id
from convoscope.logs import bind_log_context
from convoscope.registry import live_conversation_id
from convoscope.services import Services
from producers.websocket.session import CloseCode, StreamingSession
from sinks.live.relay import relay_conversation

__all__ = ["streaming_routes"]

log = logging.getLogger(__name__)

# Symbl accepts UUIDs, base64 (the Python SDK's ids end in '='), and hex strings.
CONNECTION_ID = re.compile(r"^[A-Za-z0-9_=+\-]{1,128}$")


async def _authenticate(websocket: WebSocket) -> tuple[str, str | None] | None:
    """Accepts the socket and returns (app_id, connection_id), or explains the refusal and closes."""
    services: Services = websocket.app.state.services
    headers = {k.lower(): v for k, v in websocket.headers.items()}
    token = token_from_request(headers, dict(websocket.query_params))
    # Browsers can only send the token as a subprotocol; the handshake fails unless we echo it.
    _, echoed = subprotocol_token(headers)
    await websocket.accept(subprotocol=echoed)
    connection_id = websocket.path_params.get("connection_id", "")
    if token is None:
        await _refuse(websocket, "Unauthorized", "no access token: send it as the x-api-key header, "
                      "Authorization: Bearer, or ?access_token=")
        return None
    try:
        app_id = services.tokens.verify(token)
    except InvalidToken:
        await _refuse(websocket, "Unauthorized", "Token validation failed for provided token.")
        return None
    if not CONNECTION_ID.match(connection_id):
        await websocket.send_text(json.dumps({
            "type": "error", "message": "Bad request",
            "details": "connectionId must be 1-128 characters of letters, digits, '-', '_', '=' or '+'",
        }))
        await websocket.close(1008, "invalid connectionId")
        return None
    return app_id, connection_id


async def _refuse(websocket: WebSocket, message: str, details: str) -> None:
    await websocket.send_text(json.dumps({"type": "error", "message": message, "details": details}))
    await websocket.close(CloseCode.UNAUTHORIZED, message)


async def streaming_endpoint(websocket: WebSocket) -> None:
    identity = await _authenticate(websocket)
    if identity is None:
        return
    app_id, connection_id = identity
    # This task serves one connection: its log lines and the records it produces carry these ids.
    bind_log_context(connection_id=connection_id, trace_id=new_trace_id())
    session = StreamingSession(websocket, websocket.app.state.services, app_id, connection_id or "")
    await session.run()


async def subscribe_endpoint(websocket: WebSocket) -> None:
    """Listen-only view of a live connection: every frame the speakers' clients get, nothing sent."""
    identity = await _authenticate(websocket)
    if identity is None:
        return
    app_id, connection_id = identity
    services: Services = websocket.app.state.services
    conversation_id = await live_conversation_id(services.sessions, app_id, connection_id or "")
    if conversation_id is None:
        await websocket.send_text(json.dumps({
            "type": "error", "message": "Not found", "details": f"no live connection {connection_id!r}",
        }))
        await websocket.close(1008, "unknown connectionId")
        return

    async def announce() -> None:
        await websocket.send_text(json.dumps({"type": "message", "message": {
            "type": "subscription_started", "data": {"conversationId": conversation_id}}}))

    await relay_conversation(websocket, services.hub, conversation_id, announce)


def streaming_routes() -> list[BaseRoute]:
    return [
        WebSocketRoute("/v1/streaming/{connection_id}", streaming_endpoint),
        WebSocketRoute("/v1/realtime/insights/{connection_id}", streaming_endpoint),
        WebSocketRoute("/v1/subscribe/{connection_id}", subscribe_endpoint),
    ]
