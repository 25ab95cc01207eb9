"""Faults under a live call: a gateway replica killed with -9, and the broker stalled (SIGSTOP) while clients stream.

What a client and the store must see: every utterance the gateway accepted before the fault is stored exactly once,
the conversation completes, a client reconnecting to its connectionId on another replica continues the same
conversation, and a stall longer than the gateway's budget ends in a clear error and close code 1013.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest
import websockets

from convoscope.synth import SAMPLE_RATE_HZ, speak
from tests.e2e.conftest import RunningStack
from tests.e2e.live_client import LiveClient, live_client, occurrences, words

pytestmark = pytest.mark.asyncio(loop_scope="session")

LEASE_S = "3"
FIRST = "The blue invoice arrives on Monday morning."
SECOND = "Please call the warehouse before noon tomorrow."
THIRD = "Our driver will collect the boxes at the gate."


def _clip(text: str, pause_s: float = 1.5) -> bytes:
    pcm = speak(text, "en-us+m3")
    return np.concatenate([pcm, np.zeros(int(pause_s * SAMPLE_RATE_HZ), dtype=np.int16)]).astype("<i2").tobytes()


def _conversation_id(client: LiveClient) -> str:
    return str(client.of_type("recognition_started")[0]["message"]["data"]["conversationId"])


async def _completed_conversation(stack: RunningStack, conversation_id: str, timeout_s: float = 60.0
                                  ) -> dict[str, Any]:
    """The conversation once the store has its end (CONVERSATION_COMPLETED went out)."""
    deadline = time.monotonic() + timeout_s
    async with stack.api() as api:
        while time.monotonic() < deadline:
            response = await api.get(f"/v1/conversations/{conversation_id}")
            if response.status_code == 200 and response.json().get("endTime") is not None:
                return dict(response.json())
            await asyncio.sleep(0.5)
    raise AssertionError(f"conversation {conversation_id} was never completed")


def _kill_9(stack: RunningStack, url: str) -> None:
    stack.gateway_processes[url].send_signal(signal.SIGKILL)


async def test_killed_gateway_client_continues_on_another_replica(sqlite_stack: RunningStack) -> None:
    connection_id = str(uuid.uuid4())
    first, second = _clip(FIRST), _clip(SECOND)
    async with sqlite_stack.extra_gateway(CONVOSCOPE_STREAM_LEASE_S=LEASE_S) as doomed_url:
        doomed_ws = doomed_url.replace("http", "ws", 1) + f"/v1/streaming/{connection_id}"
        async with live_client(doomed_ws, sqlite_stack.token, no_connection_timeout_s=60) as before:
            await before.speak(first)
            # Its final reached the client: the gateway had accepted that audio.
            await before.wait_for(lambda: "invoice" in before.heard().lower(), 30, "no final for the first line")
            conversation_id = _conversation_id(before)
            _kill_9(sqlite_stack, doomed_url)
            await before.wait_for(lambda: before.reader is not None and before.reader.done(), 10,
                                  "the killed gateway's socket did not close")

    # The client reconnects to the same connection id, through the surviving replica.
    async with live_client(sqlite_stack.ws_url(connection_id), sqlite_stack.token) as after:
        assert _conversation_id(after) == conversation_id, "the reconnect did not continue the conversation"
        await after.speak(second)
        await after.ws.send(json.dumps({"type": "stop_request"}))
        await after.wait_for(lambda: bool(after.of_type("conversation_completed")), 60, "no conversation_completed")

    # The killed replica's stream is ended by the survivor once its lease runs out; then the conversation completes.
    conversation = await _completed_conversation(sqlite_stack, conversation_id)
    stored = await sqlite_stack.stored_messages(conversation_id, 2, timeout_s=30)
    assert occurrences(stored, FIRST) == 1, [m["text"] for m in stored]
    assert occurrences(stored, SECOND) == 1, [m["text"] for m in stored]
    assert conversation["endTime"] >= conversation["startTime"]


async def test_killed_gateway_mid_sentence_keeps_what_was_said(sqlite_stack: RunningStack) -> None:
    """No reconnect: the stream is ended for the dead replica, with the words that reached the broker."""
    connection_id = str(uuid.uuid4())
    first, second = _clip(FIRST), _clip(SECOND, pause_s=0)
    async with sqlite_stack.extra_gateway(CONVOSCOPE_STREAM_LEASE_S=LEASE_S) as doomed_url:
        doomed_ws = doomed_url.replace("http", "ws", 1) + f"/v1/streaming/{connection_id}"
        async with live_client(doomed_ws, sqlite_stack.token) as client:
            await client.speak(first)
            # Most of the second sentence, then the gateway dies mid-word: no END, no stop_request.
            await client.speak(second[: int(len(second) * 0.8) // 2 * 2])
            await asyncio.sleep(0.5)  # what the gateway read reaches the broker (its linger is milliseconds)
            conversation_id = _conversation_id(client)
            _kill_9(sqlite_stack, doomed_url)

    await _completed_conversation(sqlite_stack, conversation_id)
    stored = await sqlite_stack.stored_messages(conversation_id, 2, timeout_s=30)
    texts = [m["text"] for m in stored]
    assert occurrences(stored, FIRST) == 1, texts
    # The cut sentence is finalised from the audio that reached the broker: its opening words are there, once.
    opening = set(words(SECOND)[:4])
    cut = [t for t in texts if len(opening & set(words(t))) >= 2]
    assert len(cut) == 1, texts


async def _peak_buffered_bytes(url: str, stop: asyncio.Event) -> float:
    peak = 0.0
    async with httpx.AsyncClient(base_url=url, timeout=2) as client:
        while not stop.is_set():
            with contextlib.suppress(httpx.HTTPError):
                text = (await client.get("/metrics")).text
                for line in text.splitlines():
                    if line.startswith("convoscope_gateway_buffered_bytes "):
                        peak = max(peak, float(line.split()[1]))
            await asyncio.sleep(0.2)
    return peak


@contextlib.asynccontextmanager
async def stalled_broker(stack: RunningStack) -> AsyncIterator[None]:
    assert stack.stack.broker is not None and stack.stack.broker.process is not None
    pid = stack.stack.broker.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


BUDGET_BYTES = 256 * 1024


async def test_ten_second_broker_stall_loses_nothing(sqlite_stack: RunningStack) -> None:
    """The stall is absorbed: the gateway buffers within its budget, holds the client back, and catches up."""
    connection_id = str(uuid.uuid4())
    lines = [_clip(FIRST), _clip(SECOND), _clip(THIRD)]
    async with sqlite_stack.extra_gateway(CONVOSCOPE_GATEWAY_BUFFER_BYTES=str(BUDGET_BYTES),
                                          CONVOSCOPE_BROKER_STALL_TIMEOUT_S="25") as url:
        ws_url = url.replace("http", "ws", 1) + f"/v1/streaming/{connection_id}"
        stop_watching = asyncio.Event()
        watcher = asyncio.create_task(_peak_buffered_bytes(url, stop_watching))
        async with live_client(ws_url, sqlite_stack.token) as client:
            await client.speak(lines[0])
            speaking = asyncio.create_task(client.speak(lines[1] + lines[2]))
            async with stalled_broker(sqlite_stack):
                await asyncio.sleep(10)
            await speaking
            await client.ws.send(json.dumps({"type": "stop_request"}))
            await client.wait_for(lambda: bool(client.of_type("conversation_completed")), 90,
                                  "no conversation_completed after the stall")
            conversation_id = _conversation_id(client)
        stop_watching.set()
        peak = await watcher
    assert not client.of_type("error"), client.of_type("error")
    assert 0 < peak <= BUDGET_BYTES, f"buffered {peak:.0f} bytes at the peak, budget {BUDGET_BYTES}"
    stored = await sqlite_stack.stored_messages(conversation_id, 3, timeout_s=60)
    for line in (FIRST, SECOND, THIRD):
        assert occurrences(stored, line) == 1, (line, [m["text"] for m in stored])


async def test_stall_beyond_the_budget_is_a_clear_error(sqlite_stack: RunningStack) -> None:
    connection_id = str(uuid.uuid4())
    first, second = _clip(FIRST), _clip(SECOND)
    async with sqlite_stack.extra_gateway(CONVOSCOPE_BROKER_STALL_TIMEOUT_S="2",
                                          CONVOSCOPE_STREAM_LEASE_S=LEASE_S) as url:
        ws_url = url.replace("http", "ws", 1) + f"/v1/streaming/{connection_id}"
        async with live_client(ws_url, sqlite_stack.token) as client:
            await client.speak(first)
            await client.wait_for(lambda: "invoice" in client.heard().lower(), 30, "no final for the first line")
            conversation_id = _conversation_id(client)
            async with stalled_broker(sqlite_stack):
                with contextlib.suppress(websockets.ConnectionClosed):
                    await client.speak(second)
                await client.wait_for(lambda: client.reader is not None and client.reader.done(), 15,
                                      "the gateway kept the connection open through the stall")
            errors = client.of_type("error")
            close_code = client.ws.close_code
        assert close_code == 1013, close_code
        assert errors and errors[-1]["message"] == "Service unavailable", errors
        assert "accepted no audio for 2 s" in errors[-1]["details"], errors[-1]
        assert "reconnect with the same connectionId" in errors[-1]["details"], errors[-1]

        # What the broker had accepted is kept, and the conversation is completed for the closed stream.
        await _completed_conversation(sqlite_stack, conversation_id, timeout_s=90)
        stored = await sqlite_stack.stored_messages(conversation_id, 1, timeout_s=30)
        assert occurrences(stored, FIRST) == 1, [m["text"] for m in stored]
