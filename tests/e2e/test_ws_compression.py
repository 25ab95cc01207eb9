"""WebSocket compression (permessage-deflate) is off unless the operator turns it on: a client that offers it, as
browsers and the `websockets` library do, streams uncompressed by default, and compressed when the gateway runs with
CONVOSCOPE_WS_COMPRESSION=true. Either way the stream works."""

from __future__ import annotations

import json
import uuid

import pytest
import websockets

from tests.e2e.conftest import RunningStack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

START = {"type": "start_request", "speaker": {"name": "Cleo"},
         "config": {"speechRecognition": {"encoding": "LINEAR16", "sampleRateHertz": 16000}}}


async def negotiated_extensions(ws_url: str, token: str) -> str | None:
    """Streams a short call, offering permessage-deflate; returns the extensions the gateway accepted."""
    async with websockets.connect(ws_url, additional_headers={"x-api-key": token},
                                  compression="deflate") as ws:
        await ws.send(json.dumps(START))
        first = json.loads(await ws.recv())
        assert first["type"] == "message"
        await ws.send(bytes(3200))  # 100 ms of silence
        await ws.send(json.dumps({"type": "stop_request"}))
        async for raw in ws:
            if json.loads(raw).get("message", {}).get("type") == "conversation_completed":
                break
        else:
            pytest.fail("the stream closed before conversation_completed")
        assert ws.response is not None
        return ws.response.headers.get("Sec-WebSocket-Extensions")


async def test_compression_is_off_by_default(sqlite_stack: RunningStack) -> None:
    extensions = await negotiated_extensions(sqlite_stack.ws_url(str(uuid.uuid4())), sqlite_stack.token)
    assert extensions is None


async def test_compression_when_turned_on(sqlite_stack: RunningStack) -> None:
    async with sqlite_stack.extra_gateway(CONVOSCOPE_WS_COMPRESSION="true") as url:
        ws_url = url.replace("http", "ws", 1) + f"/v1/streaming/{uuid.uuid4()}"
        extensions = await negotiated_extensions(ws_url, sqlite_stack.token)
    assert extensions is not None and "permessage-deflate" in extensions
