"""Limits a gateway enforces, each answered with a clear error (docs/operations.md "Limits"): streams per app,
the length of a stream, the rate of control messages, and the size of REST request bodies. A replica with tiny
limits runs beside the shared stack, on its broker and database."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
import websockets

from tests.e2e.conftest import RunningStack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

LIMITS = {
    "CONVOSCOPE_MAX_STREAMS_PER_APP": "1",
    "CONVOSCOPE_MAX_STREAM_S": "2",
    "CONVOSCOPE_MAX_CONTROL_MESSAGES_PER_S": "2",
    "CONVOSCOPE_MAX_CONTROL_BURST": "5",
    "CONVOSCOPE_MAX_REQUEST_BODY_BYTES": "2048",
}
START = {"type": "start_request", "insightTypes": [], "speaker": {"name": "Limit"},
         "config": {"speechRecognition": {"encoding": "LINEAR16", "sampleRateHertz": 16000}}}
SECOND_OF_AUDIO = [b"\x00\x00" * 4000] * 4  # four 8000-byte frames


@pytest_asyncio.fixture(loop_scope="session")
async def limited(sqlite_stack: RunningStack) -> AsyncIterator[str]:
    async with sqlite_stack.extra_gateway(**LIMITS) as url:
        yield url


async def _frames_until(ws: Any, wanted: str, wait_s: float = 30) -> list[dict[str, Any]]:
    seen = []
    while True:
        body = json.loads(await asyncio.wait_for(ws.recv(), wait_s))
        seen.append(body)
        inner = (body.get("message") or {}).get("type") if body.get("type") == "message" else None
        if body.get("type") == wanted or inner == wanted:
            return seen


def _ws(base: str, token: str) -> Any:
    return websockets.connect(base.replace("http", "ws", 1) + f"/v1/streaming/{uuid.uuid4()}",
                              additional_headers={"x-api-key": token})


async def test_one_stream_per_app_then_the_next_once_it_stops(limited: str, sqlite_stack: RunningStack) -> None:
    async with _ws(limited, sqlite_stack.token) as first, _ws(limited, sqlite_stack.token) as second:
        await first.send(json.dumps(START))
        await _frames_until(first, "recognition_started")
        await second.send(json.dumps(START))
        error = (await _frames_until(second, "error"))[-1]
        assert error["message"] == "Too many streams" and "1 streams open" in error["details"]
        await first.send(json.dumps({"type": "stop_request"}))
        await _frames_until(first, "recognition_stopped")
        await second.send(json.dumps(START))  # the slot is free again
        await _frames_until(second, "recognition_started")


async def test_a_stream_stops_at_its_length_limit_with_its_results(limited: str,
                                                                   sqlite_stack: RunningStack) -> None:
    async with _ws(limited, sqlite_stack.token) as ws:
        await ws.send(json.dumps(START))
        await _frames_until(ws, "recognition_started")
        for frame in SECOND_OF_AUDIO * 3:
            await ws.send(frame)
        seen = await _frames_until(ws, "recognition_stopped")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    errors = [body for body in seen if body.get("type") == "error"]
    assert errors and errors[0]["message"] == "Limit reached" and "2 s of audio" in errors[0]["details"]
    assert any(b.get("type") == "message" and b["message"]["type"] == "conversation_completed" for b in seen)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_a_flood_of_control_messages_closes_the_connection(limited: str, sqlite_stack: RunningStack) -> None:
    async with _ws(limited, sqlite_stack.token) as ws:
        for _ in range(20):
            await ws.send("__PING__")
        answers = []
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                answers.append(await asyncio.wait_for(ws.recv(), 10))
    assert answers.count("__PONG__") <= 6  # the burst, and what the rate refilled meanwhile
    error = json.loads(next(a for a in answers if a != "__PONG__"))
    assert error["message"] == "Too many requests"
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_oversized_request_bodies_get_413(limited: str, sqlite_stack: RunningStack) -> None:
    big = {"name": "Big", "vocabulary": ["word " * 10] * 60}
    async with httpx.AsyncClient(base_url=limited, headers={"x-api-key": sqlite_stack.token}) as client:
        declared = await client.post("/v1/manage/trackers", json=big)
        assert declared.status_code == 413 and "at most 2048 bytes" in declared.json()["message"]

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams in
            payload = json.dumps(big).encode()
            for start in range(0, len(payload), 512):
                yield payload[start:start + 512]

        streamed = await client.post("/v1/manage/trackers", content=chunks(),
                                     headers={"content-type": "application/json"})
        assert streamed.status_code == 413
        small = await client.post("/v1/manage/trackers", json={"name": f"Small {uuid.uuid4().hex[:6]}",
                                                                "vocabulary": ["fine"]})
        assert small.status_code == 201
