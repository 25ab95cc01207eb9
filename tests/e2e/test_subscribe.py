"""The Subscribe API: a listen-only client of a live conversation sees what the speakers' clients see."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
import websockets

from convoscope.synth import Meeting
from tests.e2e.conftest import RunningStack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


async def test_listener_receives_the_live_conversation(sqlite_stack: RunningStack, short_meeting: Meeting) -> None:
    connection_id = str(uuid.uuid4())
    call = asyncio.create_task(sqlite_stack.stream_meeting(short_meeting, connection_id=connection_id))
    await asyncio.sleep(2.0)  # the speakers have joined
    heard: list[dict[str, Any]] = []
    url = sqlite_stack.ws_url(connection_id, path="/v1/subscribe/")
    async with websockets.connect(url, additional_headers={"x-api-key": sqlite_stack.token}) as ws:
        async for frame in ws:
            body = json.loads(frame)
            heard.append(body)
            if body.get("type") == "message" and body["message"]["type"] == "conversation_completed":
                break
    speakers = await call
    inner = [b["message"]["type"] for b in heard if b.get("type") == "message"]
    assert inner[0] == "subscription_started"
    assert heard[0]["message"]["data"]["conversationId"] == speakers[0].conversation_id
    listened = {m["id"] for b in heard if b.get("type") == "message_response" for m in b["messages"]}
    spoken = {m["id"] for m in speakers[0].final_messages()}
    assert listened and listened <= spoken
    # Everything said after the listener joined reached it (the first utterance may predate it).
    assert len(spoken - listened) <= 1

    async with websockets.connect(sqlite_stack.ws_url("no-such-call", path="/v1/subscribe/"),
                                  additional_headers={"x-api-key": sqlite_stack.token}) as ws:
        body = json.loads(await ws.recv())
        assert body["type"] == "error" and "no live connection" in body["details"]
