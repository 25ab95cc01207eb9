"""Bad input on the streaming API gets a clear error (or close code) and never disturbs other connections."""

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

START = {
    "type": "start_request",
    "speaker": {"name": "Tester"},
    "config": {"speechRecognition": {"encoding": "LINEAR16", "sampleRateHertz": 16000}},
}


async def _next_json(ws: Any, wait_s: float = 10) -> dict[str, Any]:
    while True:
        frame = await asyncio.wait_for(ws.recv(), wait_s)
        if isinstance(frame, str) and frame != "__PONG__":
            return json.loads(frame)  # type: ignore[no-any-return]


async def _expect_error(ws: Any, fragment: str) -> dict[str, Any]:
    body = await _next_json(ws)
    assert body["type"] == "error", body
    assert fragment.lower() in (body["message"] + " " + body["details"]).lower(), body
    return body


async def _start(ws: Any, request: dict[str, Any] = START) -> str:
    await ws.send(json.dumps(request))
    for _ in range(3):
        body = await _next_json(ws)
        if body.get("type") == "message" and body["message"]["type"] == "recognition_started":
            return str(body["message"]["data"]["conversationId"])
    raise AssertionError("no recognition_started")


async def test_refuses_missing_and_bad_tokens(sqlite_stack: RunningStack) -> None:
    url = sqlite_stack.ws_url(str(uuid.uuid4()))
    for headers in ({}, {"x-api-key": "not-a-token"}, {"Authorization": "Bearer " + sqlite_stack.token[:-4] + "AAAA"}):
        async with websockets.connect(url, additional_headers=headers) as ws:
            await _expect_error(ws, "token")
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 4001


async def test_token_channels_symbl_sdks_use(sqlite_stack: RunningStack) -> None:
    connection = str(uuid.uuid4())
    token = sqlite_stack.token
    # Query parameter (older SDKs), Bearer header (Go SDK), and subprotocol (JS SDK ≥ 1.4.10, browsers).
    async with websockets.connect(sqlite_stack.ws_url(connection) + f"?access_token={token}") as ws:
        assert await _start(ws)
    async with websockets.connect(sqlite_stack.ws_url(connection),
                                  additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        assert await _start(ws)
    async with websockets.connect(sqlite_stack.ws_url(connection), subprotocols=[token]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == token
        assert await _start(ws)


async def test_control_message_errors_keep_the_connection_usable(sqlite_stack: RunningStack) -> None:
    url = sqlite_stack.ws_url(str(uuid.uuid4()))
    async with websockets.connect(url, additional_headers={"x-api-key": sqlite_stack.token}) as ws:
        await ws.send("__PING__")
        assert await asyncio.wait_for(ws.recv(), 5) == "__PONG__"
        await ws.send(b"\x00\x01" * 100)
        await _expect_error(ws, "before start_request")
        await ws.send("{not json")
        await _expect_error(ws, "not valid JSON")
        await ws.send(json.dumps({"type": "dance_request"}))
        await _expect_error(ws, "unknown message type")
        await ws.send(json.dumps({"type": "start_request", "config": {"speechRecognition": {
            "encoding": "OPUS", "sampleRateHertz": 48000}}}))
        await _expect_error(ws, "Unsupported encoding")
        await ws.send(json.dumps({"type": "start_request", "config": {"speechRecognition": {
            "encoding": "LINEAR16", "sampleRateHertz": 96000}}}))
        await _expect_error(ws, "sampleRateHertz")
        await ws.send(json.dumps({"type": "start_request", "config": {"speechRecognition": {
            "encoding": "MULAW", "sampleRateHertz": 16000}}}))
        await _expect_error(ws, "MULAW")
        await ws.send(json.dumps({**START, "speaker": "nobody"}))
        await _expect_error(ws, "speaker")
        # After all that, a proper session still works, including the Python SDK's non-JSON stop.
        conversation_id = await _start(ws)
        await ws.send(b"\x00\x00" * 1600)
        await ws.send(str({"type": "stop_request"}))
        kinds = []
        while True:
            body = await _next_json(ws, wait_s=40)
            if body.get("type") == "message":
                kinds.append(body["message"]["type"])
                if body["message"]["type"] == "conversation_completed":
                    assert body["message"]["data"]["conversationId"] == conversation_id
                if body["message"]["type"] == "recognition_stopped":
                    break
        assert kinds[-2:] == ["conversation_completed", "recognition_stopped"]


async def test_oversized_frame_closes_with_1009_and_others_keep_streaming(
    sqlite_stack: RunningStack, meeting: Meeting
) -> None:
    async def abuser() -> int | None:
        url = sqlite_stack.ws_url(str(uuid.uuid4()))
        async with websockets.connect(url, additional_headers={"x-api-key": sqlite_stack.token}) as ws:
            await _start(ws)
            await ws.send(b"\x00" * 8193)
            await _expect_error(ws, "8192")
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            return ws.close_code

    async def fuzzer() -> None:
        url = sqlite_stack.ws_url(str(uuid.uuid4()))
        async with websockets.connect(url, additional_headers={"x-api-key": sqlite_stack.token}) as ws:
            for garbage in ("", "null", "[1,2]", '{"type": 5}', "{'type': 'start_request', 'config': 3}",
                            '{"type":"start_request","insightTypes":"question"}', "x" * 300_000):
                await ws.send(garbage)
                assert (await _next_json(ws))["type"] == "error"

    short = Meeting(utterances=meeting.utterances[:1], tracks={
        name: track[: int(meeting.utterances[0].end_s * 16000) + 16000] for name, track in meeting.tracks.items()
    })
    good, code, _ = await asyncio.gather(sqlite_stack.stream_meeting(short), abuser(), fuzzer())
    assert code == 1009
    assert any("morning" in m["payload"]["content"].lower() for m in good[0].final_messages())
