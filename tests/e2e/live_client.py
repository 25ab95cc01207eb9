"""A raw streaming client for fault tests and benches: speaks in real time and keeps everything it received."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import websockets

from convoscope.synth import SAMPLE_RATE_HZ

__all__ = ["LiveClient", "live_client", "occurrences", "words"]

CHUNK_MS = 100


def words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def occurrences(stored: list[dict[str, Any]], sentence: str) -> int:
    """Messages that carry most of ``sentence``'s words (ASR may miss one or two)."""
    wanted = set(words(sentence))
    return sum(1 for message in stored if len(wanted & set(words(message["text"]))) >= 0.6 * len(wanted))


@dataclass
class LiveClient:
    """One raw streaming connection: what it received and how it was closed."""

    ws: websockets.ClientConnection
    received: list[dict[str, Any]] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.received if m.get("type") == kind or m.get("message", {}).get("type") == kind]

    def heard(self) -> str:
        return " ".join(m["payload"]["content"] for body in self.of_type("message_response")
                        for m in body["messages"])

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} within {timeout_s:g} s; received {self.received[-5:]}")
            await asyncio.sleep(0.1)

    async def speak(self, pcm: bytes) -> None:
        """Real time, CHUNK_MS frames."""
        step = SAMPLE_RATE_HZ * 2 * CHUNK_MS // 1000
        started = time.monotonic()
        for index, offset in enumerate(range(0, len(pcm), step)):
            await asyncio.sleep(max(0.0, started + index * CHUNK_MS / 1000 - time.monotonic()))
            await self.ws.send(pcm[offset:offset + step])


@contextlib.asynccontextmanager
async def live_client(ws_url: str, token: str, *, no_connection_timeout_s: int = 0) -> AsyncIterator[LiveClient]:
    async with websockets.connect(ws_url, additional_headers={"x-api-key": token}) as ws:
        client = LiveClient(ws)

        async def read() -> None:
            with contextlib.suppress(websockets.ConnectionClosed):
                async for frame in ws:
                    if isinstance(frame, str) and frame.startswith("{"):
                        client.received.append(json.loads(frame))

        client.reader = asyncio.create_task(read())
        await ws.send(json.dumps({
            "type": "start_request", "insightTypes": [], "noConnectionTimeout": no_connection_timeout_s,
            "speaker": {"name": "Dana", "userId": "dana@example.com"},
            "config": {"speechRecognition": {"encoding": "LINEAR16", "sampleRateHertz": SAMPLE_RATE_HZ}},
        }))
        await client.wait_for(lambda: bool(client.of_type("recognition_started")), 30, "no recognition_started")
        try:
            yield client
        finally:
            client.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await client.reader
