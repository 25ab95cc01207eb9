"""A streaming-API client: sends audio in real time and collects every message the server sends back."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets

__all__ = ["ReceivedMessage", "StreamError", "StreamResult", "fetch_token", "stream_pcm"]

DEFAULT_CHUNK_MS = 100
MAX_FRAME_BYTES = 8192  # the streaming API's limit per binary frame


class StreamError(RuntimeError):
    """The server refused or broke off the stream."""


@dataclass(frozen=True)
class ReceivedMessage:
    at_s: float  # seconds since the first audio chunk was sent
    body: dict[str, Any]


@dataclass
class StreamResult:
    conversation_id: str | None = None
    audio_origin_epoch_s: float = 0.0  # wall-clock time of the first audio sample
    messages: list[ReceivedMessage] = field(default_factory=list)
    close_code: int | None = None

    def of_type(self, kind: str) -> list[ReceivedMessage]:
        """Top-level type, or the inner type of a ``message`` envelope."""
        found = []
        for received in self.messages:
            body = received.body
            inner = body.get("message", {}).get("type") if body.get("type") == "message" else None
            if body.get("type") == kind or inner == kind:
                found.append(received)
        return found

    def final_messages(self) -> list[dict[str, Any]]:
        return [m for r in self.of_type("message_response") for m in r.body["messages"]]


async def fetch_token(base_url: str, app_id: str, app_secret: str) -> str:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        response = await client.post(
            "/oauth2/token:generate", json={"type": "application", "appId": app_id, "appSecret": app_secret}
        )
    if response.status_code != 200:
        raise StreamError(f"token request failed ({response.status_code}): {response.text}")
    return str(response.json()["accessToken"])


async def stream_pcm(
    ws_url: str,
    token: str,
    pcm: bytes,
    *,
    sample_rate_hz: int = 16_000,
    bytes_per_sample: int = 2,
    speaker: dict[str, str] | None = None,
    start_request: dict[str, Any] | None = None,
    chunk_ms: int = DEFAULT_CHUNK_MS,
    realtime: bool = True,
    start_at: float | None = None,
    on_message: Callable[[ReceivedMessage], None] | None = None,
    stop_timeout_s: float = 60.0,
) -> StreamResult:
    """Stream ``pcm`` (LINEAR16 unless ``start_request`` says otherwise) to ``ws_url`` (…/v1/streaming/{id}).

    Frames carry ``chunk_ms`` of audio, fewer if that would exceed the API's 8192-byte frame limit.

    ``start_at`` (a ``time.monotonic()`` value) lines several concurrent streams up on one clock.
    """
    result = StreamResult()
    request = {
        "type": "start_request",
        "insightTypes": [],
        "config": {"speechRecognition": {"encoding": "LINEAR16", "sampleRateHertz": sample_rate_hz}},
        "speaker": speaker or {},
    }
    request.update(start_request or {})
    started = asyncio.Event()
    completed = asyncio.Event()
    clock_origin = start_at if start_at is not None else time.monotonic()

    async with websockets.connect(ws_url, additional_headers={"x-api-key": token}, max_size=2**22) as ws:

        async def receive() -> None:
            async for frame in ws:
                if not isinstance(frame, str) or frame == "__PONG__":
                    continue
                received = ReceivedMessage(time.monotonic() - clock_origin, json.loads(frame))
                result.messages.append(received)
                if on_message:
                    on_message(received)
                body = received.body
                if body.get("type") == "error" and not started.is_set():
                    raise StreamError(f"{body.get('message')}: {body.get('details')}")
                inner = body.get("message", {}) if body.get("type") == "message" else {}
                if inner.get("type") == "recognition_started":
                    result.conversation_id = inner["data"]["conversationId"]
                    started.set()
                elif inner.get("type") == "conversation_completed":
                    completed.set()

        receiver = asyncio.create_task(receive())
        await ws.send(json.dumps(request))
        waiter = asyncio.create_task(started.wait())
        await asyncio.wait({receiver, waiter}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if receiver.done():
            receiver.result()  # raises the server's error
        if not started.is_set():
            waiter.cancel()
            raise StreamError("no recognition_started within 30 s")

        bytes_per_second = sample_rate_hz * bytes_per_sample
        chunk_bytes = min(MAX_FRAME_BYTES, bytes_per_second * chunk_ms // 1000)
        chunk_bytes -= chunk_bytes % bytes_per_sample
        if start_at is not None:
            await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        else:
            clock_origin = time.monotonic()
        result.audio_origin_epoch_s = time.time() - (time.monotonic() - clock_origin)
        for offset in range(0, len(pcm), chunk_bytes):
            if realtime:
                # The chunk is sent once the audio in it has been "spoken".
                due = clock_origin + min(len(pcm), offset + chunk_bytes) / bytes_per_second
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            await ws.send(pcm[offset : offset + chunk_bytes])
        await ws.send(json.dumps({"type": "stop_request"}))
        try:
            await asyncio.wait_for(completed.wait(), stop_timeout_s)
            await asyncio.wait_for(receiver, 10)
        except TimeoutError as exc:
            raise StreamError("no conversation_completed after stop_request") from exc
        finally:
            receiver.cancel()
        result.close_code = ws.close_code
    return result
