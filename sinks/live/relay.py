"""Relaying one conversation's live results to a listen-only WebSocket (the Subscribe API, the conversation
page): every kind of result in Symbl's streaming shapes, until the client leaves."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable

from starlette.websockets import WebSocket, WebSocketDisconnect

from sinks.live.hub import ResultsHub
from sinks.live.symbl_format import conversation_completed
from sinks.live.view import LiveOptions, LiveView

__all__ = ["relay_conversation"]


async def relay_conversation(websocket: WebSocket, hub: ResultsHub, conversation_id: str,
                             on_subscribed: Callable[[], Awaitable[None]] | None = None) -> None:
    """Subscribe first, then run ``on_subscribed`` (e.g. send what is already stored: anything finalised after it
    still arrives through the subscription), then forward results until the client disconnects."""
    subscription = hub.subscribe(conversation_id)
    view = LiveView(conversation_id, LiveOptions.everything())

    async def drain_client() -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass

    watcher = asyncio.create_task(drain_client())
    try:
        if on_subscribed is not None:
            await on_subscribed()
        while not watcher.done():
            getter = asyncio.create_task(subscription.queue.get())
            await asyncio.wait({getter, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                break
            kind, record = getter.result()
            for body in view.render(kind, record):
                await websocket.send_text(json.dumps(body))
            if kind == "event" and record["type"] == "CONVERSATION_COMPLETED":
                await websocket.send_text(json.dumps(conversation_completed(conversation_id)))
    except WebSocketDisconnect:
        pass
    finally:
        watcher.cancel()
        hub.unsubscribe(subscription)
