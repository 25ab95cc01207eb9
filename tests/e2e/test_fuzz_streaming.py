"""The streaming WebSocket under property-based fuzzing (hypothesis): any mix of malformed JSON, wrong types,
huge or odd strings, unknown message types, and binary garbage before or after a start gets clear errors or normal
answers. The gateway never fails with an internal error, always still answers a ping, and real sessions work
afterwards."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.conftest import RunningStack

pytestmark = [pytest.mark.e2e]

MESSAGE_TYPES = ("start_request", "stop_request", "modify_request", "dance_request", "", None, 7)
# What a server may close a fuzzed connection with: a normal stop, a limit (1008), an oversized frame (1009).
EXPECTED_CLOSES = {1000, 1008, 1009}
KNOWN_FRAME_TYPES = {"message", "error", "message_response", "insight_response", "topic_response",
                     "tracker_response", "entity_response", "analytics_response"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
audio_formats = st.fixed_dictionaries({}, optional={
    "encoding": st.sampled_from(["LINEAR16", "MULAW", "OPUS", "linear16", ""]) | json_values,
    "sampleRateHertz": st.sampled_from([8000, 16000, 44100, 48000, 0, -1, 96000]) | json_values,
})
control_messages = st.fixed_dictionaries({"type": st.sampled_from(MESSAGE_TYPES)}, optional={
    "config": st.fixed_dictionaries({}, optional={"speechRecognition": audio_formats | json_values,
                                                  "meetingTitle": json_values, "trackers": json_values,
                                                  "timezoneOffset": json_values}) | json_values,
    "speaker": st.fixed_dictionaries({}, optional={"name": json_values, "userId": json_values}) | json_values,
    "insightTypes": st.lists(st.sampled_from(["question", "action_item", "topic", "nonsense"])) | json_values,
    "trackers": json_values,
    "actions": json_values,
    "noConnectionTimeout": json_values,
    "disconnectOnStopRequest": json_values,
})
client_frames = st.one_of(
    control_messages.map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=300),  # not JSON, or not an object
    st.binary(max_size=2048),  # audio or garbage, before or after a start
    st.just("x" * 300_000),  # a huge control message
)


async def _exchange(stack: RunningStack, frames: list[str | bytes]) -> None:
    url = stack.ws_url(str(uuid.uuid4()))
    async with websockets.connect(url, additional_headers={"x-api-key": stack.token}, max_size=2**22) as ws:
        try:
            for frame in frames:
                await ws.send(frame)
            await ws.send("__PING__")
            while True:
                reply = await asyncio.wait_for(ws.recv(), 20)
                if reply == "__PONG__":
                    return
                body = json.loads(reply)
                assert body.get("type") in KNOWN_FRAME_TYPES, body
                if body["type"] == "error":
                    assert isinstance(body["message"], str) and body["message"]
                    assert isinstance(body["details"], str)
                    assert "Internal" not in body["message"], body
        except websockets.ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code in EXPECTED_CLOSES, closed


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(frames=st.lists(client_frames, min_size=1, max_size=12))
def test_fuzzed_client_frames_get_clear_answers(sqlite_stack: RunningStack, frames: list[Any]) -> None:
    asyncio.run(_exchange(sqlite_stack, frames))


def test_the_gateway_is_healthy_and_streams_after_the_fuzzing(sqlite_stack: RunningStack) -> None:
    assert httpx.get(sqlite_stack.base_url + "/healthz").status_code == 200

    async def session() -> list[str]:
        kinds = []
        async with websockets.connect(sqlite_stack.ws_url(str(uuid.uuid4())),
                                      additional_headers={"x-api-key": sqlite_stack.token}) as ws:
            await ws.send(json.dumps({"type": "start_request", "speaker": {"name": "After"}, "config": {
                "speechRecognition": {"encoding": "LINEAR16", "sampleRateHertz": 16000}}}))
            await ws.send(b"\x00\x00" * 4000)
            await ws.send(json.dumps({"type": "stop_request"}))
            while "recognition_stopped" not in kinds:
                body = json.loads(await asyncio.wait_for(ws.recv(), 40))
                if body.get("type") == "message":
                    kinds.append(body["message"]["type"])
        return kinds

    kinds = asyncio.run(session())
    assert kinds[-2:] == ["conversation_completed", "recognition_stopped"]
