"""Every audio format the streaming API accepts reaches the transcriber intact (decoding and resampling)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from typing import Any

import numpy as np
import pytest
import soxr
import websockets

from convoscope.evaluation import word_error_rate
from convoscope.synth import Meeting
from producers.replay import stream_pcm
from tests.e2e.conftest import RunningStack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


def _first_two_utterances(meeting: Meeting) -> tuple[np.ndarray, str]:
    """Alice's first utterance and Bob's reply, mixed into one track (one caller, as on a phone line)."""
    end = int((meeting.utterances[1].end_s + 0.8) * 16_000)
    mixed = meeting.tracks["Alice"][:end].astype(np.int32) + meeting.tracks["Bob"][:end].astype(np.int32)
    text = " ".join(u.text for u in meeting.utterances[:2])
    return np.clip(mixed, -32768, 32767).astype(np.int16), text


def _mulaw_8k(samples: np.ndarray) -> bytes:
    return subprocess.run(
        ["sox", "-t", "raw", "-r", "16000", "-e", "signed", "-b", "16", "-c", "1", "-", "-t", "raw", "-r", "8000",
         "-e", "u-law", "-b", "8", "-"],
        input=samples.astype("<i2").tobytes(), capture_output=True, check=True,
    ).stdout


@pytest.mark.parametrize(
    ("encoding", "rate", "max_wer"),
    [
        # 8 kHz audio (telephone bandwidth) costs Whisper tiny.en 2-3x its WER (platform notes §2: 20-28 % on
        # synthetic speech), so 0.3 there; wrong decoding or resampling garbles nearly every word.
        ("LINEAR16", 8_000, 0.3),
        ("LINEAR16", 48_000, 0.15),
        ("MULAW", 8_000, 0.3),
    ],
)
async def test_encoding_is_transcribed(sqlite_stack: RunningStack, meeting: Meeting, encoding: str, rate: int,
                                       max_wer: float) -> None:
    samples, text = _first_two_utterances(meeting)
    if encoding == "MULAW":
        audio, bytes_per_sample = _mulaw_8k(samples), 1
    else:
        audio, bytes_per_sample = soxr.resample(samples, 16_000, rate).astype("<i2").tobytes(), 2
    result = await stream_pcm(
        sqlite_stack.ws_url(str(uuid.uuid4())), sqlite_stack.token, audio, sample_rate_hz=rate,
        # Real time, as a phone would: a backlog would make the worker fall back to greedy finals.
        bytes_per_sample=bytes_per_sample, speaker={"name": "Caller"}, realtime=True,
        start_request={"config": {"speechRecognition": {"encoding": encoding.lower(), "sampleRateHertz": rate}}},
    )
    heard = " ".join(m["payload"]["content"] for m in result.final_messages())
    assert not result.of_type("error")
    assert word_error_rate([text], [heard]) <= max_wer, heard


async def test_modify_request_switches_sample_rate_mid_stream(sqlite_stack: RunningStack, meeting: Meeting) -> None:
    samples, text = _first_two_utterances(meeting)
    split = int((meeting.utterances[0].end_s + 0.4) * 16_000)  # in the pause between the two utterances
    first = samples[:split].astype("<i2").tobytes()
    second = soxr.resample(samples[split:], 16_000, 8_000).astype("<i2").tobytes()
    url = sqlite_stack.ws_url(str(uuid.uuid4()))
    received: list[dict[str, Any]] = []
    async with websockets.connect(url, additional_headers={"x-api-key": sqlite_stack.token}) as ws:
        await ws.send(json.dumps({"type": "start_request", "speaker": {"name": "Caller"}, "config": {
            "speechRecognition": {"encoding": "LINEAR16", "sampleRateHertz": 16000}}}))
        for offset in range(0, len(first), 3200):  # 0.1 s frames, paced in real time
            await ws.send(first[offset : offset + 3200])
            await asyncio.sleep(0.1)
        await ws.send(json.dumps({"type": "modify_request",
                                  "speechRecognition": {"encoding": "LINEAR16", "sampleRateHertz": 8000}}))
        for offset in range(0, len(second), 1600):
            await ws.send(second[offset : offset + 1600])
            await asyncio.sleep(0.1)
        await ws.send(json.dumps({"type": "stop_request"}))
        async for frame in ws:
            body = json.loads(frame)
            received.append(body)
            if body.get("type") == "message" and body["message"]["type"] == "recognition_stopped":
                break
    inner = [b["message"]["type"] for b in received if b.get("type") == "message"]
    assert "session_modified" in inner
    heard = " ".join(m["payload"]["content"] for b in received if b.get("type") == "message_response"
                     for m in b["messages"])
    # Half of it is 8 kHz audio, which costs Whisper accuracy; a format mix-up would garble that half entirely.
    assert word_error_rate([text], [heard]) <= 0.3, heard
