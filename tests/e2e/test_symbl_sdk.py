"""The official Symbl Python SDK (symbl 2.0.6), pointed at convoscope, runs a streaming session unchanged."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
import pytest
import soxr

from convoscope.evaluation import word_error_rate
from convoscope.synth import Meeting
from tests.e2e.conftest import RunningStack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

SDK_RATE_HZ = 44_100  # the SDK's default sampleRateHertz
SDK_CHUNK_SAMPLES = 4096  # what send_audio_from_mic sends: 8192-byte frames


def _point_sdk_at(base_url: str) -> Any:
    symbl = pytest.importorskip("symbl")
    import symbl.AuthenticationToken as auth
    import symbl.streaming_api.StreamingApi as streaming_api
    from symbl_rest.configuration import Configuration

    configuration = Configuration()
    configuration.host = base_url
    Configuration.set_default(configuration)
    auth.configuration = None  # forget any token from another test
    ws_base = base_url.replace("http", "ws", 1)
    streaming_api.SYMBL_STREAMING_API_FORMAT = ws_base + "/v1/realtime/insights/{}?source=python_sdk"
    return symbl


def _run_sdk_session(running: RunningStack, pcm_44k: bytes) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Any]:
    symbl = _point_sdk_at(running.base_url)
    finals: list[dict[str, Any]] = []
    envelopes: list[dict[str, Any]] = []
    completed = threading.Event()

    def on_message(envelope: dict[str, Any]) -> None:
        envelopes.append(envelope)
        if envelope["message"]["type"] == "conversation_completed":
            completed.set()

    connection = symbl.Streaming.start_connection(
        credentials={"app_id": running.app_id, "app_secret": running.app_secret},
        speaker={"name": "Alice", "userId": "alice@example.com"},
        insight_types=["question", "action_item"],
        config={"meetingTitle": "SDK call"},
    )
    connection.subscribe({"message_response": finals.append, "message": on_message})
    chunk_bytes = SDK_CHUNK_SAMPLES * 2
    started = time.monotonic()
    for index, offset in enumerate(range(0, len(pcm_44k), chunk_bytes)):
        time.sleep(max(0.0, started + index * SDK_CHUNK_SAMPLES / SDK_RATE_HZ - time.monotonic()))
        connection.send_audio(pcm_44k[offset : offset + chunk_bytes])
    connection.stop()  # sends str({'type': 'stop_request'}), which is not JSON
    assert completed.wait(60), "no conversation_completed after the SDK's stop()"
    return finals, envelopes, connection


async def test_official_python_sdk_streams_and_reads_back(sqlite_stack: RunningStack, short_meeting: Meeting) -> None:
    track = short_meeting.tracks["Alice"].astype(np.int16)
    pcm_44k = soxr.resample(track, 16_000, SDK_RATE_HZ).astype("<i2").tobytes()
    finals, envelopes, connection = await asyncio.to_thread(_run_sdk_session, sqlite_stack, pcm_44k)

    assert finals, "the SDK's message_response callback never fired"
    heard = " ".join(m["payload"]["content"] for response in finals for m in response["messages"])
    said = " ".join(u.text for u in short_meeting.utterances if u.speaker == "Alice")
    assert word_error_rate([said], [heard]) <= 0.15, heard
    assert any(e["message"]["type"] == "recognition_result" for e in envelopes)
    # The SDK learned the conversation id from conversation_created and can query the Conversation API.
    conversation_id = connection.conversation.get_conversation_id()
    assert conversation_id and conversation_id.isdigit()
    await sqlite_stack.stored_messages(conversation_id, sum(len(r["messages"]) for r in finals))
    stored = await asyncio.to_thread(connection.conversation.get_messages)
    texts = [m.text for m in stored.messages]
    assert texts and word_error_rate([said], [" ".join(texts)]) <= 0.15
